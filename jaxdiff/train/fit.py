"""The training loop: explicit state passing, checkpoints, resumption, progress."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from typing import Callable

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from jaxdiff.train.checkpoint import Checkpointer, ensure_writable_dir
from jaxdiff.train.logging import MetricWriter, TrainTime


class _Preemption:
    """Whether a SIGTERM (preemption) asks the run to save and stop after a given step.

    One process: a Python handler turns SIGTERM into a flag. Several processes: JAX's preemption
    sync manager, whose SIGTERM notifier tells every process through the coordination service,
    answers True in all of them at the same step (one past the furthest step any process had done
    when the notice reached it).
    """

    def __init__(self):
        self.multiprocess = jax.process_count() > 1
        self.requested = False
        self._previous = None

    def __enter__(self):
        if not self.multiprocess:  # a Python handler would replace the runtime's notifier
            try:
                self._previous = signal.signal(signal.SIGTERM, self._handle)
            except ValueError:  # not the main thread
                self._previous = None
        return self

    def _handle(self, *_):
        self.requested = True

    def __call__(self, done: int) -> bool:
        """Called once after every step, with the number of steps done; True: save and stop."""
        if self.multiprocess:
            return multihost_utils.reached_preemption_sync_point(done)
        return self.requested

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@contextlib.contextmanager
def _disk_full_is_fatal(ckpt: Checkpointer):
    """Re-raise ENOSPC as an error naming the full disk's path and the latest intact checkpoint."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        with contextlib.suppress(OSError):  # let earlier saves finish so the reported checkpoint is complete
            ckpt.wait()
        raise OSError(
            errno.ENOSPC,
            f"disk full (no space left on device) writing {e.filename or ckpt.directory}; latest intact "
            f"checkpoint: step {ckpt.latest_step()} in {ckpt.directory}; free space and rerun to resume from it",
        ) from e


def fit(
    state,
    train_step: Callable,
    batches: Callable[[int], dict],
    *,
    num_steps: int,
    workdir: str,
    log_every: int = 50,
    checkpoint_every: int = 500,
    max_to_keep: int = 3,
    progress: bool = True,
    stop_on_nonfinite: bool = False,
):
    """Run ``train_step`` until ``state.step == num_steps``, resuming from ``workdir``.

    Args:
      state: a fresh ``TrainState`` (placed as ``train_step`` expects); replaced by
        the latest checkpoint in ``workdir/checkpoints`` if there is one.
      train_step: ``(state, batch) -> (state, metrics)``, typically jitted.
      batches: ``step -> batch``, a pure function of the step, so the data
        position is restored with the state and no example is seen twice or skipped.
      log_every: metrics are averaged over this many steps and appended to
        ``workdir/metrics.jsonl``; ``checkpoint_every`` must be a multiple of it.

    Steps with a non-finite loss or gradient are skipped by ``train_step`` and
    counted in the ``nonfinite`` metric; with ``stop_on_nonfinite`` the first
    one raises ``FloatingPointError`` naming the step, and the checkpoints on
    disk (all written before it) stay intact.

    A resumed run prints ``resumed from step N (checkpoint ...)``; ``train_time.json`` records the
    training time behind each checkpoint across resumes (``jaxdiff.train.logging.TrainTime``).

    In a multi-process run every process calls ``fit`` with the same ``workdir``
    (a file system they all see) and takes part in every checkpoint; process 0
    alone writes ``metrics.jsonl``, TensorBoard and the progress bar. The metrics
    are global averages (replicated outputs of ``train_step``).

    A SIGTERM (preemption) logs the steps since the last line, saves a checkpoint
    at the next step boundary and returns early; with several processes, a SIGTERM
    to any of them stops all of them after the same step. An unwritable
    ``workdir`` raises ``PermissionError`` before any step; a full disk raises
    ``OSError`` (ENOSPC) naming the path and the latest intact checkpoint, which
    a rerun resumes from. Returns the final state.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if log_every <= 0 or checkpoint_every <= 0:
        raise ValueError(f"log_every and checkpoint_every must be > 0, got {log_every}, {checkpoint_every}")
    if checkpoint_every % log_every:
        raise ValueError(f"checkpoint_every={checkpoint_every} must be a multiple of log_every={log_every}")
    ensure_writable_dir(workdir, "workdir")
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=max_to_keep)
    primary = jax.process_index() == 0
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        if primary:
            step = int(state.step)
            print(f"resumed from step {step} (checkpoint {os.path.join(ckpt.directory, str(step))})", flush=True)
    start = int(state.step)
    clock = TrainTime(workdir, start, write=primary)
    writer = MetricWriter(
        os.path.join(workdir, "metrics.jsonl"), resume_step=start, tensorboard_dir=os.path.join(workdir, "tb")
    ) if primary else None
    bar = tqdm(total=num_steps, initial=start, disable=not (progress and primary), desc="train", dynamic_ncols=True)
    acc, n_acc, t_last = None, 0, time.perf_counter()
    with _disk_full_is_fatal(ckpt), _Preemption() as preemption:
        for step in range(start, num_steps):
            state, metrics = train_step(state, batches(step))
            if stop_on_nonfinite and float(metrics["nonfinite"]):
                ckpt.wait()
                raise FloatingPointError(
                    f"non-finite loss or gradient at step {step} (the update was not applied); "
                    f"latest intact checkpoint: step {ckpt.latest_step()} in {ckpt.directory}"
                )
            acc = metrics if acc is None else jax.tree.map(jnp.add, acc, metrics)
            n_acc += 1
            done = step + 1
            preempted = preemption(done)
            if done % log_every == 0 or done == num_steps or preempted:
                means = {k: float(v) / n_acc for k, v in jax.device_get(acc).items()}
                now = time.perf_counter()
                if writer is not None:
                    writer.write(done, means)
                bar.set_postfix(loss=f"{means['loss']:.4f}", steps_per_s=f"{n_acc / (now - t_last):.1f}")
                bar.update(n_acc)
                acc, n_acc, t_last = None, 0, now
            if done % checkpoint_every == 0 or done == num_steps or preempted:
                ckpt.save(done, state)
                clock.record(done)
            if preempted:
                break
        ckpt.wait()
    bar.close()
    ckpt.close()
    if writer is not None:
        writer.close()
    return state
