"""Orbax checkpoints of the ``TrainState``: atomic, keep-last-N, exact restore, from one process or many."""

from __future__ import annotations

import os
import time
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


def ensure_writable_dir(path: str, what: str) -> str:
    """Create directory ``path`` if needed and check it is writable; errors name ``what`` it is for."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise type(e)(e.errno, f"cannot create the {what} {path}: {e.strerror}") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"the {what} {path} is not writable")
    return path


class Checkpointer:
    """A thin wrapper over ``orbax.checkpoint.CheckpointManager``.

    Writes go to a temporary directory (``<step>.orbax-checkpoint-tmp``) that is
    renamed when complete, so a process killed mid-write leaves the previous
    checkpoint as the latest one; leftover temporary directories are removed
    when the next ``Checkpointer`` opens the directory.

    In a multi-process run every process opens the same ``directory`` (a file system they all
    see) and makes every call, in the same order: saving and restoring are collective. Each
    process writes and reads the shards it holds; process 0 writes the metadata and renames.
    A checkpoint written by P processes restores in any other number of processes and onto
    any other mesh: the target's shardings decide the layout.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3):
        directory = ensure_writable_dir(directory, "checkpoint directory")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
        self.directory = directory
        self.manager = ocp.CheckpointManager(directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state))

    def restore(self, target, step: int | None = None):
        """Restore into the structure, dtypes and shardings of ``target``.

        Without ``step``, restores the latest checkpoint that loads. Newer ones
        that fail to load (damaged on disk) while an older one loads are moved
        aside to ``<step>.corrupt-<ns>`` with a warning, so the run goes on
        from the last candidate checkpoint; if none loads, raises naming the steps.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        if step is not None:
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        failed = []
        for candidate in steps:
            error = None
            try:
                state = self.manager.restore(candidate, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # damage or a mismatched target: told apart by whether an older step loads
                error = e
            if not _on_every_process(error is None):
                failed.append((candidate, error or RuntimeError("it failed to load in another process")))
                continue
            if failed and jax.process_index() == 0:
                for bad, e in failed:
                    moved = os.path.join(self.directory, f"{bad}.corrupt-{time.time_ns()}")
                    os.rename(os.path.join(self.directory, str(bad)), moved)
                    warnings.warn(f"checkpoint step {bad} in {self.directory} could not be restored "
                                  f"({type(e).__name__}: {e}); moved it to {moved}, resuming from step {candidate}")
            if failed:
                if jax.process_count() > 1:
                    multihost_utils.sync_global_devices("jaxdiff.Checkpointer.restore: damaged steps moved")
                self.manager.reload()
            return state
        bad, e = failed[0]
        raise RuntimeError(f"no checkpoint in {self.directory} could be restored (steps {steps}); "
                           f"the latest, step {bad}, failed with {type(e).__name__}: {e}") from e

    def wait(self) -> None:
        """Block until every pending (asynchronous) save is complete on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _on_every_process(ok: bool) -> bool:
    """Whether ``ok`` holds in every process (a collective in a multi-process run)."""
    if jax.process_count() == 1:
        return ok
    return bool(multihost_utils.process_allgather(np.asarray(ok)).all())
