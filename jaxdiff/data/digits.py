"""scikit-learn's 8x8 handwritten digits (1,797 images, ships with scikit-learn)."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "test", "all")


def load_digits(split: str = "train", *, test_fraction: float = 0.2, seed: int = 0):
    """Digits scaled to [-1, 1].

    Returns:
        images: float32 (N, 8, 8, 1) in [-1, 1]; labels: int32 (N,).
        The train/test split is a fixed, stratified permutation (``seed``), so
        every module that speaks of "held-out digits" means the same images.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as _sk_load
    from sklearn.model_selection import train_test_split

    ds = _sk_load()
    images = (ds.images.astype(np.float32) / 8.0 - 1.0)[..., None]
    labels = ds.target.astype(np.int32)
    if split == "all":
        return images, labels
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=labels)
    sel = np.sort(tr if split == "train" else te)
    return images[sel], labels[sel]
