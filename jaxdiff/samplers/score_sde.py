"""Score-SDE samplers (Song et al. 2021) over any ``jaxdiff.sde`` process, and NCSN's annealed Langevin.

The protocol of ``jaxdiff.samplers.base``, plus ``process`` (a ``jaxdiff.sde`` process; by default
the EDM process σ(t) = t, s = 1). At its door a sampler maps the grid to process times,
``t_i = process.t_from_sigma(sigmas[i])`` and ``t = 0`` for the final 0 (σ(0) = 0 for VP, sub-VP
and EDM; VE stops at its σ(0) = sigma_min, as score_sde does), and ``x`` to the process's own
scaling ``x_t = s(t) x``; the result and the trajectory are back in the EDM variable. The score
comes from the denoiser through ``process.score_from_denoiser``, evaluated at every level but
the final 0; nothing here switches on the process class. With ``denoise`` (score_sde's
``denoise=True``) the last step adds no noise. The predictors draw through ``noise`` (levels σ);
the Langevin corrector draws i.i.d. from ``key``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff import sdeint as _sdeint
from jaxdiff._arrays import bcast, concrete
from jaxdiff._checks import check_sigmas
from jaxdiff.samplers.base import denoise as base_denoise
from jaxdiff.samplers.base import finish, noise_source, register, run_steps, step_levels
from jaxdiff.sde import EDMSDE

Array = Any

__all__ = ["euler_maruyama", "reverse_diffusion", "predictor_corrector", "reverse_sde", "annealed_langevin"]

EDM_PROCESS = EDMSDE(sigma_max=math.inf)


def _norms(a):
    """Per-example L2 norms of ``a`` (B, ...): (B,)."""
    return jnp.linalg.norm(jnp.reshape(a, (a.shape[0], -1)), axis=1)


def _times(process, x, sigmas):
    """Process times of the grid, (N+1,) in ``x.dtype``; ``ValueError`` when a level lies outside
    the process's range [σ(0), σ(T)]."""
    check_sigmas(sigmas)
    s = concrete(sigmas)
    if s is not None:
        with jax.ensure_compile_time_eval():
            lo, hi = float(process.sigma(0.0)), float(process.sigma(process.T))
        levels = s[:-1]
        if levels.min() < lo * (1 - 1e-6) or levels.max() > hi * (1 + 1e-5):
            raise ValueError(f"sigmas must lie in the process's range [{lo:.4g}, {hi:.4g}] ({type(process).__name__}), "
                             f"got {levels.min():.4g}..{levels.max():.4g}")
    sigmas = jnp.asarray(sigmas, x.dtype)
    t = jnp.clip(process.t_from_sigma(jnp.maximum(sigmas[:-1], process.sigma(0.0))), 0, process.T)
    return jnp.concatenate([t, jnp.zeros((1,), x.dtype)]).astype(x.dtype)


def _score(process, denoiser):
    return process.score_from_denoiser(lambda x, sigma, **cond: base_denoise(denoiser, x, sigma, cond))


def _euler_maruyama_step(process, score, x, t, t_next, z, cond):
    dt = t_next - t
    x_mean = x + process.reverse_drift(x, t, score(x, t, **cond)) * dt
    return x_mean, process.reverse_diffusion(t) * jnp.sqrt(-dt) * z


def _reverse_diffusion_step(process, score, x, t, t_next, z, cond):
    """score_sde's ``ReverseDiffusionPredictor``: reverse the forward discretisation ``discretize``."""
    f, g = process.discretize(x, t, t - t_next)
    return x - (f - bcast(g**2, x) * score(x, t, **cond)), bcast(g, x) * z


_PREDICTORS = {"euler_maruyama": _euler_maruyama_step, "reverse_diffusion": _reverse_diffusion_step}


def _langevin(process, score, x, t, t_next, key, snr, n_corrector, cond):
    """score_sde's ``LangevinCorrector`` with per-example norms; draws ``fold_in(key, j)``.
    ``alpha = s(t)^2 / s(t_next)^2`` is ``1 - beta_i`` for VP-type processes and 1 for VE / EDM."""
    alpha = (process.scale(t) / process.scale(t_next)) ** 2

    def body(j, x):
        grad = score(x, t, **cond)
        z = jax.random.normal(jax.random.fold_in(key, j), x.shape, x.dtype)
        step = bcast(2.0 * alpha * (snr * _norms(z) / _norms(grad)) ** 2, x)
        return x + step * grad + jnp.sqrt(2.0 * step) * z

    return jax.lax.fori_loop(0, n_corrector, body, x)


@register(nfe=lambda n, n_corrector=1, **_: n * (1 + int(n_corrector)), deterministic=False)
def predictor_corrector(denoiser: Callable, x: Array, sigmas: Array, *, key: Array | None = None, noise=None,
                        process=None, snr: float = 0.16, n_corrector: int = 1, predictor: str = "euler_maruyama",
                        denoise: bool = True, return_trajectory: bool = False, **cond):
    """Predictor–corrector sampling: at each level, ``n_corrector`` Langevin steps with step
    ``2 alpha (snr ||z|| / ||score||)^2`` (norms per example), then one ``predictor`` step
    (``"euler_maruyama"`` or ``"reverse_diffusion"``) to the next level. NFE = N (1 + n_corrector)."""
    if predictor not in _PREDICTORS:
        raise ValueError(f"predictor must be one of {sorted(_PREDICTORS)}, got {predictor!r}")
    if concrete(snr) is not None and not float(snr) > 0:
        raise ValueError(f"snr must be > 0, got {snr!r}")
    if int(n_corrector) < 0:
        raise ValueError(f"n_corrector must be >= 0, got {n_corrector!r}")
    n_corrector = int(n_corrector)
    if n_corrector and key is None:
        raise ValueError("key is required: the Langevin corrector draws from it")
    noise = noise_source(key, noise)
    process = EDM_PROCESS if process is None else process
    ts = _times(process, x, sigmas)
    sig, sig_next = step_levels(x, sigmas)
    score = _score(process, denoiser)
    predict = _PREDICTORS[predictor]
    corrector_key = None if key is None else jax.random.split(key)[1]  # a stream apart from fold_in(key, i)

    def move(x, s):
        """Corrector then predictor: (mean of the next state, its noise term)."""
        i, t, t_next, sigma, sigma_next = s
        if n_corrector:
            x = _langevin(process, score, x, t, t_next, jax.random.fold_in(corrector_key, i), snr, n_corrector, cond)
        z = noise(key, i, sigma, sigma_next, x.shape, x.dtype)
        return predict(process, score, x, t, t_next, z, cond)

    def step(x, s):
        mean, kick = move(x, s)
        return mean + kick

    def last(x, s):
        mean, kick = move(x, s)
        return mean if denoise else mean + kick

    steps = (jnp.arange(sig.shape[0]), ts[:-1], ts[1:], sig, sig_next)
    x_t, traj = run_steps(step, x * process.scale(ts[0]), steps, last=last, trajectory=return_trajectory)
    if return_trajectory:
        traj = traj / bcast(process.scale(ts[1:]), traj)
    return finish(x_t / process.scale(ts[-1]), traj, return_trajectory)


@register(nfe=lambda n, **_: n, deterministic=False)
def euler_maruyama(denoiser: Callable, x: Array, sigmas: Array, *, key: Array | None = None, noise=None,
                   process=None, denoise: bool = True, return_trajectory: bool = False, **cond):
    """Euler–Maruyama on the reverse SDE ``dx = [f - g^2 score] dt + g dW``; NFE = N."""
    return predictor_corrector(denoiser, x, sigmas, key=key, noise=noise, process=process, n_corrector=0,
                               predictor="euler_maruyama", denoise=denoise, return_trajectory=return_trajectory,
                               **cond)


@register(nfe=lambda n, **_: n, deterministic=False)
def reverse_diffusion(denoiser: Callable, x: Array, sigmas: Array, *, key: Array | None = None, noise=None,
                      process=None, denoise: bool = True, return_trajectory: bool = False, **cond):
    """score_sde's reverse-diffusion predictor alone (no corrector); NFE = N."""
    return predictor_corrector(denoiser, x, sigmas, key=key, noise=noise, process=process, n_corrector=0,
                               predictor="reverse_diffusion", denoise=denoise, return_trajectory=return_trajectory,
                               **cond)


def _reverse_sde_nfe(n, solver=_sdeint.euler_maruyama, denoise=True, **_):
    return (n - 1) * solver.drift_evals + 1 if denoise else n * solver.drift_evals


@register(nfe=_reverse_sde_nfe, deterministic=False)
def reverse_sde(denoiser: Callable, x: Array, sigmas: Array, *, key: Array | None = None, noise=None,
                process=None, bm=None, solver: _sdeint.Solver = _sdeint.euler_maruyama, denoise: bool = True,
                return_trajectory: bool = False, **cond):
    """The reverse-time SDE solved by any ``jaxdiff.sdeint`` solver; NFE = N × the solver's drift
    evaluations per step (the last step, with ``denoise``, one).

    In the increasing time ``u = -t`` the reverse SDE reads ``dx = -[f - g^2 score](x, -u) du +
    g(-u) dW_u``: the noise is additive (``g`` depends on time only), so ``sdeint.sra1`` reaches
    strong order 1.5 given an exact score and ``euler_maruyama`` strong order 1. Noise: the
    noise source (``dW_k = sqrt(du_k) noise(key, k, ...)``, and the Lévy area from draws
    ``N + k`` for solvers that use it), or ``bm``, a ``jaxdiff.sdeint.VirtualBrownianTree`` over
    an interval of ``u`` covering ``-t`` (``shape=x.shape``, ``levy_area=True`` for ``sra1``), the
    same path at any step count. With ``denoise`` the last step is the drift alone.
    """
    process = EDM_PROCESS if process is None else process
    ts = _times(process, x, sigmas)
    sig, sig_next = step_levels(x, sigmas)
    us = -ts
    score = _score(process, denoiser)

    def drift(y, u):
        return -process.reverse_drift(y, -u, score(y, -u, **cond))

    def diffusion(y, u):
        return jnp.broadcast_to(process.reverse_diffusion(-u), y.shape).astype(y.dtype)

    noisy = us[:-1] if denoise else us
    n = noisy.shape[0] - 1
    if bm is None:
        noise = noise_source(key, noise)
        du = jnp.diff(noisy)

        def draws(offset):
            def draw(k, level, level_next, h):
                return jnp.sqrt(h) * noise(key, offset + k, level, level_next, x.shape, x.dtype)

            return jax.vmap(draw)(jnp.arange(n), sig[:n], sig_next[:n], du)

        bm = (draws(0), draws(sig.shape[0]) / math.sqrt(12.0)) if solver.levy_area else draws(0)
    x_t = x * process.scale(ts[0])
    if n > 0:
        path = _sdeint.sdeint(solver, drift, diffusion, x_t, noisy, bm, save_all=return_trajectory)
        traj = path[1:] if return_trajectory else None
        x_t = path[-1] if return_trajectory else path
    else:
        traj = x_t[:0] if return_trajectory else None
    if denoise:
        x_t = x_t + drift(x_t, us[-2]) * (us[-1] - us[-2])
        if return_trajectory:
            traj = jnp.concatenate([traj, x_t[None]])
    if return_trajectory:
        traj = traj / bcast(process.scale(ts[1:]), traj)
    return finish(x_t / process.scale(ts[-1]), traj, return_trajectory)


@register(nfe=lambda n, n_steps_each=100, denoise=True, **_: n * int(n_steps_each) + int(bool(denoise)),
          deterministic=False)
def annealed_langevin(denoiser: Callable, x: Array, sigmas: Array, *, key: Array | None = None, noise=None,
                      n_steps_each: int = 100, step_lr: float = 2e-5, denoise: bool = True,
                      return_trajectory: bool = False, **cond):
    """NCSN annealed Langevin dynamics (Song & Ermon 2019) in the EDM variable ``x = y + sigma n``.

    At each level ``sigma_i > 0``, ``n_steps_each`` steps ``x += a_i score + sqrt(2 a_i) z`` with
    ``a_i = step_lr (sigma_i / sigma_L)^2``, ``sigma_L`` the last nonzero level, and ``score =
    (D(x; sigma_i) - x) / sigma_i^2``; with ``denoise`` the final jump to 0 is ``x = D(x; sigma_L)``
    (NCSNv2), else the result stays at ``sigma_L``. Draw ``j`` at level ``i`` is the noise source's
    step ``i * n_steps_each + j``. NFE = N n_steps_each (+1 with ``denoise``); trajectory: the
    state after each level.
    """
    if int(n_steps_each) < 1:
        raise ValueError(f"n_steps_each must be >= 1, got {n_steps_each!r}")
    if concrete(step_lr) is not None and not float(step_lr) > 0:
        raise ValueError(f"step_lr must be > 0, got {step_lr!r}")
    noise = noise_source(key, noise)
    m = int(n_steps_each)
    sig, sig_next = step_levels(x, sigmas)
    sigma_last = sig[-1]

    def level(x, s):
        i, sigma, sigma_next = s
        a = step_lr * (sigma / sigma_last) ** 2

        def body(j, x):
            z = noise(key, i * m + j, sigma, sigma_next, x.shape, x.dtype)
            return x + a * (base_denoise(denoiser, x, sigma, cond) - x) / sigma**2 + jnp.sqrt(2.0 * a) * z

        return jax.lax.fori_loop(0, m, body, x)

    def last(x, s):
        x = level(x, s)
        return base_denoise(denoiser, x, s[1], cond) if denoise else x

    x, traj = run_steps(level, x, (jnp.arange(sig.shape[0]), sig, sig_next), last=last, trajectory=return_trajectory)
    return finish(x, traj, return_trajectory)
