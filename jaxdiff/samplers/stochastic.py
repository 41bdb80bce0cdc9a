"""Stochastic samplers over the denoiser seam (k-diffusion's ancestral and SDE family).

The protocol of ``jaxdiff.samplers.base``. Noise comes from the noise source ``noise``
(``jaxdiff.samplers.noise``), by default i.i.d. ``gaussian`` (a Brownian tree for ``dpmpp_sde``,
whose two draws per step overlap in σ); ``key`` is required unless the noise source ignores it.
``eta`` scales the injected noise (0 gives the ODE sampler), ``s_noise`` multiplies it. Steps
to σ = 0 that drop a correction are taken outside the loop.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from jaxdiff._arrays import concrete
from jaxdiff.samplers.base import (
    ancestral_step, check_nonneg, denoise, derivative, finish, heun_step, noise_source, register, run_steps,
    step_levels,
)
from jaxdiff.samplers.noise import BrownianTreeNoise

__all__ = ["edm", "euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"]


def _steps(x, sigmas):
    """Per-step ``(i, sigma, sigma_next)`` over a validated grid."""
    sig, sig_next = step_levels(x, sigmas)
    return jnp.arange(sig.shape[0]), sig, sig_next


@register(nfe=lambda n, **_: 2 * n - 1, deterministic=False)
def edm(denoiser, x, sigmas, *, key=None, noise=None, s_churn: float = 0.0, s_tmin: float = 0.0,
        s_tmax: float = math.inf, s_noise: float = 1.0, return_trajectory: bool = False, **cond):
    """EDM Algorithm 2: churn σ up to σ̂ = σ(1+γ), γ = min(s_churn/N, √2-1) on s_tmin ≤ σ ≤ s_tmax,
    adding N(0, s_noise²(σ̂²-σ²)) (noise step i, levels (σ̂, σ)), then a Heun step to σ_next
    (Euler on the last step to 0). With ``s_churn=0`` it equals ``heun``. NFE = 2N-1."""
    check_nonneg("s_churn", s_churn)
    check_nonneg("s_noise", s_noise)
    noise = noise_source(key, noise)
    steps = _steps(x, sigmas)
    n = steps[0].shape[0]

    def churn(x, i, sigma):
        gamma = jnp.where((s_tmin <= sigma) & (sigma <= s_tmax), jnp.minimum(s_churn / n, math.sqrt(2) - 1), 0)
        sigma_hat = (sigma * (gamma + 1)).astype(x.dtype)
        eps = noise(key, i, sigma_hat, sigma, x.shape, x.dtype) * s_noise
        return x + eps * (sigma * jnp.sqrt(gamma * (gamma + 2))), sigma_hat  # sqrt(σ̂² - σ²), 0 when γ = 0

    def step(x, s):
        i, sigma, sigma_next = s
        x, sigma_hat = churn(x, i, sigma)
        return heun_step(denoiser, x, sigma_hat, sigma_next, cond)

    def last(x, s):
        i, sigma, sigma_next = s
        x, sigma_hat = churn(x, i, sigma)
        return x + (sigma_next - sigma_hat) * derivative(denoiser, x, sigma_hat, cond)

    x, traj = run_steps(step, x, steps, last=last, trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)


@register(nfe=lambda n, **_: n, deterministic=False)
def euler_ancestral(denoiser, x, sigmas, *, key=None, noise=None, eta: float = 1.0, s_noise: float = 1.0,
                    return_trajectory: bool = False, **cond):
    """Ancestral sampling with Euler steps to σ_down plus σ_up noise (none on the last step); NFE = N."""
    check_nonneg("eta", eta)
    check_nonneg("s_noise", s_noise)
    noise = noise_source(key, noise)

    def step(x, s):
        i, sigma, sigma_next = s
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = x + (sigma_down - sigma) * derivative(denoiser, x, sigma, cond)
        z = noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        return x + jnp.where(sigma_next > 0, s_noise * sigma_up, 0) * z

    x, traj = run_steps(step, x, _steps(x, sigmas), trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)


def _to_zero(denoiser, cond):
    """The last step of a solver that ends with Euler to σ = 0: ``x = D(x; σ)``, in Euler's form."""

    def last(x, s):
        _, sigma, sigma_next = s
        return x + (sigma_next - sigma) * derivative(denoiser, x, sigma, cond)

    return last


@register(nfe=lambda n, **_: 2 * n - 1, deterministic=False)
def dpmpp_2s_ancestral(denoiser, x, sigmas, *, key=None, noise=None, eta: float = 1.0, s_noise: float = 1.0,
                       return_trajectory: bool = False, **cond):
    """Ancestral DPM-Solver++(2S): a single-step 2nd-order move to σ_down with its midpoint
    at half the step in λ = -log σ, then σ_up noise; Euler on the last step (to 0), and where
    σ_down = 0 (eta > 1), the move is to ``D(x; σ)``. NFE = 2N-1."""
    check_nonneg("eta", eta)
    check_nonneg("s_noise", s_noise)
    noise = noise_source(key, noise)

    def step(x, s):
        i, sigma, sigma_next = s
        denoised = denoise(denoiser, x, sigma, cond)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        down = sigma_down > 0
        target = jnp.where(down, sigma_down, 0.5 * sigma)  # a finite stand-in where σ_down = 0
        h = jnp.log(sigma) - jnp.log(target)
        sigma_mid = jnp.exp(-(-jnp.log(sigma) + 0.5 * h))
        x_2 = (sigma_mid / sigma) * x - jnp.expm1(-0.5 * h) * denoised
        denoised_2 = denoise(denoiser, x_2, sigma_mid, cond)
        x = jnp.where(down, (target / sigma) * x - jnp.expm1(-h) * denoised_2, denoised)
        z = noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        return x + s_noise * sigma_up * z

    x, traj = run_steps(step, x, _steps(x, sigmas), last=_to_zero(denoiser, cond), trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)


@register(nfe=lambda n, **_: 2 * n - 1, deterministic=False)
def dpmpp_sde(denoiser, x, sigmas, *, key=None, noise=None, eta: float = 1.0, s_noise: float = 1.0,
              r: float = 0.5, return_trajectory: bool = False, **cond):
    """Stochastic DPM-Solver++ (k-diffusion ``sample_dpmpp_sde``): two ancestral stages per step,
    the first to λ + r·h; noise steps 2i and 2i+1. The default noise is a ``BrownianTreeNoise``
    over [sigmas[-2], sigmas[0]]. Euler on the last step; NFE = 2N-1."""
    check_nonneg("eta", eta)
    check_nonneg("s_noise", s_noise)
    rv = concrete(r)
    if rv is not None and not rv > 0:
        raise ValueError(f"r must be > 0, got {r!r}")
    steps = _steps(x, sigmas)
    noise = noise_source(key, noise, BrownianTreeNoise(steps[1][-1], steps[1][0]))

    def step(x, s):
        i, sigma, sigma_next = s
        denoised = denoise(denoiser, x, sigma, cond)
        t = -jnp.log(sigma)
        h = -jnp.log(sigma_next) - t
        sigma_s = jnp.exp(-(t + h * r))
        fac = 1 / (2 * r)
        sd, su = ancestral_step(sigma, sigma_s, eta)
        x_2 = (sd / sigma) * x - jnp.expm1(t + jnp.log(sd)) * denoised
        x_2 = x_2 + noise(key, 2 * i, sigma, sigma_s, x.shape, x.dtype) * s_noise * su
        denoised_2 = denoise(denoiser, x_2, sigma_s, cond)
        sd, su = ancestral_step(sigma, sigma_next, eta)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x_n = (sd / sigma) * x - jnp.expm1(t + jnp.log(sd)) * denoised_d
        return x_n + noise(key, 2 * i + 1, sigma, sigma_next, x.shape, x.dtype) * s_noise * su

    x, traj = run_steps(step, x, steps, last=_to_zero(denoiser, cond), trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)


def _noise_fraction(a):
    """``sqrt(1 - e^{-a})`` for ``a >= 0``, with a zero (not NaN) gradient at ``a = 0`` (eta = 0)."""
    pos = a > 0
    return jnp.where(pos, jnp.sqrt(-jnp.expm1(-jnp.where(pos, a, 1))), 0)


@register(nfe=lambda n, **_: n, deterministic=False)
def dpmpp_2m_sde(denoiser, x, sigmas, *, key=None, noise=None, eta: float = 1.0, s_noise: float = 1.0,
                 solver_type: str = "midpoint", return_trajectory: bool = False, **cond):
    """DPM-Solver++(2M) SDE with a ``"midpoint"`` or ``"heun"`` 2nd-order correction (first-order
    on the first step); the last step to σ=0 returns the denoised estimate. NFE = N."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    check_nonneg("eta", eta)
    check_nonneg("s_noise", s_noise)
    noise = noise_source(key, noise)

    def step(carry, s):
        x, old_denoised, h_last = carry
        i, sigma, sigma_next = s
        denoised = denoise(denoiser, x, sigma, cond)
        h = jnp.log(sigma) - jnp.log(sigma_next)
        eta_h = eta * h
        phi_1 = -jnp.expm1(-h - eta_h)
        x_n = sigma_next / sigma * jnp.exp(-eta_h) * x + phi_1 * denoised
        c = phi_1 / (-h - eta_h) + 1 if solver_type == "heun" else 0.5 * phi_1
        x_n = x_n + jnp.where(i > 0, c * h / h_last, 0) * (denoised - old_denoised)
        z = noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        return x_n + z * sigma_next * _noise_fraction(2 * eta_h) * s_noise, denoised, h

    def last(carry, s):
        return denoise(denoiser, carry[0], s[1], cond), *carry[1:]

    init = (x, jnp.zeros_like(x), jnp.ones((), x.dtype))
    (x, *_), traj = run_steps(step, init, _steps(x, sigmas), last=last, trajectory=return_trajectory,
                              state=lambda c: c[0])
    return finish(x, traj, return_trajectory)


@register(nfe=lambda n, **_: n, deterministic=False)
def dpmpp_3m_sde(denoiser, x, sigmas, *, key=None, noise=None, eta: float = 1.0, s_noise: float = 1.0,
                 return_trajectory: bool = False, **cond):
    """DPM-Solver++(3M) SDE: 3rd-order multistep from the last three denoised estimates
    (1st, 2nd order on the first two steps); the last step to σ=0 returns the denoised estimate. NFE = N."""
    check_nonneg("eta", eta)
    check_nonneg("s_noise", s_noise)
    noise = noise_source(key, noise)

    def step(carry, s):
        x, den_1, den_2, h_1, h_2 = carry
        i, sigma, sigma_next = s
        denoised = denoise(denoiser, x, sigma, cond)
        h = jnp.log(sigma) - jnp.log(sigma_next)
        h_eta = h * (eta + 1)
        x_n = jnp.exp(-h_eta) * x - jnp.expm1(-h_eta) * denoised
        phi_2 = jnp.expm1(-h_eta) / h_eta + 1
        phi_3 = phi_2 / h_eta - 0.5
        # 2nd order (i == 1)
        d = (denoised - den_1) * (h / h_1)
        second = phi_2 * d
        # 3rd order (i >= 2)
        r0, r1 = h_1 / h, h_2 / h
        d1_0 = (denoised - den_1) / r0
        d1_1 = (den_1 - den_2) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        third = phi_2 * d1 - phi_3 * d2
        x_n = x_n + jnp.where(i >= 2, third, jnp.where(i == 1, second, 0))
        z = noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        x_n = x_n + z * sigma_next * _noise_fraction(2 * h * eta) * s_noise
        return x_n, denoised, den_1, h, h_1

    def last(carry, s):
        return denoise(denoiser, carry[0], s[1], cond), *carry[1:]

    one = jnp.ones((), x.dtype)
    init = (x, jnp.zeros_like(x), jnp.zeros_like(x), one, one)
    (x, *_), traj = run_steps(step, init, _steps(x, sigmas), last=last, trajectory=return_trajectory,
                              state=lambda c: c[0])
    return finish(x, traj, return_trajectory)
