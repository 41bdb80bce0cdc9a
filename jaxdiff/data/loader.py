"""grain pipelines over the step-indexed batches of :mod:`jaxdiff.data.pipeline`.

``step_dataset`` is a ``grain.MapDataset`` whose element ``step`` is this process's batch of that
step: the sampler's contiguous slice of the global batch (each process reads only its slice),
fetched with ``source.get`` and transformed (:mod:`jaxdiff.data.transforms`). Without transforms
it equals ``batch_fn(source, sampler)(step)``. Being random access, ``dataset[step]`` is a pure
function of the step, so resuming at step k needs nothing but k. ``iterate`` computes the batches
ahead of use in worker processes; its iterator's grain state (``get_state`` / ``set_state``) can be
checkpointed too. ``Batches`` is the ``step -> batch`` function a training loop (``jaxdiff.train.fit``)
reads, with that read-ahead.
"""

from __future__ import annotations

from collections.abc import Sequence

import grain

from jaxdiff.data.pipeline import EpochSampler, Source
from jaxdiff.data.transforms import Transform, example_keys, split_keys


class StepBatches:
    """Random access to this process's batches: ``batches[step]`` -> ``{name: (B_local, ...)}``.

    ``len`` is ``num_steps``; ``batches[step]`` applies ``transforms`` in order, the i-th drawing
    its randomness from ``split_keys(keys, i)`` with the keys of the batch's examples.
    """

    def __init__(self, source: Source, sampler: EpochSampler, num_steps: int, transforms: Sequence[Transform] = ()):
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        self.source, self.sampler, self.num_steps, self.transforms = source, sampler, num_steps, tuple(transforms)

    def __len__(self) -> int:
        return self.num_steps

    def __getitem__(self, step: int) -> dict:
        if not 0 <= step < self.num_steps:
            raise IndexError(f"step {step} is outside [0, {self.num_steps})")
        indices = self.sampler.local_indices(step)
        batch = self.source.get(indices)
        keys = example_keys(self.sampler.seed, self.sampler.epoch(step), indices)
        for i, transform in enumerate(self.transforms):
            batch = transform(batch, split_keys(keys, i))
        return batch


def step_dataset(source: Source, sampler: EpochSampler, num_steps: int,
                 transforms: Sequence[Transform] = ()) -> grain.MapDataset:
    """``grain.MapDataset`` of length ``num_steps``: element ``step`` is ``StepBatches(...)[step]``."""
    return grain.MapDataset.source(StepBatches(source, sampler, num_steps, transforms))


def iterate(dataset: grain.MapDataset, start: int = 0, *, worker_count: int = 0,
            prefetch: int = 2) -> grain.DatasetIterator:
    """Iterator over ``dataset[start], dataset[start + 1], ...``, computed ahead of use.

    ``worker_count`` processes build the batches (worker w those of steps ``start + w``,
    ``start + w + worker_count``, ...), each keeping ``prefetch`` ready; with no workers one thread
    of this process builds ``prefetch`` ahead. The batches are the same for every ``worker_count``.

    ``get_state()`` is a JSON-serialisable dict; ``set_state(state)`` on an iterator made with the
    same ``start`` and ``worker_count`` resumes right after the last batch returned before that
    ``get_state``. Close the iterator (``close()``) to stop its workers.
    """
    if worker_count < 0 or prefetch < 1:
        raise ValueError(f"need worker_count >= 0 and prefetch >= 1, got {worker_count}, {prefetch}")
    threads = 0 if worker_count else 1
    ds = dataset[start:].to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))
    if worker_count:
        _make_grain_flags_readable()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count, per_worker_buffer_size=prefetch))
    return iter(ds)


def _make_grain_flags_readable() -> None:
    """grain reads an absl flag when it starts workers; outside ``absl.app`` (tests, notebooks) the
    flags are unparsed and that read raises. Mark the flag as given: it keeps its default value."""
    from absl import flags

    name = "grain_enable_multiprocess_worker_profiling"
    if not flags.FLAGS.is_parsed() and name in flags.FLAGS:
        flags.FLAGS[name].present = True


class Batches:
    """``batches(step)`` for a training loop: ``dataset[step]``, read ahead by ``iterate``.

    The iterator starts at the first step asked for and serves consecutive steps; a jump (a loop
    that restarts elsewhere) starts a new one. The batch of a step never depends on where the
    iterator started, so a run resumed at step k reads exactly what an uninterrupted run read.
    """

    def __init__(self, dataset: grain.MapDataset, *, worker_count: int = 0, prefetch: int = 2):
        self.dataset, self.worker_count, self.prefetch = dataset, worker_count, prefetch
        self._it, self._next = None, None

    def __call__(self, step: int) -> dict:
        if step != self._next:
            self.close()
            self._it = iterate(self.dataset, step, worker_count=self.worker_count, prefetch=self.prefetch)
        self._next = step + 1
        return next(self._it)

    def close(self) -> None:
        """Stop the read-ahead (its worker processes)."""
        if self._it is not None:
            self._it.close()
        self._it = self._next = None
