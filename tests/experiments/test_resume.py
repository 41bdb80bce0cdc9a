"""A run killed with SIGKILL between checkpoints resumes (here with grain workers building the batches), says so,
ends bitwise equal to an uninterrupted run and counts the training time of both runs."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdiff.train.logging import read_train_time
from tests.experiments.conftest import TINY_TOY

ARGS = TINY_TOY + [
    "--config.train.num_steps=1500",
    "--config.train.log_every=50",
    "--config.train.checkpoint_every=100",
]


def last_logged_step(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = [line for line in f if line.endswith("\n")]
    return json.loads(lines[-1])["step"] if lines else 0


def final_checkpoint(workdir, step):
    return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "default"))


def test_sigkill_and_resume_is_bitwise_exact(tmp_path, run_cli):
    ref_dir, cut_dir = str(tmp_path / "ref"), str(tmp_path / "cut")
    ref = run_cli(ref_dir, *ARGS)
    assert ref.returncode == 0, ref.output

    proc = run_cli(cut_dir, *ARGS, wait=False)
    deadline = time.time() + 300
    while last_logged_step(cut_dir) < 350 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = last_logged_step(cut_dir)
    assert proc.returncode == -signal.SIGKILL and 350 <= killed_at < 1500, (proc.returncode, killed_at)

    resumed = run_cli(cut_dir, *ARGS, "--config.train.data_workers=2")  # batches are the step's, whoever builds them
    assert resumed.returncode == 0, resumed.output
    resumed_at = int(re.search(r"resumed from step (\d+) \(checkpoint (\S+)\)", resumed.output).group(1))
    assert resumed_at % 100 == 0 and resumed_at <= killed_at

    a, b = final_checkpoint(ref_dir, 1500), final_checkpoint(cut_dir, 1500)
    for x, y in zip(ocp.tree.to_flat_dict(a).values(), ocp.tree.to_flat_dict(b).values()):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with open(os.path.join(ref_dir, "metrics.jsonl")) as f1, open(os.path.join(cut_dir, "metrics.jsonl")) as f2:
        assert f1.read() == f2.read()
    with open(os.path.join(ref_dir, "metrics.json")) as f1, open(os.path.join(cut_dir, "metrics.json")) as f2:
        m1, m2 = json.load(f1), json.load(f2)
    assert 0 < m2["train_seconds_this_run"] < m2["train_seconds"]  # the killed run's time up to its checkpoint
    records = read_train_time(cut_dir)["checkpoints"]
    before = records[max(k for k in records if k <= resumed_at)]
    assert m2["train_seconds"] - m2["train_seconds_this_run"] == pytest.approx(before)
    timings = {k for k in m1 if "seconds" in k}
    assert {k: v for k, v in m1.items() if k not in timings} == {k: v for k, v in m2.items() if k not in timings}
