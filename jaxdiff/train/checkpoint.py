"""Orbax checkpoints of the ``TrainState``: atomic, keep-last-N, exact restore."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """A thin wrapper over ``orbax.checkpoint.CheckpointManager``.

    Writes go to a temporary directory that is renamed when complete, so a
    process killed mid-write leaves the previous checkpoint as the latest one.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3):
        directory = os.path.abspath(directory)
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"checkpoint directory {directory} is not writable")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.directory = directory
        self.manager = ocp.CheckpointManager(directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state))

    def restore(self, target, step: int | None = None):
        """Restore into the structure, dtypes and shardings of ``target`` (latest step by default)."""
        step = self.manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
