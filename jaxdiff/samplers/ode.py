"""Deterministic samplers of the probability-flow ODE dx/dσ = (x - D(x; σ))/σ.

Signature: ``sampler(denoiser, x, sigmas, *, return_trajectory=False, **cond) -> x``
with ``denoiser(x, sigma, **cond) -> x0_hat``; ``x`` (B, ...) starts at noise level
``sigmas[0]``; ``sigmas`` (N+1,) is strictly decreasing and ends with 0. Every loop
is a ``lax.scan``, so samplers jit, vmap and shard. The trajectory, when asked for,
is (N, B, ...): the state after each step. Eager calls whose result is not finite
(a NaN from the denoiser) raise ``ValueError``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._checks import check_denoised, check_finite, check_sigmas


def _denoise(denoiser, x, sigma, cond):
    denoised = denoiser(x, sigma, **cond)
    check_denoised(x, denoised)
    return denoised


def _d(denoiser, x, sigma, cond):
    return (x - _denoise(denoiser, x, sigma, cond)) / sigma


def _finish(x, traj, return_trajectory):
    check_finite(x, "sampler produced non-finite values: the denoiser returned NaN or inf")
    return (x, traj) if return_trajectory else x


def _grid(x, sigmas):
    """Validated ``sigmas`` in ``x.dtype`` and the (sigma, sigma_next) pairs a scan steps over."""
    check_sigmas(sigmas)
    sigmas = jnp.asarray(sigmas, x.dtype)
    return sigmas, (sigmas[:-1], sigmas[1:])


def _heun_step(denoiser, x, sigma, sigma_next, cond):
    """One EDM Heun step from ``sigma`` to ``sigma_next`` (Euler when ``sigma_next`` is 0)."""
    d = _d(denoiser, x, sigma, cond)
    x_euler = x + (sigma_next - sigma) * d

    def correct(_):
        d_next = _d(denoiser, x_euler, sigma_next, cond)
        return x + (sigma_next - sigma) * 0.5 * (d + d_next)

    return jax.lax.cond(sigma_next > 0, correct, lambda _: x_euler, None)


def euler(denoiser, x, sigmas, *, return_trajectory: bool = False, **cond):
    """Euler's method; NFE = N. Trajectory: (N, B, ...) states after each step."""
    _, pairs = _grid(x, sigmas)

    def step(x, s):
        sigma, sigma_next = s
        x = x + (sigma_next - sigma) * _d(denoiser, x, sigma, cond)
        return x, x

    x, traj = jax.lax.scan(step, x, pairs)
    return _finish(x, traj, return_trajectory)


def heun(denoiser, x, sigmas, *, return_trajectory: bool = False, **cond):
    """Heun's 2nd-order method, EDM Algorithm 1 (Euler on the last step to σ=0); NFE = 2N-1."""
    _, pairs = _grid(x, sigmas)

    def step(x, s):
        x = _heun_step(denoiser, x, *s, cond)
        return x, x

    x, traj = jax.lax.scan(step, x, pairs)
    return _finish(x, traj, return_trajectory)


def dpm_2(denoiser, x, sigmas, *, return_trajectory: bool = False, **cond):
    """DPM-Solver-2 (k-diffusion ``sample_dpm_2``): a midpoint step in log σ; NFE = 2N-1.

    The midpoint is σ_mid = sqrt(σ σ_next); the last step to σ=0 is Euler.
    """
    _, pairs = _grid(x, sigmas)

    def step(x, s):
        sigma, sigma_next = s
        d = _d(denoiser, x, sigma, cond)

        def midpoint(_):
            sigma_mid = jnp.exp(0.5 * (jnp.log(sigma) + jnp.log(sigma_next)))
            x_mid = x + (sigma_mid - sigma) * d
            return x + (sigma_next - sigma) * _d(denoiser, x_mid, sigma_mid, cond)

        x = jax.lax.cond(sigma_next > 0, midpoint, lambda _: x + (sigma_next - sigma) * d, None)
        return x, x

    x, traj = jax.lax.scan(step, x, pairs)
    return _finish(x, traj, return_trajectory)


def dpmpp_2m(denoiser, x, sigmas, *, return_trajectory: bool = False, **cond):
    """DPM-Solver++(2M), multistep in λ = -log σ; NFE = N.

    First-order (DPM-Solver++(1), i.e. DDIM) on the first step and on the last step to σ=0,
    where it returns the denoised estimate.
    """
    sigmas, (sig, sig_next) = _grid(x, sigmas)
    sig_prev = jnp.concatenate([sigmas[:1], sigmas[:-2]])
    first = jnp.arange(sig.shape[0]) == 0

    def step(carry, s):
        x, old_denoised = carry
        sigma_prev, sigma, sigma_next, is_first = s
        denoised = _denoise(denoiser, x, sigma, cond)
        last = sigma_next == 0
        h = jnp.log(sigma) - jnp.log(jnp.where(last, 1, sigma_next))
        r = (jnp.log(sigma_prev) - jnp.log(sigma)) / h
        c = jnp.where(is_first | last, 0, 1 / (2 * jnp.where(is_first, 1, r)))
        denoised_d = denoised + c * (denoised - old_denoised)
        x_next = (sigma_next / sigma) * x - jnp.expm1(-h) * denoised_d
        x = jnp.where(last, denoised, x_next)
        return (x, denoised), x

    (x, _), traj = jax.lax.scan(step, (x, jnp.zeros_like(x)), (sig_prev, sig, sig_next, first))
    return _finish(x, traj, return_trajectory)


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
        integral = 0.5 * (b[:, 0] - a[:, 0]) * (basis @ jnp.asarray(wi, sigmas.dtype))
        coeffs.append(jnp.where(used[:, j], integral, 0))
    return jnp.stack(coeffs, axis=1)


def lms(denoiser, x, sigmas, *, order: int = 4, return_trajectory: bool = False, **cond):
    """Linear multistep (Adams–Bashforth in σ, k-diffusion ``sample_lms``) of ``order``; NFE = N.

    The order ramps up 1, 2, ... over the first steps; weights come from ``_lms_coeffs``.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")
    order = int(order)
    sigmas, pairs = _grid(x, sigmas)
    coeffs = _lms_coeffs(sigmas, order)

    def step(carry, s):
        x, ds = carry  # ds: (order, B, ...), most recent first
        sigma, c = s
        ds = jnp.concatenate([_d(denoiser, x, sigma, cond)[None], ds[:-1]])
        x = x + jnp.tensordot(c, ds, axes=1)
        return (x, ds), x

    ds0 = jnp.zeros((order, *x.shape), x.dtype)
    (x, _), traj = jax.lax.scan(step, (x, ds0), (pairs[0], coeffs))
    return _finish(x, traj, return_trajectory)
