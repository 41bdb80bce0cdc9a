"""DDPM ancestral sampling, DDIM and Analytic-DPM on a sigma grid.

The protocol of ``jaxdiff.samplers.base``: ``x`` is in the EDM variable at ``sigmas[0]``. Each
level σ is a VP level ``abar = 1 / (1 + σ²)`` (DDPM's ``x_t = sqrt(abar) x``); the final 0 is
``abar = 1`` (diffusers' ``set_alpha_to_one``). ``vp_sigmas(alphas_cumprod, timesteps)`` turns a
discrete DDPM schedule into that grid, so DDPM's ``x_T`` enters as ``x_T / sqrt(abar_T)``.

One step from ``a = abar(σ)`` to ``a' = abar(σ')``, with ``x0 = D(x; σ)`` and ``eps = (x - x0) / σ``,
is DDIM's

    x_t' = sqrt(a') x0 + sqrt(1 - a' - v) eps + sqrt(v) z,   v = eta^2 (1 - a')/(1 - a) (1 - a/a'),

written in DDPM's variable ``x_t = sqrt(a) x``; DDPM's is the posterior mean (DDIM's with
``eta = 1``) plus noise of a chosen variance (``fixed_small``: the posterior variance, i.e. DDIM
``eta = 1``; ``fixed_large``: ``beta = 1 - a/a'``; or an array such as Analytic-DPM's).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import concrete
from jaxdiff._checks import check_sigmas
from jaxdiff.samplers.base import check_nonneg, denoise, finish, noise_source, register, run_steps, step_levels

Array = Any

__all__ = ["ddpm", "ddim", "analytic_dpm_variances", "vp_sigmas"]


def vp_sigmas(alphas_cumprod: Array, timesteps: Array) -> Array:
    """EDM grid of a discrete schedule: ``sqrt(1/abar - 1)`` at ``timesteps`` (K,) then 0, (K+1,).

    ``alphas_cumprod`` (T,) in (0, 1]; ``timesteps`` strictly decreasing integer indices into it."""
    a = concrete(alphas_cumprod)
    if a is not None and (a.ndim != 1 or not np.all((a > 0) & (a <= 1))):
        raise ValueError(f"alphas_cumprod must be a 1-D array in (0, 1], got shape {a.shape}")
    t = concrete(timesteps)
    if t is not None:
        if t.ndim != 1 or t.shape[0] < 1 or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"timesteps must be a non-empty 1-D integer array, got {t.dtype} {t.shape}")
        if np.any(np.diff(t) >= 0):
            raise ValueError("timesteps must be strictly decreasing")
        n = np.shape(alphas_cumprod)[0]
        if t.min() < 0 or t.max() >= n:
            raise ValueError(f"timesteps must lie in [0, {n - 1}] (alphas_cumprod), got {t.min()}..{t.max()}")
    abar = jnp.asarray(alphas_cumprod)[jnp.asarray(timesteps)]
    return jnp.concatenate([jnp.sqrt((1.0 - abar) / abar), jnp.zeros((1,), abar.dtype)])


def _abar(sigma):
    return 1.0 / (1.0 + sigma**2)


def _posterior_small(a, a_prev):
    """``(1 - a')/(1 - a) (1 - a/a')``: variance of ``q(x_{t'} | x_t, x_0)`` in DDPM's variable."""
    return (1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)


def _run(denoiser, x, sigmas, lam2, variances, key, noise, return_trajectory, cond):
    """The shared scan in the EDM variable: ``x' = x0 + c_eps eps + c_z z`` with
    ``c_eps = sqrt((1 - a' - lam2) / a')`` and ``c_z = sqrt(v / a')``; no draw where ``v`` is None."""
    sig, sig_next = step_levels(x, sigmas)
    # Per-step coefficients in at least float32, then cast to x's dtype: in bfloat16, abar = 1 − 1e-4
    # rounds to 1 and 1 − abar to 0.
    wide = jnp.promote_types(x.dtype, jnp.float32)
    a_next = _abar(jnp.asarray(sigmas, wide)[1:])
    c_eps = jnp.sqrt(jnp.maximum(1.0 - a_next - lam2.astype(wide), 0.0) / a_next).astype(x.dtype)
    c_z = None if variances is None else jnp.sqrt(variances.astype(wide) / a_next).astype(x.dtype)

    def step(x, s):
        i, sigma, sigma_next, ce, cz = s
        x0 = denoise(denoiser, x, sigma, cond)
        x = x0 + ce * (x - x0) / sigma
        if cz is not None:
            x = x + cz * noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        return x

    steps = (jnp.arange(sig.shape[0]), sig, sig_next, c_eps, c_z)
    x, traj = run_steps(step, x, steps, trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)


def _levels(sigmas):
    """``(a, a')`` per step (N,), in at least float32."""
    check_sigmas(sigmas)
    s = jnp.asarray(sigmas)
    s = s.astype(jnp.promote_types(s.dtype, jnp.float32))
    return _abar(s[:-1]), _abar(s[1:])


@register(nfe=lambda n, **_: n, deterministic=True)
def ddim(denoiser: Callable, x: Array, sigmas: Array, *, key: Array | None = None, noise=None, eta: float = 0.0,
         return_trajectory: bool = False, **cond):
    """DDIM (Song et al. 2021); NFE = N. ``eta = 0`` is deterministic (``key`` unused, equal to
    ``euler``); ``eta = 1`` is DDPM with ``fixed_small`` variance (same key, same draws)."""
    check_nonneg("eta", eta)
    a, a_next = _levels(sigmas)
    stochastic = concrete(eta) is None or float(eta) != 0.0
    noise = noise_source(key, noise) if stochastic else None
    v = jnp.asarray(eta, a.dtype) ** 2 * _posterior_small(a, a_next)
    return _run(denoiser, x, sigmas, v, v if stochastic else None, key, noise, return_trajectory, cond)


@register(nfe=lambda n, **_: n, deterministic=False)
def ddpm(denoiser: Callable, x: Array, sigmas: Array, *, key: Array | None = None, noise=None,
         variance: str | Array = "fixed_small", return_trajectory: bool = False, **cond):
    """DDPM ancestral sampling (Ho et al. 2020), strided over the grid; NFE = N.

    ``variance``: ``"fixed_small"`` (posterior variance), ``"fixed_large"`` (``beta = 1 - a/a'``,
    none on the last step, as Ho et al.), or an (N,) array of reverse variances in DDPM's
    variable, e.g. from ``analytic_dpm_variances`` (used on every step).
    """
    noise = noise_source(key, noise)
    a, a_next = _levels(sigmas)
    if isinstance(variance, str):
        if variance == "fixed_small":
            v = _posterior_small(a, a_next)
        elif variance == "fixed_large":
            v = (1.0 - a / a_next).at[-1].set(0.0)
        else:
            raise ValueError(f"variance must be 'fixed_small', 'fixed_large' or an array, got {variance!r}")
    else:
        v = jnp.asarray(variance)
        if v.shape != a.shape:
            raise ValueError(f"variance array must have shape {a.shape} (one per step), got {v.shape}")
    return _run(denoiser, x, sigmas, _posterior_small(a, a_next), v, key, noise, return_trajectory, cond)


def analytic_dpm_variances(denoiser: Callable, x0: Array, sigmas: Array, *, key: Array, num_mc: int = 1,
                           return_gamma: bool = False, **cond):
    """Analytic-DPM (Bao et al. 2022) optimal reverse variances for ``ddpm`` on ``sigmas``, (N,).

    ``Gamma_t = E ||eps_hat(x_t)||^2 / d`` is estimated by Monte Carlo over the data batch
    ``x0`` (B, ...) with ``num_mc`` noise draws per example; then, with ``lam2`` the DDPM
    posterior variance and ``alpha = a/a'``,

        v*_t = lam2 + (sqrt((1 - a)/alpha) - sqrt(1 - a' - lam2))^2 (1 - Gamma_t),

    clipped to Theorem 2's range ``Gamma_t in [0, 1]``. Returns ``v*`` (N,), or
    ``(v*, Gamma)`` when ``return_gamma``.
    """
    if int(num_mc) < 1:
        raise ValueError(f"num_mc must be >= 1, got {num_mc!r}")
    a, a_next = _levels(sigmas)
    x0 = jnp.asarray(x0)
    d = np.prod(x0.shape[1:])
    xs = jnp.repeat(x0, int(num_mc), axis=0)
    cond = {k: jnp.repeat(c, int(num_mc), axis=0) for k, c in cond.items()}

    def gamma(sigma, k):
        eps = jax.random.normal(k, xs.shape, xs.dtype)
        x = xs + sigma * eps
        eps_hat = (x - denoise(denoiser, x, sigma, cond)) / sigma
        return jnp.mean(jnp.sum(jnp.reshape(eps_hat, (xs.shape[0], -1)) ** 2, axis=1)) / d

    sig = jnp.asarray(sigmas)[:-1].astype(xs.dtype)
    g = jax.lax.map(lambda s: gamma(*s), (sig, jax.random.split(key, sig.shape[0])))
    lam2 = _posterior_small(a, a_next)
    gap = (jnp.sqrt((1.0 - a) * a_next / a) - jnp.sqrt(jnp.maximum(1.0 - a_next - lam2, 0.0))) ** 2
    v = lam2 + gap * (1.0 - jnp.clip(g, 0.0, 1.0))
    return (v, g) if return_gamma else v
