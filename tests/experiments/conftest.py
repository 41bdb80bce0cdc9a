"""Helpers to run the CLI in a subprocess on tiny configs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY_TOY = [
    "--config=experiments/configs/toy2d.py",
    "--config.model.mlp.width=32",
    "--config.model.mlp.depth=2",
    "--config.train.batch_size=64",
    "--config.sample.num_steps=4",
    "--config.eval.num_samples=200",
    "--progress=false",
]


def cli(workdir, *args, wait=True):
    """Start ``python -m experiments.run`` with ``args``; return the finished process (or the Popen)."""
    cmd = [sys.executable, "-m", "experiments.run", f"--workdir={workdir}", *args]
    # One host device: a subprocess with two virtual CPU devices, next to the pytest workers on two cores,
    # can starve XLA's in-process all-reduce rendezvous (it aborts after 40 s). Two-device training is
    # tested in-process (tests/train/test_parallel.py).
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    proc.output = out
    return proc


@pytest.fixture
def run_cli():
    return cli
