"""fit() with real processes (jax.distributed + gloo on this CPU), not forced host devices.

Two processes of one device each train the tiny model of ``tests/train/tiny.py`` in one workdir;
the reference is this process on 2 host devices. Both run the same 2-way SPMD program, and an
all-reduce over two operands is one addition (commutative), so results are bitwise equal. Every
launch costs seconds, so the interruptions (SIGTERM, SIGKILL, relaunch) share one workdir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxdiff.train import Checkpointer, data_mesh, read_metrics, replicate
from jaxdiff.train.distributed import initialize, launch_local, wait_all
from tests.train.multiprocess_run import fresh_state, state_arrays, train

REPO = Path(__file__).resolve().parents[2]
STEPS = 12
LOGGED = list(range(2, STEPS + 1, 2))  # the steps of metrics.jsonl's lines (log_every=2)
TIMEOUT_S = 240  # per launch; a run takes a few seconds alone, minutes on a loaded 2-core machine


def launch(workdir: Path, sleep_s: float = 0.0, tag: str = "run"):
    """Start the 2 processes of the tiny run to ``STEPS`` in ``workdir``; their logs go to a sibling directory.

    Every launch shares one persistent compilation cache that keeps every executable, so that a launch
    after the first would load its programs from it if ``initialize`` let it (with jaxlib 0.12.1 a
    cached program with gloo collectives hangs)."""
    logs = workdir.parent / f"{workdir.name}-{tag}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               JAX_COMPILATION_CACHE_DIR=str(workdir.parent / "xla-cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    command = [sys.executable, "-m", "tests.train.multiprocess_run", str(workdir), str(STEPS), str(sleep_s)]
    return launch_local(command, 2, env=env, log_dir=str(logs)), logs


def run_to_end(workdir: Path, tag: str = "run") -> None:
    procs, logs = launch(workdir, tag=tag)
    codes = wait_all(procs, TIMEOUT_S)
    assert codes == [0, 0], f"exit codes {codes}; logs in {logs}:\n" + log_tails(logs)


def log_tails(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-15:]) for p in sorted(logs.iterdir()))


def wait_for(ready, procs, logs: Path, what: str, timeout_s: float = TIMEOUT_S) -> None:
    """Poll ``ready()`` until it holds; fail (and kill ``procs``) if a process ends first or past ``timeout_s``."""
    start = time.monotonic()
    while not ready():
        if time.monotonic() > start + timeout_s or any(p.poll() is not None for p in procs):
            with contextlib.suppress(TimeoutError):
                wait_all(procs, 0)
            pytest.fail(
                f"the run ended or stalled before {what} ({time.monotonic() - start:.0f} s, "
                f"exit codes {[p.returncode for p in procs]}); logs in {logs}:\n" + log_tails(logs)
            )
        time.sleep(0.05)


def logged_step(workdir: Path, step: int) -> bool:
    path = workdir / "metrics.jsonl"
    return path.exists() and f'"step": {step},' in path.read_text()


def final_states(workdir: Path) -> list[dict]:
    return [dict(np.load(workdir / f"final_{i}.npz")) for i in range(2)]


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, 2 host devices: the final state and metrics.jsonl of an uninterrupted run."""
    workdir = tmp_path_factory.mktemp("one-process")
    state = train(str(workdir), STEPS)
    return state_arrays(jax.device_get(state)), (workdir / "metrics.jsonl").read_text()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two-processes")
    run_to_end(workdir)
    return workdir


def test_two_processes_equal_one_process_with_two_devices(reference, two_process_run):
    states = final_states(two_process_run)
    assert int(states[0][".step"]) == STEPS
    for state in states:
        assert_bitwise_equal(state, reference[0])
    text = (two_process_run / "metrics.jsonl").read_text()
    assert text == reference[1]  # written once (by process 0), the same global averages
    assert [r["step"] for r in read_metrics(str(two_process_run / "metrics.jsonl"))] == LOGGED


def test_checkpoint_of_two_processes_restores_in_one(two_process_run):
    ckpt = Checkpointer(str(two_process_run / "checkpoints"))
    assert ckpt.latest_step() == STEPS
    for target in (fresh_state(), replicate(fresh_state(), data_mesh())):
        assert_bitwise_equal(state_arrays(jax.device_get(ckpt.restore(target))), final_states(two_process_run)[0])
    ckpt.close()


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """One workdir, three launches: SIGTERM to process 1 after step 2; a relaunch, SIGKILL of process 1
    once it has logged a step past the stop; a relaunch to the end. Returns what each one left."""
    workdir, record = tmp_path_factory.mktemp("interrupted"), {}
    procs, logs = launch(workdir, sleep_s=0.3, tag="preempted")
    wait_for(lambda: logged_step(workdir, 2), procs, logs, "step 2")
    procs[1].send_signal(signal.SIGTERM)
    record["preempted_codes"], record["preempted_logs"] = wait_all(procs, TIMEOUT_S), log_tails(logs)
    record["stopped"] = final_states(workdir)
    stop = record["stop"] = int(record["stopped"][0][".step"])
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    record["latest_after_stop"] = ckpt.latest_step()
    ckpt.close()
    for i in range(2):
        (workdir / f"final_{i}.npz").unlink()

    procs, logs = launch(workdir, sleep_s=0.5, tag="killed")
    wait_for(lambda: logged_step(workdir, stop + 2 - stop % 2), procs, logs, f"a step after {stop}")
    procs[1].kill()
    killed_at = time.monotonic()
    record["killed_codes"] = wait_all(procs, TIMEOUT_S)
    record["waited"] = time.monotonic() - killed_at
    record["survivor_log"] = (logs / "process_0.log").read_text()
    record["killed_left_a_final_state"] = (workdir / "final_0.npz").exists()

    run_to_end(workdir, tag="relaunched")
    record["final"], record["log"] = final_states(workdir), read_metrics(str(workdir / "metrics.jsonl"))
    return record


def test_sigterm_to_one_process_stops_both_after_the_same_step(interrupted_run):
    assert interrupted_run["preempted_codes"] == [0, 0], interrupted_run["preempted_logs"]
    assert 2 < interrupted_run["stop"] < STEPS, "the run should stop early"
    assert_bitwise_equal(*interrupted_run["stopped"])
    assert interrupted_run["latest_after_stop"] == interrupted_run["stop"]


def test_sigkill_of_one_process_ends_the_other_within_seconds(interrupted_run):
    code, waited, log = interrupted_run["killed_codes"][0], interrupted_run["waited"], interrupted_run["survivor_log"]
    print(f"process 0 ended {waited:.1f} s after process 1 was killed, exit code {code}")
    assert code != 0 and waited < 30, f"process 0: exit {code} after {waited:.1f} s\n{log[-3000:]}"
    assert any(s in log for s in ("Connection closed by peer", "heartbeat timeout", "another task died")), log[-3000:]
    assert not interrupted_run["killed_left_a_final_state"]


def test_relaunch_after_both_resumes_to_the_uninterrupted_state(interrupted_run, reference):
    for state in interrupted_run["final"]:
        assert_bitwise_equal(state, reference[0])
    stop, log = interrupted_run["stop"], interrupted_run["log"]
    expected = [json.loads(line) for line in reference[1].splitlines()]
    if stop % 2:  # stopped between two log lines: a line for the steps before, the next one for those after
        assert [r["step"] for r in log] == sorted([*LOGGED, stop])
        log = [r for r in log if r["step"] not in (stop, stop + 1)]
        expected = [r for r in expected if r["step"] != stop + 1]
    assert log == expected


def test_unreachable_coordinator_fails_in_bounded_time_naming_the_address():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"coordinator at 127\.0\.0\.1:1 did not answer within 1 s"):
        initialize("127.0.0.1:1", 2, 1, timeout_s=1)
    assert time.monotonic() - start < 5


def test_launch_local_gives_each_process_its_index(tmp_path):
    keys = ["JAXDIFF_COORDINATOR_ADDRESS", "JAXDIFF_NUM_PROCESSES", "JAXDIFF_PROCESS_ID", "JAX_PLATFORMS", "XLA_FLAGS"]
    show = "import os, sys; print('|'.join(os.environ[k] for k in sys.argv[1:]))"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_dump_to=/nowhere")
    procs = launch_local([sys.executable, "-c", show, *keys], 3, cpu_devices_per_process=2, env=env,
                         log_dir=str(tmp_path))
    assert wait_all(procs, 30) == [0, 0, 0]
    lines = [(tmp_path / f"process_{i}.log").read_text().strip().split("|") for i in range(3)]
    address = lines[0][0]
    assert address.startswith("127.0.0.1:")
    assert lines == [[address, "3", str(i), "cpu", "--xla_dump_to=/nowhere --xla_force_host_platform_device_count=2"]
                     for i in range(3)]


def test_wait_all_kills_what_outlives_its_timeout():
    procs = launch_local([sys.executable, "-c", "import time; time.sleep(60)"], 2)
    with pytest.raises(TimeoutError, match=r"processes \[0, 1\] were still running after 0.5 s"):
        wait_all(procs, 0.5)
    assert all(p.returncode is not None for p in procs)
