"""A data-parallel step on 2 host devices equals the single-device step."""

from __future__ import annotations

import jax
import numpy as np

from jaxdiff import losses, nn, precond
from jaxdiff.train import (
    OptimConfig, create_train_state, data_mesh, make_optimizer, make_train_step, parallel_train_step, replicate,
    shard_batch,
)


def test_two_devices_equal_one():
    assert jax.device_count() >= 2, "tests/conftest.py forces 2 host devices"
    module = nn.MLP(width=32, depth=2)
    params = module.init(jax.random.key(0), np.zeros((1, 2), np.float32), np.ones((1,), np.float32))["params"]
    pre = precond.EDMPrecond()
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0))
    step = make_train_step(losses.denoising_loss(nn.as_net(module), pre, losses.EDMNoise()), optimizer,
                           batch_size=16, ema_halflife_nimg=100.0)
    batch = {"image": np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)}
    outs = []
    for devices in (jax.devices()[:1], jax.devices()[:2]):
        mesh = data_mesh(devices)
        state = replicate(create_train_state(params, optimizer, jax.random.key(1)), mesh)
        sharded = shard_batch(batch, mesh)
        assert sharded["image"].sharding.shard_shape((16, 2)) == (16 // len(devices), 2)
        state, metrics = parallel_train_step(step, mesh, donate=False)(state, sharded)
        outs.append(jax.device_get((state.params, state.ema_params, metrics)))
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
