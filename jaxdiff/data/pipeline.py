"""Deterministic, resumable, per-process batching over random-access sources.

A batch is a pure function of the step: the global order is a fresh
permutation per epoch (seeded by ``(seed, epoch)``), each process takes its
contiguous slice of the global batch. Resuming at step k therefore needs no
iterator state beyond k, and no example is seen twice or skipped within an epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import jax
import numpy as np


class Source(Protocol):
    def __len__(self) -> int: ...

    def get(self, indices: np.ndarray) -> dict: ...


class ArraySource:
    """In-memory arrays with a common first axis, e.g. ``{"image": (N, ...), "label": (N,)}``."""

    def __init__(self, **arrays):
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays must share their first dimension, got {sizes}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self._n = next(iter(sizes.values()))

    def __len__(self) -> int:
        return self._n

    def get(self, indices: np.ndarray) -> dict:
        return {k: v[indices] for k, v in self.arrays.items()}


class EpochSampler:
    """Indices of the global batch at a given step, and this process's slice of it."""

    def __init__(self, num_examples: int, batch_size: int, *, seed: int = 0,
                 process_index: int | None = None, process_count: int | None = None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if num_examples < batch_size:
            raise ValueError(f"batch_size={batch_size} exceeds the number of examples ({num_examples})")
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if batch_size % self.process_count:
            raise ValueError(f"batch_size={batch_size} must be divisible by the process count {self.process_count}")
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.steps_per_epoch = num_examples // batch_size
        self._last = (-1, None)  # (epoch, its permutation): consecutive steps share it

    def epoch(self, step: int) -> int:
        """The epoch that ``step`` falls in."""
        return int(step) // self.steps_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        """(num_examples,) the order of ``epoch`` (read-only: it is shared by the epoch's steps)."""
        last_epoch, perm = self._last
        if last_epoch != epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
            perm.flags.writeable = False
            self._last = (epoch, perm)
        return perm

    def global_indices(self, step: int) -> np.ndarray:
        epoch, pos = divmod(int(step), self.steps_per_epoch)
        return self.permutation(epoch)[pos * self.batch_size:(pos + 1) * self.batch_size]

    def local_indices(self, step: int) -> np.ndarray:
        local = self.batch_size // self.process_count
        return self.global_indices(step)[self.process_index * local:(self.process_index + 1) * local]


def batch_fn(source: Source, sampler: EpochSampler, transform: Callable[[dict], dict] | None = None):
    """``step -> local batch`` (a dict of NumPy arrays)."""

    def batches(step: int) -> dict:
        batch = source.get(sampler.local_indices(step))
        return transform(batch) if transform is not None else batch

    return batches
