"""Batch transformations, vectorised in NumPy over the batch and run where batches are built.

A transform is ``transform(batch, keys) -> batch``: ``batch`` a dict of (B, ...) arrays, ``keys``
uint64 (B,), one random key per example that depends on (seed, epoch, example index) alone. An
example's augmentation is therefore the same whatever the batch size, the process count, the
worker count or the step a run resumed from.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Transform = Callable[[dict, np.ndarray], dict]

_GOLDEN = 0x9E3779B97F4A7C15


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 arrays that scrambles every bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def example_keys(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """uint64 (B,): a random key for each example index of (B,) drawn in ``epoch``."""
    run = _mix(np.array([seed, epoch], np.uint64) * np.uint64(_GOLDEN))
    return _mix(_mix(np.asarray(indices).astype(np.uint64) + run[0]) ^ run[1])


def split_keys(keys: np.ndarray, stream: int) -> np.ndarray:
    """uint64 (B,): independent keys for the ``stream``-th consumer of ``keys`` (B,)."""
    return _mix(keys + np.uint64((stream + 1) * _GOLDEN % 2**64))


def uniform(keys: np.ndarray) -> np.ndarray:
    """float64 (B,) in [0, 1): one uniform draw per key of (B,)."""
    return (keys >> np.uint64(11)) * 2.0**-53


def scale_image(x: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] (...) -> float32 [-1, 1] (...)."""
    out = x.astype(np.float32)
    out /= 127.5  # in place: a fresh array per operation costs more than the arithmetic
    out -= 1.0
    return out


class ScaleImage:
    """``batch[key]``: uint8 [0, 255] (B, ...) -> float32 [-1, 1]."""

    def __init__(self, key: str = "image"):
        self.key = key

    def __call__(self, batch: dict, keys: np.ndarray) -> dict:
        return {**batch, self.key: scale_image(batch[self.key])}


class RandomFlip:
    """``batch[key]`` (B, H, W, C): each example mirrored left-right with probability 1/2."""

    def __init__(self, key: str = "image"):
        self.key = key

    def __call__(self, batch: dict, keys: np.ndarray) -> dict:
        x = batch[self.key]
        if x.ndim != 4:
            raise ValueError(f"RandomFlip needs batch[{self.key!r}] of shape (B, H, W, C), got {x.shape}")
        flip = uniform(keys) < 0.5
        out = x.copy()
        out[flip] = x[flip, :, ::-1]
        return {**batch, self.key: out}
