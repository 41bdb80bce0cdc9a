"""Data parallelism over every device of every process with ``jit`` + ``NamedSharding``.

Parameters and optimizer state are replicated; the batch is split along its
first axis over the mesh axis ``"data"``. Each process feeds only its own
slice of the global batch (``jax.make_array_from_process_local_data``), so the
same code runs on one CPU, a GPU box or a multi-host TPU pod. Gradients of the
mean loss over the global batch are reduced by XLA; no ``pmean`` appears in
algorithm code.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"data"`` over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if global_batch_size % n or global_batch_size % jax.process_count():
        raise ValueError(
            f"batch_size={global_batch_size} must be divisible by the device count ({n}) "
            f"and the process count ({jax.process_count()})"
        )


def replicate(tree, mesh: Mesh):
    """Place a host pytree on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assemble this process's (B/P, ...) slice into a global (B, ...) array sharded on ``"data"``."""
    sharding = NamedSharding(mesh, P("data"))
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local_batch)


def parallel_train_step(train_step, mesh: Mesh, *, donate: bool = True):
    """jit ``train_step(state, batch)`` with replicated state and a data-sharded batch."""
    replicated = NamedSharding(mesh, P())
    return jax.jit(
        train_step,
        in_shardings=(replicated, NamedSharding(mesh, P("data"))),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,) if donate else (),
    )
