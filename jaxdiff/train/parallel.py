"""Data parallelism and FSDP over every device of every process with ``jit`` + ``NamedSharding``.

A mesh has the axis ``"data"`` and, for sharded state, ``"fsdp"`` (as the ``fsdp`` axis of
big_vision and MaxText). The batch's first axis is split over all mesh axes, and each process
feeds only its own slice of the global batch (``jax.make_array_from_process_local_data``).
The state is replicated, or with ``fsdp_shardings`` each large array of parameters, EMA and
optimizer state is split along one of its axes over ``"fsdp"``; the step gathers the parameters
whole for the loss. XLA inserts the all-gathers and gradient reductions; no collective appears in
algorithm code. The same code runs on one CPU, a GPU box or a multi-host TPU pod.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA, FSDP = "data", "fsdp"


def _all_devices() -> list:
    """Every device of every process, each process's devices together (so its batch slice is contiguous)."""
    return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh ``("data",)`` over ``devices`` (default: all devices of all processes)."""
    devices = _all_devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA,))


def make_mesh(*, fsdp: int = 1, data: int | None = None, devices=None) -> Mesh:
    """A 2-D mesh ``(data, fsdp)`` over ``devices`` (default: all devices of all processes).

    ``data`` defaults to ``len(devices) // fsdp``. ``fsdp`` is the inner axis, so an fsdp group no
    larger than one process's devices stays within that process. Raises ``ValueError`` naming
    ``fsdp`` or ``data`` when ``data * fsdp`` is not the device count.
    """
    devices = _all_devices() if devices is None else list(devices)
    n = len(devices)
    if fsdp < 1:
        raise ValueError(f"fsdp must be >= 1, got {fsdp}")
    if fsdp > n:
        raise ValueError(f"fsdp={fsdp} exceeds the device count ({n})")
    if n % fsdp:
        raise ValueError(f"fsdp={fsdp} must divide the device count ({n})")
    data = n // fsdp if data is None else data
    if data * fsdp != n:
        raise ValueError(f"data={data} times fsdp={fsdp} must equal the device count ({n})")
    return Mesh(np.asarray(devices).reshape(data, fsdp), (DATA, FSDP))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` naming ``batch_size`` unless it splits evenly over devices and processes."""
    n = mesh.devices.size
    if global_batch_size % n or global_batch_size % jax.process_count():
        raise ValueError(
            f"batch_size={global_batch_size} must be divisible by the device count ({n}) "
            f"and the process count ({jax.process_count()})"
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The first axis split over every axis of ``mesh``."""
    return NamedSharding(mesh, P(mesh.axis_names))


def fsdp_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
    """Split the largest axis of ``shape`` divisible by ``fsdp`` (the last one among equals) over ``"fsdp"``.

    Replicated (``P()``) when ``fsdp == 1``, when the array has fewer than ``min_size`` elements or
    when no axis divides.
    """
    if fsdp == 1 or int(np.prod(shape)) < min_size:
        return P()
    candidates = [(size, axis) for axis, size in enumerate(shape) if size % fsdp == 0]
    if not candidates:
        return P()
    axis = max(candidates)[1]
    return P(*([None] * axis), FSDP)


def fsdp_shardings(tree, mesh: Mesh, *, min_size: int = 2**14):
    """The ``NamedSharding`` of each leaf of ``tree`` (arrays or ``jax.ShapeDtypeStruct``s) by ``fsdp_spec``.

    On a mesh without an ``"fsdp"`` axis every leaf is replicated. Arrays below ``min_size``
    elements stay replicated: splitting them saves little memory and costs a collective each.
    """
    fsdp = dict(mesh.shape).get(FSDP, 1)
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), fsdp, min_size)), tree)


def place(tree, shardings):
    """Global arrays from a pytree whose values every process holds alike (host arrays or local
    ``jax.Array``s), laid out by ``shardings``: one sharding for all leaves, or a matching pytree."""
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, tree)
    return jax.tree.map(_place, tree, shardings)


def _place(x, sharding):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_place(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree, mesh: Mesh):
    """Place a pytree every process holds alike on every device of ``mesh``."""
    return place(tree, NamedSharding(mesh, P()))


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assemble this process's (B/P, ...) slice into a global (B, ...) array split over every mesh axis."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local_batch)


def parallel_train_step(train_step, mesh: Mesh, *, state_shardings=None, donate: bool = True):
    """jit ``train_step(state, batch) -> (state, metrics)`` over ``mesh``.

    The batch is split by ``batch_sharding`` and the metrics are replicated. The state is replicated,
    or laid out by ``state_shardings`` (a pytree matching the ``TrainState``, e.g. from
    ``fsdp_shardings``): then the step gathers ``state.params`` whole for the loss (FSDP: the state
    lives split, the loss runs data-parallel over every device, and the new state is split again).
    """
    replicated = NamedSharding(mesh, P())
    if state_shardings is None:
        state_shardings, step = replicated, train_step
    else:
        def step(state, batch):
            params = jax.lax.with_sharding_constraint(state.params, replicated)
            return train_step(state.replace(params=params), batch)

    return jax.jit(
        step,
        in_shardings=(state_shardings, batch_sharding(mesh)),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,) if donate else (),
    )
