"""Score-SDE samplers (Song et al. 2021) over any ``jaxdiff.sde`` process, and NCSN's annealed Langevin.

The SDE samplers share ``sampler(sde, denoiser, x, ts, *, key, denoise=True, **cond) -> x``:
``x`` (B, ...) is the state in the process's own scaling, ``x_t = s(t) (y + sigma(t) n)``,
at time ``ts[0]`` (start from ``sde.prior_sample``); ``ts`` (N+1,) is strictly decreasing
in ``[0, T]`` (e.g. ``linspace(T, eps, N + 1)``); the score is evaluated at ``ts[:-1]``
only, so ``ts[-1] = 0`` is allowed. The result is at time ``ts[-1]``; with ``denoise``
the last step adds no noise (score_sde's ``denoise=True``). The score comes from the
denoiser through ``sde.score_from_denoiser``; nothing here switches on the process class.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import sdeint as _sdeint
from jaxdiff._checks import check_denoised, check_sigmas

Array = Any

__all__ = ["euler_maruyama", "reverse_diffusion", "predictor_corrector", "reverse_sde", "annealed_langevin"]


def _bcast(c, x):
    return jnp.reshape(c, jnp.shape(c) + (1,) * (x.ndim - jnp.ndim(c)))


def _norms(a):
    """Per-example L2 norms of ``a`` (B, ...): (B,)."""
    return jnp.linalg.norm(jnp.reshape(a, (a.shape[0], -1)), axis=1)


def _check_ts(sde, ts) -> None:
    if isinstance(ts, jax.core.Tracer):
        return
    t = np.asarray(ts)
    if t.ndim != 1 or t.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D grid of at least 2 times, got shape {t.shape}")
    if np.any(np.diff(t) >= 0):
        raise ValueError("ts must be strictly decreasing")
    if t[-1] < 0 or t[0] > sde.T * (1 + 1e-5):
        raise ValueError(f"ts must lie in [0, T={sde.T}], got {t[0]}..{t[-1]}")


def _checked_score(sde, denoiser):
    def checked(x, sigma, **cond):
        out = denoiser(x, sigma, **cond)
        check_denoised(x, out)
        return out

    return sde.score_from_denoiser(checked)


def _euler_maruyama_step(sde, score, x, t, t_next, key, cond):
    dt = t_next - t
    x_mean = x + sde.reverse_drift(x, t, score(x, t, **cond)) * dt
    z = jax.random.normal(key, x.shape, x.dtype)
    return x_mean + sde.reverse_diffusion(t) * jnp.sqrt(-dt) * z, x_mean


def _reverse_diffusion_step(sde, score, x, t, t_next, key, cond):
    """score_sde's ``ReverseDiffusionPredictor``: reverse the forward discretisation ``sde.discretize``."""
    f, g = sde.discretize(x, t, t - t_next)
    x_mean = x - (f - _bcast(g**2, x) * score(x, t, **cond))
    z = jax.random.normal(key, x.shape, x.dtype)
    return x_mean + _bcast(g, x) * z, x_mean


_PREDICTORS = {"euler_maruyama": _euler_maruyama_step, "reverse_diffusion": _reverse_diffusion_step}


def _langevin(sde, score, x, t, t_next, key, snr, n_corrector, cond):
    """score_sde's ``LangevinCorrector`` with per-example norms. ``alpha = s(t)^2 / s(t_next)^2``
    is ``1 - beta_i`` for VP-type processes and 1 for VE / EDM."""
    alpha = (sde.scale(t) / sde.scale(t_next)) ** 2

    def body(i, carry):
        x, _ = carry
        grad = score(x, t, **cond)
        z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        step = _bcast(2.0 * alpha * (snr * _norms(z) / _norms(grad)) ** 2, x)
        x_mean = x + step * grad
        return x_mean + jnp.sqrt(2.0 * step) * z, x_mean

    return jax.lax.fori_loop(0, n_corrector, body, (x, x))


def predictor_corrector(sde, denoiser: Callable, x: Array, ts: Array, *, key: Array, snr: float = 0.16,
                        n_corrector: int = 1, predictor: str = "euler_maruyama", denoise: bool = True,
                        **cond) -> Array:
    """Predictor–corrector sampling: at each ``t = ts[i]``, ``n_corrector`` Langevin steps with
    step ``2 alpha (snr ||z|| / ||score||)^2`` (norms per example), then one ``predictor``
    step (``"euler_maruyama"`` or ``"reverse_diffusion"``) to ``ts[i+1]``. ``x`` (B, ...) -> (B, ...)."""
    if predictor not in _PREDICTORS:
        raise ValueError(f"predictor must be one of {sorted(_PREDICTORS)}, got {predictor!r}")
    if not isinstance(snr, jax.core.Tracer) and not float(snr) > 0:
        raise ValueError(f"snr must be > 0, got {snr!r}")
    if int(n_corrector) < 0:
        raise ValueError(f"n_corrector must be >= 0, got {n_corrector!r}")
    if key is None:
        raise ValueError("key is required")
    _check_ts(sde, ts)
    ts = jnp.asarray(ts, x.dtype)
    score = _checked_score(sde, denoiser)
    predict = _PREDICTORS[predictor]

    def step(x, s):
        t, t_next, k = s
        kc, kp = jax.random.split(k)
        if n_corrector:
            x, _ = _langevin(sde, score, x, t, t_next, kc, snr, int(n_corrector), cond)
        x, x_mean = predict(sde, score, x, t, t_next, kp, cond)
        return x, x_mean

    keys = jax.random.split(key, ts.shape[0] - 1)
    x, means = jax.lax.scan(step, x, (ts[:-1], ts[1:], keys))
    return means[-1] if denoise else x


def euler_maruyama(sde, denoiser: Callable, x: Array, ts: Array, *, key: Array, denoise: bool = True,
                   **cond) -> Array:
    """Euler–Maruyama on the reverse SDE ``dx = [f - g^2 score] dt + g dW``. ``x`` (B, ...) -> (B, ...)."""
    return predictor_corrector(sde, denoiser, x, ts, key=key, n_corrector=0, predictor="euler_maruyama",
                               denoise=denoise, **cond)


def reverse_diffusion(sde, denoiser: Callable, x: Array, ts: Array, *, key: Array, denoise: bool = True,
                      **cond) -> Array:
    """score_sde's reverse-diffusion predictor alone (no corrector). ``x`` (B, ...) -> (B, ...)."""
    return predictor_corrector(sde, denoiser, x, ts, key=key, n_corrector=0, predictor="reverse_diffusion",
                               denoise=denoise, **cond)


def reverse_sde(sde, denoiser: Callable, x: Array, ts: Array, *, key: Array | None = None, bm=None,
                solver: _sdeint.Solver = _sdeint.euler_maruyama, denoise: bool = True, **cond) -> Array:
    """The reverse-time SDE solved by any ``jaxdiff.sdeint`` solver. ``x`` (B, ...) -> (B, ...).

    In the increasing time ``u = -t`` (grid ``-ts``) the reverse SDE reads
    ``dx = -[f - g^2 score](x, -u) du + g(-u) dW_u``: the noise is additive (``g`` depends on
    time only), so ``sdeint.sra1`` reaches strong order 1.5 given an exact score and
    ``euler_maruyama`` strong order 1. Noise: ``key`` (drawn inside the scan) or ``bm``, a
    ``jaxdiff.sdeint.VirtualBrownianTree`` over an interval of ``u`` that covers ``-ts``
    (``shape=x.shape``, ``levy_area=True`` for ``sra1``; the same tree gives the same path at
    any step count) or increments on ``-ts`` as ``sdeint`` takes them. With ``denoise`` the
    last step is the drift alone (no noise), as in ``predictor_corrector``.
    """
    _check_ts(sde, ts)
    if (key is None) == (bm is None):
        raise ValueError("give exactly one of key (a jax.random.key) or bm (Brownian noise)")
    ts = jnp.asarray(ts, x.dtype)
    us = -ts
    score = _checked_score(sde, denoiser)

    def drift(y, u):
        return -sde.reverse_drift(y, -u, score(y, -u, **cond))

    def diffusion(y, u):
        return jnp.broadcast_to(sde.reverse_diffusion(-u), y.shape).astype(y.dtype)

    noisy = us[:-1] if denoise else us
    if bm is not None and not isinstance(bm, _sdeint.VirtualBrownianTree):
        bm = jax.tree.map(lambda a: a[: noisy.shape[0] - 1], bm)
    if noisy.shape[0] > 1:
        x = _sdeint.sdeint(solver, drift, diffusion, x, noisy, key if bm is None else bm)
    if denoise:
        x = x + drift(x, us[-2]) * (us[-1] - us[-2])
    return x


def annealed_langevin(denoiser: Callable, x: Array, sigmas: Array, *, key: Array, n_steps_each: int = 100,
                      step_lr: float = 2e-5, denoise: bool = True, **cond) -> Array:
    """NCSN annealed Langevin dynamics (Song & Ermon 2019) in the EDM variable ``x = y + sigma n``.

    ``sigmas`` (L+1,) is a house grid ending with 0; at each level ``sigma_i > 0``,
    ``n_steps_each`` steps ``x += a_i score + sqrt(2 a_i) z`` with ``a_i = step_lr (sigma_i /
    sigma_L)^2`` and ``score = (D(x; sigma_i) - x) / sigma_i^2``. With ``denoise`` the final
    jump to 0 is ``x = D(x; sigma_L)`` (NCSNv2). ``x`` (B, ...) -> (B, ...).
    """
    check_sigmas(sigmas)
    if int(n_steps_each) < 1:
        raise ValueError(f"n_steps_each must be >= 1, got {n_steps_each!r}")
    if not isinstance(step_lr, jax.core.Tracer) and not float(step_lr) > 0:
        raise ValueError(f"step_lr must be > 0, got {step_lr!r}")
    if key is None:
        raise ValueError("key is required")
    sigmas = jnp.asarray(sigmas, x.dtype)
    levels = sigmas[:-1]
    sigma_last = levels[-1]

    def level(x, s):
        sigma, k = s
        a = step_lr * (sigma / sigma_last) ** 2

        def body(i, x):
            denoised = denoiser(x, sigma, **cond)
            check_denoised(x, denoised)
            z = jax.random.normal(jax.random.fold_in(k, i), x.shape, x.dtype)
            return x + a * (denoised - x) / sigma**2 + jnp.sqrt(2.0 * a) * z

        return jax.lax.fori_loop(0, int(n_steps_each), body, x), None

    x, _ = jax.lax.scan(level, x, (levels, jax.random.split(key, levels.shape[0])))
    return denoiser(x, sigma_last, **cond) if denoise else x
