"""Deterministic, resumable, per-process batching; data sets that ship or are generated."""

from __future__ import annotations

import chex
import numpy as np
import pytest

from jaxdiff.data import pipeline
from jaxdiff.data.digits import load_digits
from jaxdiff.data.toy import load_toy


def test_epoch_covers_every_example_once():
    s = pipeline.EpochSampler(100, 10, seed=3, process_index=0, process_count=1)
    seen = np.concatenate([s.global_indices(k) for k in range(10)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(100))
    assert not np.array_equal(s.global_indices(0), s.global_indices(10))  # a fresh permutation per epoch
    np.testing.assert_array_equal(s.global_indices(7), pipeline.EpochSampler(100, 10, seed=3).global_indices(7))


def test_process_slices_partition_the_global_batch():
    parts = [pipeline.EpochSampler(64, 16, seed=0, process_index=i, process_count=4).local_indices(5) for i in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), pipeline.EpochSampler(64, 16, seed=0).global_indices(5))


@pytest.mark.parametrize("kwargs,match", [(dict(num_examples=5, batch_size=10), "exceeds"),
                                          (dict(num_examples=50, batch_size=0), "batch_size"),
                                          (dict(num_examples=50, batch_size=10, process_count=3, process_index=0),
                                           "process count")])
def test_bad_sampler_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipeline.EpochSampler(**kwargs)


def test_array_source_and_batch_fn():
    src = pipeline.ArraySource(image=np.arange(20.0).reshape(10, 2), label=np.arange(10))
    batch = pipeline.batch_fn(src, pipeline.EpochSampler(10, 4, seed=0))(0)
    np.testing.assert_array_equal(batch["image"][:, 0] / 2, batch["label"])
    with pytest.raises(ValueError, match="first dimension"):
        pipeline.ArraySource(image=np.zeros((3, 2)), label=np.zeros(4))


def test_digits_split():
    x, y = load_digits("train")
    xt, yt = load_digits("test")
    chex.assert_shape([x, xt], [(1437, 8, 8, 1), (360, 8, 8, 1)])
    assert x.min() == -1.0 and x.max() == 1.0 and x.dtype == np.float32
    assert np.bincount(yt).min() >= 35  # stratified
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")


def test_toys_are_deterministic():
    np.testing.assert_array_equal(load_toy("swiss_roll", 50, seed=1), load_toy("swiss_roll", 50, seed=1))
    assert load_toy("gaussian_mixture", 1000).std() > 0.5
    with pytest.raises(ValueError, match="unknown toy"):
        load_toy("moons", 10)
