"""Several processes, one run: joining JAX's distributed runtime, and N local processes to try it on one machine.

Every process of a run calls ``initialize`` before any other JAX call. Afterwards ``jax.devices()``
lists the devices of every process, a mesh built from it spans them all, and each process runs
the same program on its own slice of each batch (``jaxdiff.train.parallel``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence

import jax

COORDINATOR_ENV = "JAXDIFF_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAXDIFF_NUM_PROCESSES"
PROCESS_ID_ENV = "JAXDIFF_PROCESS_ID"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: float = 300.0,
    heartbeat_timeout_s: int = 60,
    shutdown_timeout_s: int = 60,
) -> None:
    """Join a multi-process run as process ``process_id`` of ``num_processes``; once per process, first.

    Arguments left out are read from the environment ``launch_local`` sets (``JAXDIFF_COORDINATOR_ADDRESS``,
    ``JAXDIFF_NUM_PROCESSES``, ``JAXDIFF_PROCESS_ID``); failing those, JAX detects them (TPU VMs,
    SLURM, Open MPI, Kubernetes: ``jax.distributed.initialize()``). CPU collectives use gloo, and a
    multi-process CPU run compiles afresh rather than load from JAX's persistent compilation cache: with
    jaxlib 0.12.1 an executable with gloo collectives loaded from that cache never finishes its first
    collective (every process waits forever; jaxlib 0.10.2 and 0.12.0 are unaffected).

    Time bounds: a process other than 0 that cannot reach the coordinator (``"host:port"``, served by
    process 0) within ``timeout_s`` raises ``TimeoutError`` naming the address; JAX aborts a process
    whose peers do not all join within the rest of ``timeout_s``. Once running, a process whose peer
    died fails at its next collective with that peer, and JAX's coordination service aborts every
    process within about ``heartbeat_timeout_s`` of the death; a process that ends waits at most
    ``shutdown_timeout_s`` for the others.
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get(COORDINATOR_ENV)
    if num_processes is None and NUM_PROCESSES_ENV in env:
        num_processes = int(env[NUM_PROCESSES_ENV])
    if process_id is None and PROCESS_ID_ENV in env:
        process_id = int(env[PROCESS_ID_ENV])
    if timeout_s <= 0 or heartbeat_timeout_s <= 0 or shutdown_timeout_s <= 0:
        raise ValueError(f"timeout_s, heartbeat_timeout_s and shutdown_timeout_s must be > 0, got "
                         f"{timeout_s}, {heartbeat_timeout_s}, {shutdown_timeout_s}")
    deadline = time.monotonic() + timeout_s
    if coordinator_address is not None and process_id not in (None, 0):
        _wait_for_coordinator(coordinator_address, process_id, num_processes, timeout_s, deadline)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=max(1, math.ceil(deadline - time.monotonic())),
        heartbeat_timeout_seconds=heartbeat_timeout_s,
        shutdown_timeout_seconds=shutdown_timeout_s,
    )
    if jax.process_count() > 1 and jax.default_backend() == "cpu":
        jax.config.update("jax_enable_compilation_cache", False)


def _wait_for_coordinator(address: str, process_id: int, num_processes: int | None, timeout_s: float,
                          deadline: float) -> None:
    """Poll a TCP connection to ``address`` until it opens; past ``deadline`` raise ``TimeoutError``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"coordinator_address must be 'host:port', got {address!r}")
    host = host.strip("[]")
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"process {process_id} of {num_processes}: the JAX coordinator at {address} did not answer "
                    f"within {timeout_s:g} s ({e}); process 0 serves it: is it running, and is the address reachable "
                    "from here?") from None
        time.sleep(0.1)


def launch_local(
    command: Sequence[str],
    num_processes: int,
    *,
    cpu_devices_per_process: int = 1,
    env: Mapping[str, str] | None = None,
    log_dir: str | None = None,
) -> list[subprocess.Popen]:
    """Start ``command`` as processes 0..N-1 of one run on this machine's CPU; returns them in order.

    Each process finds the coordinator address (a free loopback port), ``num_processes`` and its
    index in its environment (``initialize()`` reads them there), with ``JAX_PLATFORMS=cpu`` and
    ``cpu_devices_per_process`` host devices. ``env`` (default: this process's environment) is the
    base they get. With ``log_dir``, process i writes stdout and stderr to ``log_dir/process_<i>.log``;
    otherwise it shares this process's.
    """
    if num_processes < 1 or cpu_devices_per_process < 1:
        raise ValueError(f"num_processes and cpu_devices_per_process must be >= 1, got {num_processes}, "
                         f"{cpu_devices_per_process}")
    base = dict(os.environ if env is None else env)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", base.get("XLA_FLAGS", "")).split()
    base.update(XLA_FLAGS=" ".join([*flags, f"--xla_force_host_platform_device_count={cpu_devices_per_process}"]),
                JAX_PLATFORMS="cpu", **{COORDINATOR_ENV: f"127.0.0.1:{_free_port()}",
                                        NUM_PROCESSES_ENV: str(num_processes)})
    processes = []
    try:
        for i in range(num_processes):
            log = open(os.path.join(log_dir, f"process_{i}.log"), "w") if log_dir is not None else None
            with log if log is not None else contextlib.nullcontext():
                processes.append(subprocess.Popen(list(command), env={**base, PROCESS_ID_ENV: str(i)},
                                                  stdout=log, stderr=subprocess.STDOUT if log else None))
    except BaseException:
        for p in processes:  # a run with a process missing would wait for it
            p.kill()
            p.wait()
        raise
    return processes


def wait_all(processes: Sequence[subprocess.Popen], timeout_s: float | None = None) -> list[int]:
    """Exit codes of ``processes``; past ``timeout_s`` (from the call) kills those still running and
    raises ``TimeoutError`` naming them by index."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for p in processes:
        try:
            p.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
    running = [i for i, p in enumerate(processes) if p.poll() is None]
    for i in running:
        processes[i].kill()
        processes[i].wait()
    if running:
        raise TimeoutError(f"processes {running} were still running after {timeout_s:g} s; killed them")
    return [p.returncode for p in processes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
