"""UniPC (Zhao et al., 2023): multistep predictor–corrector in λ = -log σ, data prediction, B(h) = e^h - 1.

The protocol of ``jaxdiff.samplers.base`` (``key`` and ``noise`` are ignored). Follows diffusers' ``UniPCMultistepScheduler``
(``predict_x0=True``, ``solver_type="bh2"``, ``lower_order_final=True``) with α = 1: the
predictor UniP-p uses the last p denoised estimates; after the next evaluation the new
point is corrected by UniC, which reuses that evaluation (evaluated at the uncorrected
point), so NFE = N. Orders ramp up 1, 2, ... over the first steps and down to 1 on the
last two; the last step to σ=0 returns the denoised estimate.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from jaxdiff.samplers.base import denoise, finish, register, run_steps, step_levels

__all__ = ["unipc"]


def _rb(h, rks, p):
    """(R (p, p), b (p,), e^{-h} - 1) of UniPC's bh2 linear system for order ``p``."""
    hh = -h
    h_phi_1 = jnp.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    rows, b = [], []
    for k in range(1, p + 1):
        rows.append(rks**(k - 1))
        b.append(h_phi_k * math.factorial(k) / h_phi_1)
        h_phi_k = h_phi_k / hh - 1 / math.factorial(k + 1)
    return jnp.stack(rows), jnp.stack(b), h_phi_1


def _update(x, lam, lam_t, ms, m_t, p, corrector):
    """One UniP (``m_t`` None) or UniC update of order ``p`` from base point ``x`` at λ = ``lam[0]``
    to ``lam_t``; ``lam``/``ms``: levels and denoised estimates at the base and the p-1 before it."""
    h = lam_t - lam[0]
    rks = jnp.stack([(lam[k] - lam[0]) / h for k in range(1, p)] + [jnp.ones((), h.dtype)])
    big_r, b, h_phi_1 = _rb(h, rks, p)
    x_t = jnp.exp(-h) * x - h_phi_1 * ms[0]
    d1s = [(ms[k] - ms[0]) / rks[k - 1] for k in range(1, p)]
    if corrector:
        rhos = jnp.full((1,), 0.5, h.dtype) if p == 1 else jnp.linalg.solve(big_r, b)
        res = rhos[-1] * (m_t - ms[0])
    else:
        if p == 1:
            return x_t
        rhos = jnp.full((1,), 0.5, h.dtype) if p == 2 else jnp.linalg.solve(big_r[:-1, :-1], b[:-1])
        res = jnp.zeros_like(x)
    for k, d in enumerate(d1s):
        res = res + rhos[k] * d
    return x_t - h_phi_1 * res


def _select(p, variants):
    out = variants[0]
    for k, v in enumerate(variants[1:], start=2):
        out = jnp.where(p == k, v, out)
    return out


@register(nfe=lambda n, order=3: n, deterministic=True)
def unipc(denoiser, x, sigmas, *, key=None, noise=None, order: int = 3, return_trajectory: bool = False, **cond):
    """UniPC-``order`` (1 to 3) with the UniC corrector, DPM-Solver++ style data prediction; NFE = N."""
    del key, noise
    if isinstance(order, bool) or not isinstance(order, int) or order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    sig, sig_next = step_levels(x, sigmas)
    n = sig.shape[0]
    # λ at σ_{i-3}, ..., σ_i, σ_{i+1}; levels before the grid are padded (their terms are never selected).
    pad = sig[0] * jnp.asarray([8.0, 4.0, 2.0], x.dtype)
    lam_all = -jnp.log(jnp.concatenate([pad, sig]))
    lams = jnp.stack([lam_all[3 - k : 3 - k + n] for k in range(4)], axis=1)  # (N, 4): λ_i, λ_{i-1}, ...
    idx = jnp.arange(n)
    p_pred = jnp.minimum(jnp.minimum(order, idx + 1), n - idx)

    def step(carry, s):
        x, x_base, hist, p_prev = carry  # hist: D_{i-1}, D_{i-2}, D_{i-3}
        i, lam, sigma, sigma_next, p = s
        d = denoise(denoiser, x, sigma, cond)
        # UniC: correct x_i from base x_{i-1} with D_{i-1}, ... and the new D_i.
        corrected = [_update(x_base, lam[1:], lam[0], hist, d, q, True) for q in range(1, order + 1)]
        x = jnp.where(i > 0, _select(p_prev, corrected), x)
        ms = (d, *hist[:2])
        last = sigma_next == 0
        lam_t = -jnp.log(jnp.where(last, 0.5 * sigma, sigma_next))  # a finite stand-in; unused when last
        predicted = [_update(x, lam[:3], lam_t, ms, None, q, False) for q in range(1, order + 1)]
        x_next = jnp.where(last, d, _select(p, predicted))
        return x_next, x, ms, p

    zero = jnp.zeros_like(x)
    init = (x, x, (zero, zero, zero), jnp.ones((), p_pred.dtype))
    (x, *_), traj = run_steps(step, init, (idx, lams, sig, sig_next, p_pred), trajectory=return_trajectory,
                              state=lambda c: c[0])
    return finish(x, traj, return_trajectory)
