"""DDPM ancestral sampling, DDIM and Analytic-DPM on a discrete VP schedule.

Convention: these samplers work in DDPM's own variable,
``x_t = sqrt(abar_t) y + sqrt(1 - abar_t) eps`` with ``abar = alphas_cumprod`` (T,),
so ``x`` (B, ...) starts at ``timesteps[0]`` (e.g. ``x ~ N(0, I)``) and the result is
a data sample ``y``. The denoiser of the EDM seam is called on the unscaled
``x_t / sqrt(abar_t)`` at ``sigma_t = sqrt(1 / abar_t - 1)`` (``vp_sigmas`` gives that
grid, so DDIM with ``eta=0`` equals ``ode.euler`` on ``x_T / sqrt(abar_T)``).
``timesteps`` (K,) are strictly decreasing integer indices into ``alphas_cumprod``;
the step after the last one goes to ``abar = 1`` (diffusers' ``set_alpha_to_one``).

One step from ``a = abar_t`` to ``a' = abar_prev``, with ``x0 = D(x / sqrt(a), sigma_t)`` and
``eps = (x - sqrt(a) x0) / sqrt(1 - a)``, is DDIM's

    x' = sqrt(a') x0 + sqrt(1 - a' - v) eps + sqrt(v) z,   v = eta^2 (1 - a')/(1 - a) (1 - a/a'),

and DDPM's is the posterior mean (DDIM's with ``eta = 1``) plus noise of a chosen variance
(``fixed_small``: the posterior variance, i.e. DDIM ``eta = 1``; ``fixed_large``:
``beta = 1 - a/a'``; or an array such as Analytic-DPM's).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._checks import check_denoised

Array = Any

__all__ = ["ddpm", "ddim", "analytic_dpm_variances", "vp_sigmas"]


def _check_schedule(alphas_cumprod, timesteps) -> tuple[Array, Array]:
    """Validates (when concrete) and returns ``(abar_t, abar_prev)``, both (K,)."""
    a = np.asarray(alphas_cumprod) if not isinstance(alphas_cumprod, jax.core.Tracer) else None
    if a is not None and (a.ndim != 1 or not np.all((a > 0) & (a <= 1))):
        raise ValueError(f"alphas_cumprod must be a 1-D array in (0, 1], got shape {a.shape}")
    if not isinstance(timesteps, jax.core.Tracer):
        t = np.asarray(timesteps)
        if t.ndim != 1 or t.shape[0] < 1 or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"timesteps must be a non-empty 1-D integer array, got {t.dtype} {t.shape}")
        if np.any(np.diff(t) >= 0):
            raise ValueError("timesteps must be strictly decreasing")
        n = np.shape(alphas_cumprod)[0]
        if t.min() < 0 or t.max() >= n:
            raise ValueError(f"timesteps must lie in [0, {n - 1}] (alphas_cumprod), got {t.min()}..{t.max()}")
    alphas_cumprod = jnp.asarray(alphas_cumprod)
    abar = alphas_cumprod[jnp.asarray(timesteps)]
    return abar, jnp.concatenate([abar[1:], jnp.ones((1,), abar.dtype)])


def vp_sigmas(alphas_cumprod: Array, timesteps: Array) -> Array:
    """EDM grid of the discrete schedule: ``sqrt(1/abar - 1)`` at ``timesteps`` then 0, (K+1,)."""
    abar, _ = _check_schedule(alphas_cumprod, timesteps)
    return jnp.concatenate([jnp.sqrt((1.0 - abar) / abar), jnp.zeros((1,), abar.dtype)])


def _predict(denoiser, x, a, cond):
    """``(x0, eps)`` predicted from ``x_t`` at ``abar_t = a``."""
    return _predict_with(denoiser, x, jnp.sqrt(a), jnp.sqrt((1.0 - a) / a), jnp.sqrt(1.0 - a), cond)


def _predict_with(denoiser, x, sa, sigma, s1a, cond):
    """``_predict`` given ``sqrt(a)``, ``sigma_t`` and ``sqrt(1 - a)``."""
    x0 = denoiser(x / sa, sigma, **cond)
    check_denoised(x, x0)
    return x0, (x - sa * x0) / s1a


def _posterior_small(a, a_prev):
    """``(1 - a')/(1 - a) (1 - a/a')``: variance of ``q(x_{t'} | x_t, x_0)``."""
    return (1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)


def _run(denoiser, x, abar, abar_prev, lam2, variances, key, cond):
    """The shared scan: mean ``sqrt(a') x0 + sqrt(1 - a' - lam2) eps``, plus ``sqrt(v) z``."""
    dtype = x.dtype
    keys = jax.random.split(key, abar.shape[0]) if key is not None else jnp.zeros((abar.shape[0],))

    def step(x, s):
        sa, sigma, s1a, sa_prev, s_eps, sv, k = s
        x0, eps = _predict_with(denoiser, x, sa, sigma, s1a, cond)
        x = sa_prev * x0 + s_eps * eps
        if key is not None:
            x = x + sv * jax.random.normal(k, x.shape, dtype)
        return x.astype(dtype), None

    # Per-step scalars in at least float32, then cast to x's dtype: in bfloat16, abar = 1 − 1e-4 (t = 0)
    # rounds to 1 and sqrt(1 − abar) to 0, which made eps 0/0 = NaN.
    a, a_prev, l2, v = (c.astype(jnp.promote_types(dtype, jnp.float32)) for c in (abar, abar_prev, lam2, variances))
    coefs = (jnp.sqrt(a), jnp.sqrt((1.0 - a) / a), jnp.sqrt(1.0 - a), jnp.sqrt(a_prev),
             jnp.sqrt(jnp.maximum(1.0 - a_prev - l2, 0.0)), jnp.sqrt(v))
    xs = tuple(c.astype(dtype) for c in coefs) + (keys,)
    x, _ = jax.lax.scan(step, x, xs)
    return x


def ddim(denoiser: Callable, x: Array, alphas_cumprod: Array, timesteps: Array, *, eta: float = 0.0,
         key: Array | None = None, **cond) -> Array:
    """DDIM (Song et al. 2021). ``x`` (B, ...) at ``timesteps[0]`` -> sample (B, ...).

    ``eta = 0`` is deterministic (``key`` unused); ``eta = 1`` is DDPM with ``fixed_small``
    variance (same key, same noise draws). ``eta > 0`` needs ``key``.
    """
    if not isinstance(eta, jax.core.Tracer) and not np.all(np.asarray(eta) >= 0):
        raise ValueError(f"eta must be >= 0, got {eta!r}")
    abar, abar_prev = _check_schedule(alphas_cumprod, timesteps)
    stochastic = isinstance(eta, jax.core.Tracer) or float(eta) != 0.0
    if stochastic and key is None:
        raise ValueError("key is required when eta > 0")
    v = jnp.asarray(eta, abar.dtype) ** 2 * _posterior_small(abar, abar_prev)
    return _run(denoiser, x, abar, abar_prev, v, v, key if stochastic else None, cond)


def ddpm(denoiser: Callable, x: Array, alphas_cumprod: Array, timesteps: Array, *, key: Array,
         variance: str | Array = "fixed_small", **cond) -> Array:
    """DDPM ancestral sampling (Ho et al. 2020), strided over ``timesteps`` (K,).

    ``variance``: ``"fixed_small"`` (posterior variance), ``"fixed_large"`` (``beta = 1 - a/a'``,
    none on the last step, as Ho et al.), or a (K,) array of reverse variances in the
    ``x_{t'}`` variable, e.g. from ``analytic_dpm_variances`` (used on every step).
    """
    if key is None:
        raise ValueError("key is required for ddpm")
    abar, abar_prev = _check_schedule(alphas_cumprod, timesteps)
    if isinstance(variance, str):
        if variance == "fixed_small":
            v = _posterior_small(abar, abar_prev)
        elif variance == "fixed_large":
            v = (1.0 - abar / abar_prev).at[-1].set(0.0)
        else:
            raise ValueError(f"variance must be 'fixed_small', 'fixed_large' or an array, got {variance!r}")
    else:
        v = jnp.asarray(variance)
        if v.shape != abar.shape:
            raise ValueError(f"variance array must have shape {abar.shape} (one per timestep), got {v.shape}")
    return _run(denoiser, x, abar, abar_prev, _posterior_small(abar, abar_prev), v, key, cond)


def analytic_dpm_variances(denoiser: Callable, x0: Array, alphas_cumprod: Array, timesteps: Array, *,
                           key: Array, num_mc: int = 1, return_gamma: bool = False, **cond):
    """Analytic-DPM (Bao et al. 2022) optimal reverse variances for ``ddpm``, (K,).

    ``Gamma_t = E ||eps_hat(x_t)||^2 / d`` is estimated by Monte Carlo over the data batch
    ``x0`` (B, ...) with ``num_mc`` noise draws per example; then, with ``lam2`` the DDPM
    posterior variance and ``alpha = a/a'``,

        v*_t = lam2 + (sqrt((1 - a)/alpha) - sqrt(1 - a' - lam2))^2 (1 - Gamma_t),

    clipped to Theorem 2's range ``Gamma_t in [0, 1]``. Returns ``v*`` (K,), or
    ``(v*, Gamma)`` when ``return_gamma``.
    """
    if int(num_mc) < 1:
        raise ValueError(f"num_mc must be >= 1, got {num_mc!r}")
    abar, abar_prev = _check_schedule(alphas_cumprod, timesteps)
    x0 = jnp.asarray(x0)
    d = np.prod(x0.shape[1:])
    xs = jnp.repeat(x0, int(num_mc), axis=0)
    cond = {k: jnp.repeat(c, int(num_mc), axis=0) for k, c in cond.items()}

    def gamma(a, k):
        eps = jax.random.normal(k, xs.shape, xs.dtype)
        _, eps_hat = _predict(denoiser, jnp.sqrt(a) * xs + jnp.sqrt(1.0 - a) * eps, a, cond)
        return jnp.mean(jnp.sum(jnp.reshape(eps_hat, (xs.shape[0], -1)) ** 2, axis=1)) / d

    keys = jax.random.split(key, abar.shape[0])
    g = jax.lax.map(lambda s: gamma(*s), (abar.astype(xs.dtype), keys))
    lam2 = _posterior_small(abar, abar_prev)
    gap = (jnp.sqrt((1.0 - abar) * abar_prev / abar) - jnp.sqrt(jnp.maximum(1.0 - abar_prev - lam2, 0.0))) ** 2
    v = lam2 + gap * (1.0 - jnp.clip(g, 0.0, 1.0))
    return (v, g) if return_gamma else v
