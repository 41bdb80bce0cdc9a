"""The command line as real processes: ``experiments.launch`` starts ``experiments.run`` twice on this CPU.

The library's own multi-process tests (``tests/train/test_multiprocess.py``) check the training state
bitwise across process layouts, SIGTERM and SIGKILL; here the runner's part: one set of output files
written once, a 2-process checkpoint evaluated by one process to the same metrics, and start-up errors
for settings the processes disagree on or a coordinator that does not answer.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from jaxdiff.train import distributed
from tests.experiments.conftest import ROOT, TINY_TOY

ARGS = TINY_TOY + ["--config.train.num_steps=40", "--config.train.log_every=20",
                   "--config.train.checkpoint_every=20"]
ENV = dict(os.environ, PYTHONPATH=ROOT)


def launch(*args, timeout=300):
    cmd = [sys.executable, "-m", "experiments.launch", "--num_processes=2", "--", *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_two_processes_write_once_and_one_process_evaluates_their_checkpoint(tmp_path, run_cli):
    workdir = str(tmp_path / "run")
    done = launch(f"--workdir={workdir}", *ARGS)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [20, 40]  # written by process 0 alone
    with open(os.path.join(workdir, "metrics.json")) as f:
        two = json.load(f)
    assert done.stdout.count('"sliced_w2"') == 1  # the metrics are printed once
    one = run_cli(workdir, *ARGS, "--mode=eval")
    assert one.returncode == 0, one.output
    with open(os.path.join(workdir, "metrics.json")) as f:
        again = json.load(f)
    timing = {"sample_seconds", "train_seconds_this_run"}
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in two.items() if k not in timing}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(port: int, i: int) -> dict:
    return dict(ENV, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
                **{distributed.COORDINATOR_ENV: f"127.0.0.1:{port}", distributed.NUM_PROCESSES_ENV: "2",
                   distributed.PROCESS_ID_ENV: str(i)})


@pytest.mark.parametrize("setting", ["--workdir", "--num_processes"])
def test_processes_that_disagree_fail_at_start_up(tmp_path, setting):
    """Different workdirs, or process counts (which JAX itself lets pass): every process names the
    setting and exits with status 2 before training."""
    port = free_port()

    def args(i):
        if setting == "--workdir":
            return [f"--workdir={tmp_path / str(i)}"]
        return [f"--workdir={tmp_path / 'run'}", f"--num_processes={2 + i}"]

    procs = [subprocess.Popen([sys.executable, "-m", "experiments.run", *args(i), *ARGS], cwd=ROOT,
                              env=process_env(port, i), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 2, out
        assert f"error: {setting} differs between the processes of this run" in out, out
        assert "Traceback" not in out
    assert not any(tmp_path.rglob("checkpoints"))


def test_a_coordinator_that_does_not_answer_fails_in_bounded_time(tmp_path):
    """Process 1 of 2 with nobody serving the coordinator: one line naming the address, within the timeout."""
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "experiments.run", f"--workdir={tmp_path}", *ARGS,
                          f"--coordinator_address={address}", "--num_processes=2", "--process_id=1",
                          "--coordinator_timeout=3"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert address in out.stderr and "did not answer within 3 s" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert time.monotonic() - t0 < 60


def test_bad_process_settings(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.run", f"--workdir={tmp_path}", *ARGS,
                          "--num_processes=2", "--process_id=2"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "--process_id=2: must lie in [0, --num_processes=2)" in out.stderr, out.stderr
