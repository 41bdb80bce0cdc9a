"""Fréchet distance between Gaussians fitted to feature sets (the FID formula).

Host-side float64 NumPy: the matrix square root is the fragile part of FD and
gains nothing from an accelerator at the feature sizes used here.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``features``.

    Args:
        features: (N, F) array, N >= 2.

    Returns:
        mu: float64 (F,); cov: float64 (F, F).
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N, F) with N >= 2, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features must be finite")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped)."""
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

    ``||mu1 - mu2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^1/2 cov2 cov1^1/2)^1/2)``,
    computed from the eigenvalues of the symmetric PSD matrix
    ``cov1^1/2 cov2 cov1^1/2``, so singular (rank-deficient) covariances need
    no eps offset and never produce complex or NaN values. Round-off below zero
    is clipped, so the result is >= 0.

    Args:
        mu1, mu2: (F,) means. cov1, cov2: (F, F) symmetric PSD covariances.

    Returns:
        Python float.
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64) for m in (mu1, mu2))
    cov1, cov2 = (np.asarray(c, dtype=np.float64) for c in (cov1, cov2))
    if mu1.ndim != 1:
        raise ValueError(f"mu1 must have shape (F,), got {mu1.shape}")
    f = mu1.shape[0]
    for name, arr, shape in (("mu2", mu2, (f,)), ("cov1", cov1, (f, f)), ("cov2", cov2, (f, f))):
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match mu1, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite")
    if not np.all(np.isfinite(mu1)):
        raise ValueError("mu1 must be finite")
    cov1 = 0.5 * (cov1 + cov1.T)
    cov2 = 0.5 * (cov2 + cov2.T)
    s1 = _psd_sqrt(cov1)
    inner = s1 @ cov2 @ s1
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean, 0.0))
