"""A tiny EDM training setup shared by the fit and fault tests."""

from __future__ import annotations

import jax
import numpy as np

from jaxdiff import losses, nn, precond
from jaxdiff.train import OptimConfig, create_train_state, make_optimizer, make_train_step


def tiny_training(nan_step: int | None = None):
    """(fresh_state(), jitted train_step, batches(step)) for a 2-D MLP denoiser on 20 fixed batches of 8.

    ``nan_step``: the batch of that step carries a NaN.
    """
    module = nn.MLP(width=16, depth=1)
    params = module.init(jax.random.key(0), np.zeros((1, 2), np.float32), np.ones((1,), np.float32))["params"]

    def net(p, x, c_noise, *, key=None):
        return module.apply({"params": p}, x, c_noise)

    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0))
    step = jax.jit(make_train_step(losses.denoising_loss(net, precond.EDMPrecond(), losses.EDMNoise()),
                                   optimizer, batch_size=8, ema_halflife_nimg=100.0))
    data = np.random.default_rng(0).standard_normal((20, 8, 2)).astype(np.float32)

    def batches(s):
        x = data[s % 20].copy()
        if s == nan_step:
            x[0, 0] = np.nan
        return {"image": x}

    return lambda: create_train_state(params, optimizer, jax.random.key(1)), step, batches
