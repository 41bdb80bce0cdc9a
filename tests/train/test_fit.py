"""fit(): non-finite steps are skipped or stop the run with the checkpoints intact; JSONL resume truncation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxdiff import losses, nn, precond
from jaxdiff.train import (
    Checkpointer, OptimConfig, create_train_state, fit, make_optimizer, make_train_step, read_metrics,
)

NAN_STEP = 5


@pytest.fixture(scope="module")
def setup():
    module = nn.MLP(width=16, depth=1)
    params = module.init(jax.random.key(0), np.zeros((1, 2), np.float32), np.ones((1,), np.float32))["params"]

    def net(p, x, c_noise, *, key=None):
        return module.apply({"params": p}, x, c_noise)

    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0))
    step = jax.jit(make_train_step(losses.denoising_loss(net, precond.EDMPrecond(), losses.EDMNoise()),
                                   optimizer, batch_size=8, ema_halflife_nimg=100.0))
    rng = np.random.default_rng(0)
    data = rng.standard_normal((20, 8, 2)).astype(np.float32)

    def batches(s):
        x = data[s % 20].copy()
        if s == NAN_STEP:
            x[0, 0] = np.nan
        return {"image": x}

    return lambda: create_train_state(params, optimizer, jax.random.key(1)), step, batches


def test_nonfinite_step_is_skipped_and_counted(setup, tmp_path):
    fresh, step, batches = setup
    state = fresh()
    for s in range(NAN_STEP):
        state, _ = step(state, batches(s))
    before = jax.device_get(state)
    state, metrics = step(state, batches(NAN_STEP))
    assert float(metrics["nonfinite"]) == 1.0 and int(state.step) == NAN_STEP + 1
    for a, b in zip(jax.tree.leaves((before.params, before.ema_params, before.opt_state)),
                    jax.tree.leaves((state.params, state.ema_params, state.opt_state))):
        np.testing.assert_array_equal(a, b)
    state, metrics = step(state, batches(NAN_STEP + 1))
    assert float(metrics["nonfinite"]) == 0.0 and all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))

    out = fit(fresh(), step, batches, num_steps=10, workdir=str(tmp_path), log_every=2, checkpoint_every=4,
              progress=False)
    log = read_metrics(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in log] == [2, 4, 6, 8, 10]
    assert sum(r["nonfinite"] * 2 for r in log) == 1.0
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(out.params))


def test_stop_policy_names_the_step_and_keeps_checkpoints(setup, tmp_path):
    fresh, step, batches = setup
    with pytest.raises(FloatingPointError, match=f"step {NAN_STEP}.*checkpoint: step 4"):
        fit(fresh(), step, batches, num_steps=10, workdir=str(tmp_path), log_every=2, checkpoint_every=4,
            progress=False, stop_on_nonfinite=True)
    ckpt = Checkpointer(str(tmp_path / "checkpoints"))
    restored = ckpt.restore(fresh())
    assert int(restored.step) == 4
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored.params))
