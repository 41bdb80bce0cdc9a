"""Deterministic samplers of the probability-flow ODE dx/dσ = (x - D(x; σ))/σ.

Signature: ``sampler(denoiser, x, sigmas, *, return_trajectory=False, **cond) -> x``
with ``denoiser(x, sigma, **cond) -> x0_hat``; ``x`` (B, ...) starts at noise level
``sigmas[0]``; ``sigmas`` (N+1,) is strictly decreasing and ends with 0. Every loop
is a ``lax.scan``, so samplers jit, vmap and shard.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.samplers._checks import check_denoised, check_sigmas


def _d(denoiser, x, sigma, cond):
    denoised = denoiser(x, sigma, **cond)
    check_denoised(x, denoised)
    return (x - denoised) / sigma


def _finish(x, traj, return_trajectory):
    return (x, traj) if return_trajectory else x


def euler(denoiser, x, sigmas, *, return_trajectory: bool = False, **cond):
    """Euler's method; NFE = N. Trajectory: (N, B, ...) states after each step."""
    check_sigmas(sigmas)
    sigmas = jnp.asarray(sigmas, x.dtype)

    def step(x, s):
        sigma, sigma_next = s
        x = x + (sigma_next - sigma) * _d(denoiser, x, sigma, cond)
        return x, x

    x, traj = jax.lax.scan(step, x, (sigmas[:-1], sigmas[1:]))
    return _finish(x, traj, return_trajectory)


def heun(denoiser, x, sigmas, *, return_trajectory: bool = False, **cond):
    """Heun's 2nd-order method, EDM Algorithm 1 (Euler on the last step to σ=0); NFE = 2N-1."""
    check_sigmas(sigmas)
    sigmas = jnp.asarray(sigmas, x.dtype)

    def step(x, s):
        sigma, sigma_next = s
        d = _d(denoiser, x, sigma, cond)
        x_euler = x + (sigma_next - sigma) * d

        def correct(_):
            d_next = _d(denoiser, x_euler, sigma_next, cond)
            return x + (sigma_next - sigma) * 0.5 * (d + d_next)

        x = jax.lax.cond(sigma_next > 0, correct, lambda _: x_euler, None)
        return x, x

    x, traj = jax.lax.scan(step, x, (sigmas[:-1], sigmas[1:]))
    return _finish(x, traj, return_trajectory)
