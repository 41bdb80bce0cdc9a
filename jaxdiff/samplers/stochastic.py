"""Stochastic samplers over the denoiser seam (k-diffusion's ancestral and SDE family).

Signature: ``sampler(denoiser, x, sigmas, *, key=None, noise=None, return_trajectory=False,
**options, **cond) -> x``; ``x`` (B, ...) at level ``sigmas[0]``, ``sigmas`` (N+1,)
strictly decreasing and ending with 0, trajectory (N, B, ...). Noise comes from
``noise(key, step, sigma, sigma_next, shape, dtype)`` (see ``jaxdiff.samplers.noise``),
by default i.i.d. ``gaussian`` (a Brownian tree for ``dpmpp_sde``, whose two draws per
step overlap in σ); ``key`` is required unless the noise source ignores it. ``eta``
scales the injected noise (0 gives the ODE sampler), ``s_noise`` multiplies it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxdiff._checks import _concrete
from jaxdiff.samplers.noise import BrownianTreeNoise, gaussian
from jaxdiff.samplers.ode import _d, _denoise, _finish, _grid, _heun_step

__all__ = ["edm", "euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"]


def _nonneg(name, value) -> None:
    v = _concrete(value)
    if v is not None and not (v >= 0).all():
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _source(key, noise, default=gaussian):
    if noise is None:
        if key is None:
            raise ValueError("key is required for a stochastic sampler (pass key=jax.random.key(seed))")
        return default
    return noise


def ancestral_step(sigma, sigma_next, eta=1.0):
    """(sigma_down, sigma_up): deterministic target level and noise std of an ancestral step,
    with sigma_down² + sigma_up² = sigma_next² and sigma_up = min(sigma_next, eta·σ_DDPM)."""
    sigma_up = jnp.minimum(sigma_next, eta * jnp.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return jnp.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def edm(
    denoiser,
    x,
    sigmas,
    *,
    key=None,
    noise=None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    return_trajectory: bool = False,
    **cond,
):
    """EDM Algorithm 2: churn σ up to σ̂ = σ(1+γ), γ = min(s_churn/N, √2-1) on s_tmin ≤ σ ≤ s_tmax,
    adding N(0, s_noise²(σ̂²-σ²)) (noise step i, levels (σ̂, σ)), then a Heun step to σ_next.
    With ``s_churn=0`` it equals ``heun``. NFE = 2N-1."""
    _nonneg("s_churn", s_churn)
    _nonneg("s_noise", s_noise)
    noise = _source(key, noise)
    sigmas, (sig, sig_next) = _grid(x, sigmas)
    n = sig.shape[0]

    def step(x, s):
        i, sigma, sigma_next = s
        gamma = jnp.where((s_tmin <= sigma) & (sigma <= s_tmax), jnp.minimum(s_churn / n, math.sqrt(2) - 1), 0)
        sigma_hat = (sigma * (gamma + 1)).astype(x.dtype)
        eps = noise(key, i, sigma_hat, sigma, x.shape, x.dtype) * s_noise
        x = x + eps * (sigma * jnp.sqrt(gamma * (gamma + 2)))  # sqrt(σ̂² - σ²), exactly 0 when γ = 0
        x = _heun_step(denoiser, x, sigma_hat, sigma_next, cond)
        return x, x

    x, traj = jax.lax.scan(step, x, (jnp.arange(n), sig, sig_next))
    return _finish(x, traj, return_trajectory)


def euler_ancestral(
    denoiser,
    x,
    sigmas,
    *,
    key=None,
    noise=None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    return_trajectory: bool = False,
    **cond,
):
    """Ancestral sampling with Euler steps to σ_down plus σ_up noise (none on the last step); NFE = N."""
    _nonneg("eta", eta)
    _nonneg("s_noise", s_noise)
    noise = _source(key, noise)
    sigmas, (sig, sig_next) = _grid(x, sigmas)

    def step(x, s):
        i, sigma, sigma_next = s
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = x + (sigma_down - sigma) * _d(denoiser, x, sigma, cond)
        z = noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        x = x + jnp.where(sigma_next > 0, s_noise * sigma_up, 0) * z
        return x, x

    x, traj = jax.lax.scan(step, x, (jnp.arange(sig.shape[0]), sig, sig_next))
    return _finish(x, traj, return_trajectory)


def dpmpp_2s_ancestral(
    denoiser,
    x,
    sigmas,
    *,
    key=None,
    noise=None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    return_trajectory: bool = False,
    **cond,
):
    """Ancestral DPM-Solver++(2S): a single-step 2nd-order move to σ_down with its midpoint
    at half the step in λ = -log σ, then σ_up noise; Euler when σ_down = 0. NFE ≤ 2N-1."""
    _nonneg("eta", eta)
    _nonneg("s_noise", s_noise)
    noise = _source(key, noise)
    sigmas, (sig, sig_next) = _grid(x, sigmas)

    def step(x, s):
        i, sigma, sigma_next = s
        denoised = _denoise(denoiser, x, sigma, cond)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)

        def second_order(_):
            h = jnp.log(sigma) - jnp.log(sigma_down)
            sigma_mid = jnp.exp(-(-jnp.log(sigma) + 0.5 * h))
            x_2 = (sigma_mid / sigma) * x - jnp.expm1(-0.5 * h) * denoised
            denoised_2 = _denoise(denoiser, x_2, sigma_mid, cond)
            return (sigma_down / sigma) * x - jnp.expm1(-h) * denoised_2

        def euler_step(_):
            return x + (sigma_down - sigma) * (x - denoised) / sigma

        x = jax.lax.cond(sigma_down > 0, second_order, euler_step, None)
        z = noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        x = x + jnp.where(sigma_next > 0, s_noise * sigma_up, 0) * z
        return x, x

    x, traj = jax.lax.scan(step, x, (jnp.arange(sig.shape[0]), sig, sig_next))
    return _finish(x, traj, return_trajectory)


def dpmpp_sde(
    denoiser,
    x,
    sigmas,
    *,
    key=None,
    noise=None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r: float = 0.5,
    return_trajectory: bool = False,
    **cond,
):
    """Stochastic DPM-Solver++ (k-diffusion ``sample_dpmpp_sde``): two ancestral stages per step,
    the first to λ + r·h; noise steps 2i and 2i+1. The default noise is a ``BrownianTreeNoise``
    over [sigmas[-2], sigmas[0]]. Euler on the last step; NFE = 2N-1."""
    _nonneg("eta", eta)
    _nonneg("s_noise", s_noise)
    rv = _concrete(r)
    if rv is not None and not rv > 0:
        raise ValueError(f"r must be > 0, got {r!r}")
    sigmas, (sig, sig_next) = _grid(x, sigmas)
    noise = _source(key, noise, BrownianTreeNoise(sigmas[-2], sigmas[0]))

    def step(x, s):
        i, sigma, sigma_next = s
        denoised = _denoise(denoiser, x, sigma, cond)

        def sde_step(_):
            t = -jnp.log(sigma)
            h = -jnp.log(sigma_next) - t
            sigma_s = jnp.exp(-(t + h * r))
            fac = 1 / (2 * r)
            sd, su = ancestral_step(sigma, sigma_s, eta)
            x_2 = (sd / sigma) * x - jnp.expm1(t + jnp.log(sd)) * denoised
            x_2 = x_2 + noise(key, 2 * i, sigma, sigma_s, x.shape, x.dtype) * s_noise * su
            denoised_2 = _denoise(denoiser, x_2, sigma_s, cond)
            sd, su = ancestral_step(sigma, sigma_next, eta)
            denoised_d = (1 - fac) * denoised + fac * denoised_2
            x_n = (sd / sigma) * x - jnp.expm1(t + jnp.log(sd)) * denoised_d
            return x_n + noise(key, 2 * i + 1, sigma, sigma_next, x.shape, x.dtype) * s_noise * su

        def euler_step(_):
            return x + (sigma_next - sigma) * (x - denoised) / sigma

        x = jax.lax.cond(sigma_next > 0, sde_step, euler_step, None)
        return x, x

    x, traj = jax.lax.scan(step, x, (jnp.arange(sig.shape[0]), sig, sig_next))
    return _finish(x, traj, return_trajectory)


def _noise_fraction(a):
    """``sqrt(1 - e^{-a})`` for ``a >= 0``, with a zero (not NaN) gradient at ``a = 0`` (eta = 0)."""
    pos = a > 0
    return jnp.where(pos, jnp.sqrt(-jnp.expm1(-jnp.where(pos, a, 1))), 0)


def dpmpp_2m_sde(
    denoiser,
    x,
    sigmas,
    *,
    key=None,
    noise=None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
    return_trajectory: bool = False,
    **cond,
):
    """DPM-Solver++(2M) SDE with a ``"midpoint"`` or ``"heun"`` 2nd-order correction (first-order
    on the first step); the last step to σ=0 returns the denoised estimate. NFE = N."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    _nonneg("eta", eta)
    _nonneg("s_noise", s_noise)
    noise = _source(key, noise)
    sigmas, (sig, sig_next) = _grid(x, sigmas)

    def step(carry, s):
        x, old_denoised, h_last = carry
        i, sigma, sigma_next = s
        denoised = _denoise(denoiser, x, sigma, cond)
        last = sigma_next == 0
        h = jnp.where(last, 1, jnp.log(sigma) - jnp.log(jnp.where(last, 1, sigma_next)))
        eta_h = eta * h
        phi_1 = -jnp.expm1(-h - eta_h)
        x_n = sigma_next / sigma * jnp.exp(-eta_h) * x + phi_1 * denoised
        if solver_type == "heun":
            c = phi_1 / (-h - eta_h) + 1
        else:
            c = 0.5 * phi_1
        x_n = x_n + jnp.where(i > 0, c * h / h_last, 0) * (denoised - old_denoised)
        z = noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        x_n = x_n + z * sigma_next * _noise_fraction(2 * eta_h) * s_noise
        x = jnp.where(last, denoised, x_n)
        return (x, denoised, h), x

    init = (x, jnp.zeros_like(x), jnp.ones((), x.dtype))
    (x, _, _), traj = jax.lax.scan(step, init, (jnp.arange(sig.shape[0]), sig, sig_next))
    return _finish(x, traj, return_trajectory)


def dpmpp_3m_sde(
    denoiser,
    x,
    sigmas,
    *,
    key=None,
    noise=None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    return_trajectory: bool = False,
    **cond,
):
    """DPM-Solver++(3M) SDE: 3rd-order multistep from the last three denoised estimates
    (1st, 2nd order on the first two steps); the last step to σ=0 returns the denoised estimate. NFE = N."""
    _nonneg("eta", eta)
    _nonneg("s_noise", s_noise)
    noise = _source(key, noise)
    sigmas, (sig, sig_next) = _grid(x, sigmas)

    def step(carry, s):
        x, den_1, den_2, h_1, h_2 = carry
        i, sigma, sigma_next = s
        denoised = _denoise(denoiser, x, sigma, cond)
        last = sigma_next == 0
        h = jnp.where(last, 1, jnp.log(sigma) - jnp.log(jnp.where(last, 1, sigma_next)))
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
        x = jnp.where(last, denoised, x_n)
        return (x, denoised, den_1, h, h_1), x

    one = jnp.ones((), x.dtype)
    init = (x, jnp.zeros_like(x), jnp.zeros_like(x), one, one)
    (x, *_), traj = jax.lax.scan(step, init, (jnp.arange(sig.shape[0]), sig, sig_next))
    return _finish(x, traj, return_trajectory)
