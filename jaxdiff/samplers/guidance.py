"""Guidance as denoiser wrappers, and inpainting by replacement (score_sde's imputation).

``cfg_denoiser`` and ``gradient_guidance`` return a new ``denoiser(x, sigma, **cond) ->
x0_hat``, usable by every sampler. ``inpaint`` is a sampler with the house signature plus
``known`` and ``mask``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff._checks import check_denoised, check_sigmas

Array = Any

__all__ = ["cfg_denoiser", "gradient_guidance", "inpaint"]


def _bcast(c, x):
    return jnp.reshape(c, jnp.shape(c) + (1,) * (x.ndim - jnp.ndim(c)))


def cfg_denoiser(denoiser: Callable, scale: float, null_cond: dict) -> Callable:
    """Classifier-free guidance (Ho & Salimans 2022): ``D_u + scale (D_c - D_u)``.

    ``null_cond`` maps every conditioning name to its unconditional value, broadcast to
    the shape of the conditional one (e.g. a null label ``()`` against labels ``(B,)``).
    The guided denoiser makes one call of batch ``2B`` (conditional rows first); ``sigma``
    may be a scalar or ``(B,)``. ``scale=0`` is unconditional, ``scale=1`` conditional.
    """

    def guided(x, sigma, **cond):
        if set(cond) != set(null_cond):
            raise ValueError(f"null_cond must have the keys of cond {sorted(cond)}, got {sorted(null_cond)}")
        b = x.shape[0]
        both = {k: jnp.concatenate([c, jnp.broadcast_to(jnp.asarray(null_cond[k], c.dtype), c.shape)])
                for k, c in ((k, jnp.asarray(c)) for k, c in cond.items())}
        sigma = jnp.asarray(sigma)
        sigma2 = sigma if sigma.ndim == 0 else jnp.concatenate([sigma, sigma])
        out = denoiser(jnp.concatenate([x, x]), sigma2, **both)
        check_denoised(jnp.concatenate([x, x]), out)
        d_c, d_u = out[:b], out[b:]
        return d_u + scale * (d_c - d_u)

    return guided


def gradient_guidance(denoiser: Callable, log_prob_fn: Callable, scale: float = 1.0) -> Callable:
    """Classifier / predictor guidance: ``D(x; sigma) + scale sigma^2 grad_x log p(c | x, sigma)``.

    ``log_prob_fn(x, sigma, **cond) -> (B,)`` is any differentiable log-likelihood of the
    target given the noisy, unscaled ``x`` (B, ...) (a noise-conditional classifier, a
    property predictor); both functions receive ``**cond`` (close over targets the
    denoiser does not take). Since ``D = x + sigma^2 score``, ``scale=1`` gives the exact
    denoiser of the posterior ``p(y | c)``.
    """

    def guided(x, sigma, **cond):
        denoised = denoiser(x, sigma, **cond)
        check_denoised(x, denoised)
        grad = jax.grad(lambda x: jnp.sum(log_prob_fn(x, sigma, **cond)))(x)
        return denoised + scale * _bcast(jnp.asarray(sigma) ** 2, x) * grad

    return guided


def _check_like(name, a, x) -> Array:
    a = jnp.asarray(a)
    try:
        ok = jnp.broadcast_shapes(a.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must broadcast to x's shape {x.shape}, got {a.shape}")
    return a


def inpaint(denoiser: Callable, x: Array, sigmas: Array, known: Array, mask: Array, *, key: Array,
            n_resample: int = 0, **cond) -> Array:
    """Imputation by replacement (score_sde's controllable generation), optionally harmonised
    by RePaint resampling (Lugmayr et al. 2022).

    ``x`` (B, ...) at ``sigmas[0]``; ``known`` and ``mask`` broadcast to ``x`` (``mask``
    true/1 where ``known`` is observed). Each step ``sigma -> sigma'`` is an ancestral
    (DDPM-like, ``eta = 1``) step of the whole ``x``, after which the known region is
    replaced by ``known + sigma' z``; ``n_resample`` times per step the result is
    re-noised to ``sigma`` and the step repeated. Returns (B, ...), equal to ``known``
    on the mask. Replacement is exact when the known and unknown parts are independent;
    for correlated data it biases the unknown part toward the unconditional mean, which
    resampling reduces (see tests).
    """
    check_sigmas(sigmas)
    if key is None:
        raise ValueError("key is required")
    if int(n_resample) < 0:
        raise ValueError(f"n_resample must be >= 0, got {n_resample!r}")
    known = _check_like("known", known, x).astype(x.dtype)
    mask = _check_like("mask", mask, x).astype(bool)
    sigmas = jnp.asarray(sigmas, x.dtype)

    def replace(x, sigma, k):
        return jnp.where(mask, known + sigma * jax.random.normal(k, x.shape, x.dtype), x)

    def ancestral(x, sigma, sigma_next, k):
        denoised = denoiser(x, sigma, **cond)
        check_denoised(x, denoised)
        sigma_up = jnp.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
        sigma_down = jnp.sqrt(sigma_next**2 - sigma_up**2)
        k1, k2 = jax.random.split(k)
        x = denoised + sigma_down / sigma * (x - denoised) + sigma_up * jax.random.normal(k1, x.shape, x.dtype)
        return replace(x, sigma_next, k2)

    def step(x, s):
        sigma, sigma_next, k = s
        k_step, k_res = jax.random.split(k)

        def harmonise(i, x):
            kn, ks = jax.random.split(jax.random.fold_in(k_res, i))
            x = x + jnp.sqrt(sigma**2 - sigma_next**2) * jax.random.normal(kn, x.shape, x.dtype)
            return ancestral(x, sigma, sigma_next, ks)

        x = ancestral(x, sigma, sigma_next, k_step)
        return jax.lax.fori_loop(0, int(n_resample), harmonise, x), None

    k0, key = jax.random.split(key)
    x = replace(x, sigmas[0], k0)
    keys = jax.random.split(key, sigmas.shape[0] - 1)
    x, _ = jax.lax.scan(step, x, (sigmas[:-1], sigmas[1:], keys))
    return x
