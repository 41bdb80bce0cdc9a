"""fit(): non-finite steps are skipped or stop the run with the checkpoints intact; JSONL resume truncation;
a SIGTERM saves and stops."""

from __future__ import annotations

import os
import signal

import jax
import numpy as np
import pytest

from jaxdiff.train import Checkpointer, fit, read_metrics
from tests.train.tiny import tiny_training

NAN_STEP = 5


@pytest.fixture(scope="module")
def setup():
    return tiny_training(NAN_STEP)


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


def test_sigterm_logs_saves_and_stops_after_the_step(setup, tmp_path):
    fresh, step, batches = setup

    def preempted_at_3(state, batch):
        if int(state.step) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(state, batch)

    handler = signal.getsignal(signal.SIGTERM)
    state = fit(fresh(), preempted_at_3, batches, num_steps=10, workdir=str(tmp_path), log_every=2,
                checkpoint_every=4, progress=False)
    assert int(state.step) == 3
    assert [r["step"] for r in read_metrics(str(tmp_path / "metrics.jsonl"))] == [2, 3]
    assert Checkpointer(str(tmp_path / "checkpoints")).latest_step() == 3
    assert signal.getsignal(signal.SIGTERM) == handler
