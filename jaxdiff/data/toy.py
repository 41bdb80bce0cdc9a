"""2-D toy distributions, generated deterministically from a seed."""

from __future__ import annotations

import numpy as np

TOYS = ("swiss_roll", "gaussian_mixture")


def swiss_roll(n: int, *, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """(n, 2) float32 points on a 2-D swiss roll, scaled to roughly unit standard deviation."""
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 7.5
    return (x + noise * rng.standard_normal((n, 2))).astype(np.float32)


def gaussian_mixture(n: int, *, seed: int = 0, num_modes: int = 8, radius: float = 1.5, std: float = 0.1):
    """(n, 2) float32 samples of ``num_modes`` isotropic Gaussians evenly spaced on a circle."""
    rng = np.random.default_rng(seed)
    k = rng.integers(num_modes, size=n)
    angle = 2 * np.pi * k / num_modes
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centres + std * rng.standard_normal((n, 2))).astype(np.float32)


def load_toy(name: str, n: int, *, seed: int = 0) -> np.ndarray:
    if name == "swiss_roll":
        return swiss_roll(n, seed=seed)
    if name == "gaussian_mixture":
        return gaussian_mixture(n, seed=seed)
    raise ValueError(f"unknown toy data set {name!r}; choose one of {TOYS}")
