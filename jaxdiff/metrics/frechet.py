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


def _psd_sqrt(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Symmetric square root from the eigenpairs of a symmetric PSD matrix (negative eigenvalues clipped)."""
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _check_psd(name: str, cov: np.ndarray, w: np.ndarray, eps: float) -> None:
    """Raise unless ``cov`` is symmetric and its eigenvalues ``w`` are >= 0, both up to the
    round-off ``tol = max(1e-6, 10 F eps)`` relative to the largest entry / eigenvalue."""
    tol = max(1e-6, 10 * cov.shape[0] * eps)
    asym = np.abs(cov - cov.T).max(initial=0.0)
    if asym > tol * np.abs(cov).max(initial=0.0):
        raise ValueError(f"{name} must be symmetric, got max |{name} - {name}.T| = {asym:.3g}")
    if w.size and w.min() < -tol * np.abs(w).max():
        raise ValueError(f"{name} must be positive semi-definite, got eigenvalue {w.min():.3g} "
                         f"(largest magnitude {np.abs(w).max():.3g})")


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

    ``||mu1 - mu2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^1/2 cov2 cov1^1/2)^1/2)``,
    computed from the eigenvalues of the symmetric PSD matrix
    ``cov1^1/2 cov2 cov1^1/2``, so singular (rank-deficient) covariances need
    no eps offset and never produce complex or NaN values. Round-off below zero
    is clipped, so the result is >= 0.

    Args:
        mu1: (F,) mean of the first Gaussian.
        cov1: (F, F) its covariance, symmetric PSD; asymmetry or a negative eigenvalue beyond
            the input dtype's round-off raises ``ValueError``.
        mu2: (F,) mean of the second Gaussian.
        cov2: (F, F) its covariance, likewise.

    Returns:
        Python float.
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64) for m in (mu1, mu2))
    cov1, cov2 = np.asarray(cov1), np.asarray(cov2)
    eps1, eps2 = (float(np.finfo(np.result_type(c.dtype, np.float32)).eps) for c in (cov1, cov2))
    cov1, cov2 = cov1.astype(np.float64), cov2.astype(np.float64)
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
    sym1, sym2 = 0.5 * (cov1 + cov1.T), 0.5 * (cov2 + cov2.T)
    w1, v1 = np.linalg.eigh(sym1)
    _check_psd("cov1", cov1, w1, eps1)
    _check_psd("cov2", cov2, np.linalg.eigvalsh(sym2), eps2)
    s1 = _psd_sqrt(w1, v1)
    inner = s1 @ sym2 @ s1
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(sym1) + np.trace(sym2) - 2.0 * tr_covmean, 0.0))
