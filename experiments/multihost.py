"""Joining JAX's distributed runtime from the command line, and checking that every process runs the same.

``--multihost=auto`` (the default) joins when the environment says this process is one of several:
the local launcher (``python -m experiments.launch``), SLURM (``SLURM_NTASKS`` > 1), Open MPI
(``OMPI_COMM_WORLD_SIZE`` > 1) or a Cloud TPU VM; there JAX finds the coordinator, the process
count and this process's id itself (``jax.distributed.initialize()``). ``--coordinator_address``,
``--num_processes`` and ``--process_id`` set them by hand; ``--multihost=off`` never joins.
"""

from __future__ import annotations

import glob
import hashlib
import os

import numpy as np

from experiments.checks import ConfigError
from jaxdiff.train import distributed

MULTIHOST = ("auto", "on", "off")


def cluster_detected(env=os.environ) -> bool:
    """Whether the environment runs this process as one of several (or on a Cloud TPU VM)."""
    def more_than_one(name):
        return env.get(name, "1").isdigit() and int(env.get(name, "1")) > 1

    return (distributed.NUM_PROCESSES_ENV in env
            or ("SLURM_JOB_ID" in env and more_than_one("SLURM_NTASKS"))
            or more_than_one("OMPI_COMM_WORLD_SIZE")
            or bool(glob.glob("/dev/accel[0-9]*")) or "TPU_WORKER_HOSTNAMES" in env)


def join(multihost: str, coordinator_address: str | None, num_processes: int | None, process_id: int | None,
         timeout_s: float) -> None:
    """Join the run's processes as ``multihost`` and the flags say; before any other JAX work."""
    if multihost not in MULTIHOST:
        raise ConfigError(f"--multihost={multihost}: choose one of {', '.join(MULTIHOST)}")
    by_hand = (coordinator_address, num_processes, process_id) != (None, None, None)
    if multihost == "off":
        if by_hand:
            raise ConfigError("--multihost=off: do not give --coordinator_address, --num_processes or --process_id")
        return
    if not (by_hand or multihost == "on" or cluster_detected()):
        return
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"--num_processes={num_processes}: must be >= 1")
    if process_id is not None and not 0 <= process_id < (num_processes or process_id + 1):
        raise ConfigError(f"--process_id={process_id}: must lie in [0, --num_processes={num_processes})")
    if timeout_s <= 0:
        raise ConfigError(f"--coordinator_timeout={timeout_s}: must be > 0")
    try:
        distributed.initialize(coordinator_address, num_processes, process_id, timeout_s=timeout_s)
    except (TimeoutError, ValueError) as e:
        raise ConfigError(f"--coordinator_address: {e}") from None


def check_same(**settings: str) -> None:
    """``ConfigError`` naming the first setting whose value differs between the processes of a run."""
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return
    digests = np.array([[int.from_bytes(hashlib.sha256(str(v).encode()).digest()[:4], "little")
                         for v in settings.values()]], np.uint32)
    every = np.asarray(multihost_utils.process_allgather(digests)).reshape(jax.process_count(), -1)
    for j, (name, value) in enumerate(settings.items()):
        differ = np.flatnonzero(every[:, j] != every[0, j])
        if differ.size:
            raise ConfigError(f"{name} differs between the processes of this run: process "
                              f"{jax.process_index()} has {value!r}; processes {differ.tolist()} disagree with "
                              "process 0")
