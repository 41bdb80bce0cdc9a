"""Noise-level grids and alpha_bar <-> sigma maps (EDM / k-diffusion convention).

A grid of ``n`` steps is a float array of shape ``(n + 1,)``: ``n`` strictly
decreasing positive noise levels followed by an exact ``0``, ready for any
``sampler(denoiser, x, sigmas)``. Levels are EDM sigmas: ``x = y + sigma * n``
in the unscaled variable, so a VP model with ``alpha_bar`` has
``sigma = sqrt((1 - alpha_bar) / alpha_bar)``.

Arguments are validated when concrete (eager use); under ``jit`` the checks on
traced floats are skipped, while ``n`` must always be a static Python int.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any

__all__ = [
    "karras",
    "exponential",
    "vp",
    "cosine",
    "linear_beta",
    "sigma_from_alpha_bar",
    "alpha_bar_from_sigma",
]


def _check_n(name: str, n) -> int:
    try:
        n = operator.index(n)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n}")
    return n


def _check(name: str, value, ok, expected: str) -> None:
    """Raises ValueError naming ``name`` if concrete ``value`` fails ``ok``."""
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value)
    if not np.all(ok(v)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _check_range(sigma_min, sigma_max) -> None:
    _check("sigma_min", sigma_min, lambda v: v > 0, "> 0")
    _check("sigma_max", sigma_max, np.isfinite, "finite")
    if not isinstance(sigma_max, jax.core.Tracer):
        _check("sigma_min", sigma_min, lambda v: v < np.asarray(sigma_max), f"< sigma_max={sigma_max!r}")


def _append_zero(sigmas: Array) -> Array:
    return jnp.concatenate([sigmas, jnp.zeros((1,), sigmas.dtype)])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *, dtype=jnp.float32) -> Array:
    """Karras et al. (2022) rho-spaced grid, k-diffusion ``get_sigmas_karras``.

    Returns ``(n + 1,)``: ``sigma_max``, ..., ``sigma_min``, 0 (``n = 1`` gives
    ``[sigma_max, 0]``).
    """
    n = _check_n("n", n)
    _check_range(sigma_min, sigma_max)
    _check("rho", rho, lambda v: v > 0, "> 0")
    ramp = jnp.linspace(0.0, 1.0, n, dtype=dtype)
    min_inv_rho = jnp.asarray(sigma_min, dtype) ** (1.0 / rho)
    max_inv_rho = jnp.asarray(sigma_max, dtype) ** (1.0 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float, *, dtype=jnp.float32) -> Array:
    """Log-uniform grid, k-diffusion ``get_sigmas_exponential``. Returns ``(n + 1,)``."""
    n = _check_n("n", n)
    _check_range(sigma_min, sigma_max)
    log_sigmas = jnp.linspace(jnp.log(jnp.asarray(sigma_max, dtype)), jnp.log(jnp.asarray(sigma_min, dtype)), n)
    return _append_zero(jnp.exp(log_sigmas))


def vp(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3, *, dtype=jnp.float32) -> Array:
    """Continuous VP grid, k-diffusion ``get_sigmas_vp``. Returns ``(n + 1,)``.

    ``sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)`` at ``t = linspace(1, eps_s, n)``,
    evaluated with ``expm1`` so small ``t`` keeps full relative precision.
    """
    n = _check_n("n", n)
    _check("beta_d", beta_d, lambda v: v >= 0, ">= 0")
    _check("beta_min", beta_min, lambda v: v > 0, "> 0")
    _check("eps_s", eps_s, lambda v: (v > 0) & (v < 1), "in (0, 1)")
    t = jnp.linspace(1.0, jnp.asarray(eps_s, dtype), n, dtype=dtype)
    return _append_zero(jnp.sqrt(jnp.expm1(0.5 * beta_d * t**2 + beta_min * t)))


def _cosine_u(t, s):
    return (t + s) / (1.0 + s) * (0.5 * math.pi)


def _cosine_t_from_sigma(sigma, s):
    """Inverse of the cosine ``sigma(t)``: ``tan^2 u = tan^2 u0 + sigma^2 / cos^2 u0``."""
    u0 = _cosine_u(0.0, s)
    u = jnp.arctan(jnp.sqrt(math.sin(u0) ** 2 + sigma**2) / math.cos(u0))
    return u * (1.0 + s) / (0.5 * math.pi) - s


def cosine(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, s: float = 0.008, *, dtype=jnp.float32) -> Array:
    """iDDPM cosine schedule (Nichol & Dhariwal 2021) as EDM sigmas. Returns ``(n + 1,)``.

    ``alpha_bar(t) = cos^2(u(t)) / cos^2(u(0))`` with ``u(t) = (t + s) / (1 + s) * pi / 2``
    and ``sigma(t) = sqrt(1 / alpha_bar(t) - 1)``, at ``n`` evenly spaced ``t`` from
    ``t(sigma_max)`` down to ``t(sigma_min)``. Clipping the *time* range at
    ``sigma_max`` (``sigma -> inf`` as ``t -> 1``) keeps the grid strictly decreasing.
    """
    n = _check_n("n", n)
    _check_range(sigma_min, sigma_max)
    _check("s", s, lambda v: v > 0, "> 0")
    t_hi = _cosine_t_from_sigma(jnp.asarray(sigma_max, dtype), s)
    t_lo = _cosine_t_from_sigma(jnp.asarray(sigma_min, dtype), s)
    u = _cosine_u(jnp.linspace(t_hi, t_lo, n, dtype=dtype), s)
    u0 = _cosine_u(0.0, s)
    # 1/alpha_bar - 1 = (cos^2 u0 - cos^2 u) / cos^2 u = sin(u - u0) sin(u + u0) / cos^2 u
    return _append_zero(jnp.sqrt(jnp.sin(u - u0) * jnp.sin(u + u0)) / jnp.cos(u))


def linear_beta(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, *, dtype=jnp.float32
) -> tuple[Array, Array]:
    """Discrete DDPM (Ho et al. 2020) linear betas.

    Returns ``(betas, alphas_cumprod)``, both ``(num_timesteps,)``; ``alphas_cumprod``
    is accumulated in log space, ``exp(cumsum(log1p(-betas)))``.
    """
    num_timesteps = _check_n("num_timesteps", num_timesteps)
    _check("beta_start", beta_start, lambda v: v > 0, "> 0")
    _check("beta_end", beta_end, lambda v: v < 1, "< 1")
    if not isinstance(beta_end, jax.core.Tracer):
        _check("beta_start", beta_start, lambda v: v <= np.asarray(beta_end), f"<= beta_end={beta_end!r}")
    betas = jnp.linspace(jnp.asarray(beta_start, dtype), jnp.asarray(beta_end, dtype), num_timesteps)
    return betas, jnp.exp(jnp.cumsum(jnp.log1p(-betas)))


def sigma_from_alpha_bar(alpha_bar: Array) -> Array:
    """EDM sigma ``sqrt((1 - alpha_bar) / alpha_bar)``, elementwise; ``alpha_bar`` in (0, 1].

    In float32, ``alpha_bar`` itself cannot resolve ``sigma`` much below ``3e-4``.
    """
    _check("alpha_bar", alpha_bar, lambda v: (v > 0) & (v <= 1), "in (0, 1]")
    alpha_bar = jnp.asarray(alpha_bar)
    return jnp.sqrt((1.0 - alpha_bar) / alpha_bar)


def alpha_bar_from_sigma(sigma: Array) -> Array:
    """``alpha_bar = 1 / (1 + sigma^2)``, elementwise; ``sigma >= 0``."""
    _check("sigma", sigma, lambda v: v >= 0, ">= 0")
    return 1.0 / (1.0 + jnp.asarray(sigma) ** 2)
