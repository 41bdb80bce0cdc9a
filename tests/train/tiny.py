"""A tiny EDM training setup shared by the fit, fault and multi-process tests."""

from __future__ import annotations

import jax
import numpy as np

from jaxdiff import losses, nn, precond
from jaxdiff.train import OptimConfig, create_train_state, make_optimizer, make_train_step

BATCH = 8


def tiny_parts():
    """(params, optimizer, train_step, data): a 2-D MLP denoiser, its unjitted step, 20 fixed batches (20, 8, 2)."""
    module = nn.MLP(width=16, depth=1)
    params = module.init(jax.random.key(0), np.zeros((1, 2), np.float32), np.ones((1,), np.float32))["params"]
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0))
    train_step = make_train_step(losses.denoising_loss(nn.as_net(module), precond.EDMPrecond(), losses.EDMNoise()),
                                 optimizer, batch_size=BATCH, ema_halflife_nimg=100.0)
    data = np.random.default_rng(0).standard_normal((20, BATCH, 2)).astype(np.float32)
    return params, optimizer, train_step, data


def tiny_training(nan_step: int | None = None):
    """(fresh_state(), jitted train_step, batches(step)) on one device.

    ``nan_step``: the batch of that step carries a NaN.
    """
    params, optimizer, train_step, data = tiny_parts()

    def batches(s):
        x = data[s % 20].copy()
        if s == nan_step:
            x[0, 0] = np.nan
        return {"image": x}

    return lambda: create_train_state(params, optimizer, jax.random.key(1)), jax.jit(train_step), batches
