"""Deterministic samplers of the probability-flow ODE dx/dσ = (x - D(x; σ))/σ.

The protocol of ``jaxdiff.samplers.base`` (``key`` and ``noise`` are accepted and ignored).
Every loop is a ``lax.scan``, so samplers jit, vmap and shard; the last step, to σ = 0, is
Euler's (a first-order solver's step), taken outside the loop. Eager calls whose result is not
finite (a NaN from the denoiser) raise ``ValueError``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.samplers.base import denoise, derivative, finish, heun_step, register, run_steps, step_levels

HIGHEST = jax.lax.Precision.HIGHEST  # a solver's own weights: float32 on every device (docs/design/precision.md)


@register(nfe=lambda n: n, deterministic=True)
def euler(denoiser, x, sigmas, *, key=None, noise=None, return_trajectory: bool = False, **cond):
    """Euler's method; NFE = N."""
    del key, noise
    x, traj = run_steps(_euler_step(denoiser, cond), x, step_levels(x, sigmas), trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)


def _euler_step(denoiser, cond):
    def step(x, s):
        sigma, sigma_next = s
        return x + (sigma_next - sigma) * derivative(denoiser, x, sigma, cond)

    return step


@register(nfe=lambda n: 2 * n - 1, deterministic=True)
def heun(denoiser, x, sigmas, *, key=None, noise=None, return_trajectory: bool = False, **cond):
    """Heun's 2nd-order method, EDM Algorithm 1 (Euler on the last step to σ=0); NFE = 2N-1."""
    del key, noise

    def step(x, s):
        return heun_step(denoiser, x, *s, cond)

    x, traj = run_steps(step, x, step_levels(x, sigmas), last=_euler_step(denoiser, cond),
                        trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)


@register(nfe=lambda n: 2 * n - 1, deterministic=True)
def dpm_2(denoiser, x, sigmas, *, key=None, noise=None, return_trajectory: bool = False, **cond):
    """DPM-Solver-2 (k-diffusion ``sample_dpm_2``): a midpoint step in log σ; NFE = 2N-1.

    The midpoint is σ_mid = sqrt(σ σ_next); the last step to σ=0 is Euler.
    """
    del key, noise

    def step(x, s):
        sigma, sigma_next = s
        d = derivative(denoiser, x, sigma, cond)
        sigma_mid = jnp.exp(0.5 * (jnp.log(sigma) + jnp.log(sigma_next)))
        x_mid = x + (sigma_mid - sigma) * d
        return x + (sigma_next - sigma) * derivative(denoiser, x_mid, sigma_mid, cond)

    x, traj = run_steps(step, x, step_levels(x, sigmas), last=_euler_step(denoiser, cond),
                        trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)


@register(nfe=lambda n: n, deterministic=True)
def dpmpp_2m(denoiser, x, sigmas, *, key=None, noise=None, return_trajectory: bool = False, **cond):
    """DPM-Solver++(2M), multistep in λ = -log σ; NFE = N.

    First-order (DPM-Solver++(1), i.e. DDIM) on the first step and on the last step to σ=0,
    where it returns the denoised estimate.
    """
    del key, noise
    sig, sig_next = step_levels(x, sigmas)
    sig_prev = jnp.concatenate([sig[:1], sig[:-1]])
    first = jnp.arange(sig.shape[0]) == 0

    def step(carry, s):
        x, old_denoised = carry
        sigma_prev, sigma, sigma_next, is_first = s
        denoised = denoise(denoiser, x, sigma, cond)
        h = jnp.log(sigma) - jnp.log(sigma_next)
        r = (jnp.log(sigma_prev) - jnp.log(sigma)) / h
        c = jnp.where(is_first, 0, 1 / (2 * jnp.where(is_first, 1, r)))
        denoised_d = denoised + c * (denoised - old_denoised)
        return (sigma_next / sigma) * x - jnp.expm1(-h) * denoised_d, denoised

    def last(carry, s):
        return denoise(denoiser, carry[0], s[1], cond), carry[1]

    (x, _), traj = run_steps(step, (x, jnp.zeros_like(x)), (sig_prev, sig, sig_next, first), last=last,
                             trajectory=return_trajectory, state=lambda c: c[0])
    return finish(x, traj, return_trajectory)


def _lms_coeffs(sigmas, order: int):
    """(N, order) Adams–Bashforth weights: ∫_{σ_i}^{σ_{i+1}} ℓ_j(τ) dτ of the Lagrange basis
    through σ_i, ..., σ_{i-m+1}, m = min(i+1, order); zero for j >= m. Gauss–Legendre with
    ``order`` nodes integrates these degree-(m-1) polynomials exactly, under jit too."""
    n = sigmas.shape[0] - 1
    i = jnp.arange(n)[:, None]
    k = jnp.arange(order)[None, :]
    used = k <= i  # (N, order): node k is σ_{i-k}
    nodes = sigmas[jnp.maximum(i - k, 0)]
    xi, wi = np.polynomial.legendre.leggauss(order)
    a, b = sigmas[:-1, None], sigmas[1:, None]
    tau = 0.5 * (a + b) + 0.5 * (b - a) * jnp.asarray(xi, sigmas.dtype)[None, :]  # (N, Q)
    coeffs = []
    for j in range(order):
        basis = jnp.ones_like(tau)
        for kk in range(order):
            if kk == j:
                continue
            ok = used[:, kk : kk + 1]
            den = jnp.where(ok, nodes[:, j : j + 1] - nodes[:, kk : kk + 1], 1)
            basis = basis * jnp.where(ok, (tau - nodes[:, kk : kk + 1]) / den, 1)
        integral = 0.5 * (b[:, 0] - a[:, 0]) * jnp.matmul(basis, jnp.asarray(wi, sigmas.dtype), precision=HIGHEST)
        coeffs.append(jnp.where(used[:, j], integral, 0))
    return jnp.stack(coeffs, axis=1)


@register(nfe=lambda n, order=4: n, deterministic=True)
def lms(denoiser, x, sigmas, *, key=None, noise=None, order: int = 4, return_trajectory: bool = False, **cond):
    """Linear multistep (Adams–Bashforth in σ, k-diffusion ``sample_lms``) of ``order``; NFE = N.

    The order ramps up 1, 2, ... over the first steps; weights come from ``_lms_coeffs``.
    """
    del key, noise
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")
    order = int(order)
    sig, sig_next = step_levels(x, sigmas)
    coeffs = _lms_coeffs(jnp.concatenate([sig, sig_next[-1:]]), order)

    def step(carry, s):
        x, ds = carry  # ds: (order, B, ...), most recent first
        sigma, c = s
        ds = jnp.concatenate([derivative(denoiser, x, sigma, cond)[None], ds[:-1]])
        return x + jnp.tensordot(c, ds, axes=1, precision=HIGHEST), ds

    ds0 = jnp.zeros((order, *x.shape), x.dtype)
    (x, _), traj = run_steps(step, (x, ds0), (sig, coeffs), trajectory=return_trajectory, state=lambda c: c[0])
    return finish(x, traj, return_trajectory)
