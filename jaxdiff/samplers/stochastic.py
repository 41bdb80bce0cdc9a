"""Stochastic samplers over the denoiser seam (k-diffusion's ancestral and SDE family).

The protocol of ``jaxdiff.samplers.base``. Noise comes from the noise source ``noise``
(``jaxdiff.samplers.noise``), by default i.i.d. ``gaussian`` (a Brownian tree for ``dpmpp_sde``,
whose two draws per step overlap in σ); ``key`` is required unless the noise source ignores it.
``eta`` scales the injected noise (0 gives the ODE sampler), ``s_noise`` multiplies it. Steps
to σ = 0 that drop a correction are taken outside the loop.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import concrete
from jaxdiff._checks import check_sigmas
from jaxdiff.samplers.base import (
    ancestral_step, check_nonneg, denoise, derivative, finish, heun_step, noise_source, register, run_steps,
    step_levels,
)
from jaxdiff.samplers.noise import BrownianTreeNoise

__all__ = ["edm", "euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "restart"]


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


@register(nfe=lambda n, restarts=2, restart_steps=2, **_: 2 * n - 1 + 2 * restarts * restart_steps,
          deterministic=False)
def restart(denoiser, x, sigmas, *, key=None, noise=None, t_min: float = 0.06, t_max: float = 0.3, restarts: int = 2,
            restart_steps: int = 2, s_noise: float = 1.0, return_trajectory: bool = False, **cond):
    """Restart sampling (Xu et al., 2023): Heun steps on ``sigmas`` (Euler on the last, to 0); on
    reaching the level σ_j nearest ``t_min``, ``restarts`` times: add N(0, s_noise² (t_max² - σ_j²))
    noise (noise step k, levels (t_max, σ_j)), which takes the marginal at σ_j to the one at
    ``t_max``, then go back down with ``restart_steps`` Heun steps on a Karras grid (rho 7) from
    ``t_max`` to σ_j. ``sigmas`` must be concrete (not traced); use the default Gaussian noise (a
    Brownian tree gives every restart of one interval the same draw). The trajectory holds the
    state after each step of ``sigmas``, restarts folded into the step reaching σ_j.
    NFE = 2N - 1 + 2 · restarts · restart_steps."""
    check_sigmas(sigmas)
    check_nonneg("s_noise", s_noise)
    for name, v in (("restarts", restarts), ("restart_steps", restart_steps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    lo, hi = concrete(t_min), concrete(t_max)
    if lo is None or hi is None or lo.ndim or hi.ndim or not (np.isfinite(lo) and lo > 0 and np.isfinite(hi)):
        raise ValueError(f"t_min and t_max must be finite floats with t_min > 0, got {t_min!r} and {t_max!r}")
    j, level = _restart_level(sigmas, float(lo))
    if not float(hi) > level:
        raise ValueError(f"t_max must exceed the restart level σ_{j} = {level:.4g} (the grid level nearest "
                         f"t_min = {t_min}), got {t_max}")
    noise = noise_source(key, noise)
    sig, sig_next = step_levels(x, sigmas)
    rho, top = 7.0, float(hi)
    ramp = jnp.linspace(0.0, 1.0, restart_steps + 1, dtype=x.dtype)
    inner = (top ** (1 / rho) + ramp * (level ** (1 / rho) - top ** (1 / rho))) ** rho
    inner = inner.at[0].set(top).at[-1].set(level)  # (restart_steps + 1,) from t_max down to σ_j

    def heun(x, s):
        return heun_step(denoiser, x, *s, cond)

    def euler(x, s):
        return x + (s[1] - s[0]) * derivative(denoiser, x, s[0], cond)

    def again(x, k):
        eps = noise(key, k, inner[0], inner[-1], x.shape, x.dtype)
        x = x + eps * (s_noise * math.sqrt(top**2 - level**2))
        return run_steps(heun, x, (inner[:-1], inner[1:]))[0], None

    x, traj_a = run_steps(heun, x, (sig[:j], sig_next[:j]), trajectory=return_trajectory)
    x, _ = jax.lax.scan(again, x, jnp.arange(restarts))
    x_end, traj_b = run_steps(heun, x, (sig[j:], sig_next[j:]), last=euler, trajectory=return_trajectory)
    traj = jnp.concatenate([traj_a[:-1], x[None], traj_b]) if return_trajectory else None
    return finish(x_end, traj, return_trajectory)


def _restart_level(sigmas, t_min: float) -> tuple[int, float]:
    """(j, σ_j): the nonzero level of ``sigmas`` (N+1,) nearest ``t_min`` below σ_max, j in 1..N-1."""
    s = concrete(sigmas)
    if s is None:
        raise ValueError("restart needs concrete sigmas (its restart interval starts at the grid level nearest "
                         "t_min): close over the grid rather than pass it as a traced argument")
    s = np.asarray(s, np.float64)
    if s.ndim != 1 or s.shape[0] < 3:
        raise ValueError(f"restart needs sigmas of at least 3 levels (one between σ_max and 0), got shape {s.shape}")
    j = 1 + int(np.argmin(np.abs(s[1:-1] - t_min)))
    return j, float(s[j])
