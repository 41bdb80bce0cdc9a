"""Faults around training: a checkpoint damaged by an interrupted write, an unwritable workdir, a full disk."""

from __future__ import annotations

import errno
import glob
import os
import re

import jax
import numpy as np
import pytest

from jaxdiff.train import Checkpointer, fit
from tests.train.tiny import tiny_training

RUN = dict(num_steps=12, log_every=2, checkpoint_every=4, progress=False)


@pytest.fixture(scope="module")
def setup():
    return tiny_training()


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    fresh, step, batches = setup
    workdir = tmp_path_factory.mktemp("reference")
    state = jax.device_get(fit(fresh(), step, batches, workdir=str(workdir), **RUN))
    return state, (workdir / "metrics.jsonl").read_text()


def counting(step):
    """``step`` that records the step number of every call in ``.calls``."""
    def wrapped(state, batch):
        wrapped.calls.append(int(state.step))
        return step(state, batch)

    wrapped.calls = []
    return wrapped


def assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(setup, reference, tmp_path):
    fresh, step, batches = setup
    fit(fresh(), step, batches, workdir=str(tmp_path), **RUN)
    ckpts = tmp_path / "checkpoints"
    (ckpts / "12.orbax-checkpoint-tmp").mkdir()  # a write killed before its rename
    (ckpts / "12.orbax-checkpoint-tmp" / "partial").write_bytes(b"\0" * 10)
    for path in glob.glob(str(ckpts / "12" / "default" / "**"), recursive=True):
        if os.path.isfile(path):  # a step directory whose files were cut short
            os.truncate(path, os.path.getsize(path) // 2)

    resumed = counting(step)
    damaged = r"(?s)checkpoint step 12 in .* could not be restored .* resuming from step 8"
    with pytest.warns(UserWarning, match=damaged):
        state = fit(fresh(), resumed, batches, workdir=str(tmp_path), **RUN)
    assert resumed.calls == [8, 9, 10, 11]
    assert_same(jax.device_get(state), reference[0])
    assert (tmp_path / "metrics.jsonl").read_text() == reference[1]
    moved = [name for name in os.listdir(ckpts) if name.startswith("12.corrupt-")]
    assert len(moved) == 1 and sorted(set(os.listdir(ckpts)) - set(moved)) == ["12", "4", "8"]  # tmp dir removed
    assert_same(Checkpointer(str(ckpts)).restore(fresh()), reference[0])


def test_no_restorable_checkpoint_names_the_latest_step(setup, tmp_path):
    fresh, step, batches = setup
    fit(fresh(), step, batches, workdir=str(tmp_path), **RUN)
    for path in glob.glob(str(tmp_path / "checkpoints" / "*" / "default" / "**"), recursive=True):
        if os.path.isfile(path):
            os.truncate(path, 0)
    none = r"(?s)no checkpoint in .* could be restored \(steps \[12, 8, 4\]\); the latest, step 12, failed"
    with pytest.raises(RuntimeError, match=none):
        Checkpointer(str(tmp_path / "checkpoints")).restore(fresh())
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["12", "4", "8"]  # nothing moved


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_workdir_fails_before_training(setup, tmp_path):
    fresh, step, batches = setup
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        never = counting(step)
        with pytest.raises(PermissionError, match=f"workdir {re.escape(str(locked))} is not writable"):
            fit(fresh(), never, batches, workdir=str(locked), **RUN)
        with pytest.raises(PermissionError, match=f"cannot create the workdir {re.escape(str(locked / 'run'))}"):
            fit(fresh(), never, batches, workdir=str(locked / "run"), **RUN)
        assert never.calls == []
    finally:
        locked.chmod(0o700)


def test_disk_full_stops_with_a_clear_error_and_a_rerun_resumes(setup, reference, tmp_path, monkeypatch):
    fresh, step, batches = setup
    save = Checkpointer.save

    def save_until_full(self, step, state):
        if step >= 8:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(self.directory, str(step)))
        save(self, step, state)

    monkeypatch.setattr(Checkpointer, "save", save_until_full)
    ckpts = tmp_path / "checkpoints"
    full = rf"disk full .* writing {re.escape(str(ckpts / '8'))}; latest intact checkpoint: step 4 in "
    with pytest.raises(OSError, match=full) as e:
        fit(fresh(), step, batches, workdir=str(tmp_path), **RUN)
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert Checkpointer(str(ckpts)).latest_step() == 4

    resumed = counting(step)
    state = fit(fresh(), resumed, batches, workdir=str(tmp_path), **RUN)
    assert resumed.calls == list(range(4, 12))
    assert_same(jax.device_get(state), reference[0])
    assert (tmp_path / "metrics.jsonl").read_text() == reference[1]
