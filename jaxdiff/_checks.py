"""Input validation shared across jaxdiff (runs on concrete values only; traced values pass)."""

from __future__ import annotations

import numpy as np

from jaxdiff._arrays import concrete


def check_sigmas(sigmas) -> None:
    """``sigmas``: (N+1,) strictly decreasing, non-negative, ending with 0."""
    s = concrete(sigmas)
    if s is None:
        return
    if s.ndim != 1 or s.shape[0] < 2:
        raise ValueError(f"sigmas must be a 1-D grid of at least 2 levels, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("sigmas must be finite")
    if s[-1] != 0:
        raise ValueError(f"sigmas must end with 0 (as jaxdiff.schedules.karras), got last value {s[-1]}")
    if np.any(s < 0):
        raise ValueError(f"sigmas must be non-negative, got min {s.min()}")
    if np.any(np.diff(s) >= 0):
        raise ValueError("sigmas must be strictly decreasing")


def check_denoised(x, denoised) -> None:
    """The denoiser must return an array of the same shape as its input."""
    if denoised.shape != x.shape:
        raise ValueError(f"denoiser returned shape {denoised.shape} for input x of shape {x.shape}")


def check_positive(x, name: str, *, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless a concrete ``x`` is finite and > 0 (>= 0 with
    ``allow_zero``); a no-op under tracing."""
    v = concrete(x)
    if v is None:
        return
    ok = np.isfinite(v) & ((v >= 0) if allow_zero else (v > 0))
    if not np.all(ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {v[~ok].flat[0]}")


def check_finite(x, message: str) -> None:
    """Raise ``ValueError(message)`` when a concrete ``x`` holds NaN or inf (a no-op under tracing)."""
    v = concrete(x)
    if v is not None and not np.all(np.isfinite(v)):
        raise ValueError(message)
