"""Guidance as denoiser wrappers, and inpainting by replacement (score_sde's imputation).

``cfg_denoiser`` and ``gradient_guidance`` return a new ``denoiser(x, sigma, **cond) ->
x0_hat``, usable by every sampler. ``inpaint`` is a sampler with the house signature plus
``known`` and ``mask``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff._arrays import bcast
from jaxdiff._checks import check_denoised
from jaxdiff.samplers.base import ancestral_step, denoise, finish, noise_source, run_steps, step_levels

Array = Any

__all__ = ["cfg_denoiser", "gradient_guidance", "inpaint"]


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
        return denoised + scale * bcast(jnp.asarray(sigma) ** 2, x) * grad

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


def inpaint(denoiser: Callable, x: Array, sigmas: Array, *, known: Array, mask: Array, key: Array | None = None,
            noise=None, n_resample: int = 0, return_trajectory: bool = False, **cond):
    """Imputation by replacement (score_sde's controllable generation), optionally harmonised
    by RePaint resampling (Lugmayr et al. 2022).

    The protocol of ``jaxdiff.samplers.base`` plus ``known`` and ``mask``, which broadcast to
    ``x`` (``mask`` true/1 where ``known`` is observed). Each step ``sigma -> sigma'`` is an
    ancestral (DDPM-like, ``eta = 1``) step of the whole ``x``, after which the known region is
    replaced by ``known + sigma' z``; ``n_resample`` times per step the result is re-noised to
    ``sigma`` and the step repeated. Returns (B, ...), equal to ``known`` on the mask.
    Replacement is exact when the known and unknown parts are independent; for correlated data
    it biases the unknown part toward the unconditional mean, which resampling reduces.
    """
    noise = noise_source(key, noise)
    if int(n_resample) < 0:
        raise ValueError(f"n_resample must be >= 0, got {n_resample!r}")
    known = _check_like("known", known, x).astype(x.dtype)
    mask = _check_like("mask", mask, x).astype(bool)
    sig, sig_next = step_levels(x, sigmas)
    draws = 2 + 3 * int(n_resample)  # noise-source calls per step; call 0 of the run seeds x

    def draw(counter, sigma, sigma_next):
        return noise(key, counter, sigma, sigma_next, x.shape, x.dtype)

    def ancestral(x, sigma, sigma_next, counter):
        denoised = denoise(denoiser, x, sigma, cond)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next)
        x = denoised + sigma_down / sigma * (x - denoised) + sigma_up * draw(counter, sigma, sigma_next)
        return jnp.where(mask, known + sigma_next * draw(counter + 1, sigma, sigma_next), x)

    def step(x, s):
        i, sigma, sigma_next = s
        base = 1 + i * draws

        def harmonise(r, x):
            c = base + 2 + 3 * r
            x = x + jnp.sqrt(sigma**2 - sigma_next**2) * draw(c, sigma_next, sigma)
            return ancestral(x, sigma, sigma_next, c + 1)

        x = ancestral(x, sigma, sigma_next, base)
        return jax.lax.fori_loop(0, int(n_resample), harmonise, x)

    x = jnp.where(mask, known + sig[0] * draw(0, sig[0], sig[0]), x)
    x, traj = run_steps(step, x, (jnp.arange(sig.shape[0]), sig, sig_next), trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)
