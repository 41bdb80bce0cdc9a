"""Multistep samplers with NFE = N: UniPC, iPNDM and DEIS.

The protocol of ``jaxdiff.samplers.base`` (``key`` and ``noise`` are ignored).

**UniPC** (Zhao et al., 2023): multistep predictor–corrector in λ = -log σ, data prediction,
B(h) = e^h - 1. Follows diffusers' ``UniPCMultistepScheduler`` (``predict_x0=True``,
``solver_type="bh2"``, ``lower_order_final=True``) with α = 1: the predictor UniP-p uses the
last p denoised estimates; after the next evaluation the new point is corrected by UniC, which
reuses that evaluation (evaluated at the uncorrected point), so NFE = N. Orders ramp up 1, 2, ...
over the first steps and down to 1 on the last two; the last step to σ=0 returns the denoised
estimate.

**iPNDM** and **DEIS** (Zhang & Chen, 2023) are Adams–Bashforth methods on
``dx/dσ = ε(x, σ) = (x - D(x; σ))/σ``: step i is ``x + Σ_j c_ij ε_{i-j}`` over the last
``min(order, i+1)`` evaluations (a lower-order warm start), every step of the grid included, the
last one to σ = 0. iPNDM takes the fixed Adams–Bashforth weights of equal steps times the step
σ_{i+1} - σ_i; DEIS-tAB the exponential-integrator weights ``∫ (dσ/dt) ℓ_j(t) dt`` of the Lagrange
basis ℓ_j in the VP time t through the previous levels (DEIS's tAB-r is ``order=r+1``; its ρAB,
the Lagrange basis in σ, is ``jaxdiff.samplers.lms``). Fixed weights on unequal steps lose order:
iPNDM is of order ``order`` on equal steps in σ, second order on a Karras grid; DEIS keeps its
order on any smooth grid. Both take
``afs`` (the analytical first step: ε at σ_0 as ``x / sqrt(1 + σ_0²)``, one call saved) and a
learned per-step ``correction`` ([`StepCorrection`][jaxdiff.samplers.corrections.StepCorrection]);
UniPC takes one with a single direction scale per step.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._checks import check_sigmas
from jaxdiff.samplers.base import denoise, finish, register, run_steps, step_levels
from jaxdiff.samplers.corrections import StepCorrection

__all__ = ["unipc", "ipndm", "deis"]

HIGHEST = jax.lax.Precision.HIGHEST  # a solver's own weights: float32 on every device (docs/design/precision.md)


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


@register(nfe=lambda n, order=3, correction=None: n, deterministic=True)
def unipc(denoiser, x, sigmas, *, key=None, noise=None, order: int = 3, correction: StepCorrection | None = None,
          return_trajectory: bool = False, **cond):
    """UniPC-``order`` (1 to 3) with the UniC corrector, DPM-Solver++ style data prediction; NFE = N.

    ``correction``: a learned ``StepCorrection`` with one direction scale per step (``dir_scale``
    (N, 1)): step i queries the denoiser at ``time_scale[i] σ_i``, and its predicted and corrected
    points ``x_new`` become ``x + dir_scale[i] (x_new - x)`` from its start ``x``; no denoiser call
    is added.
    """
    del key, noise
    if isinstance(order, bool) or not isinstance(order, int) or order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    sig, sig_next = step_levels(x, sigmas)
    n = sig.shape[0]
    time_scale, dir_scale = jnp.ones_like(sig), jnp.ones_like(sig)
    if correction is not None:
        if not isinstance(correction, StepCorrection):
            raise ValueError(f"correction must be a StepCorrection, got {type(correction).__name__}")
        if jnp.ndim(correction.dir_scale) == 2 and jnp.shape(correction.dir_scale)[1] != 1:
            raise ValueError(f"unipc takes one direction scale per step (dir_scale (N, 1), learn_correction's "
                             f"per_weight=False), got dir_scale {jnp.shape(correction.dir_scale)}")
        correction.check(sigmas, 1)
        time_scale = jnp.asarray(correction.time_scale, x.dtype)
        dir_scale = jnp.asarray(correction.dir_scale, x.dtype)[:, 0]
    # λ at σ_{i-3}, ..., σ_i, σ_{i+1}; levels before the grid are padded (their terms are never selected).
    pad = sig[0] * jnp.asarray([8.0, 4.0, 2.0], x.dtype)
    lam_all = -jnp.log(jnp.concatenate([pad, sig]))
    lams = jnp.stack([lam_all[3 - k : 3 - k + n] for k in range(4)], axis=1)  # (N, 4): λ_i, λ_{i-1}, ...
    idx = jnp.arange(n)
    p_pred = jnp.minimum(jnp.minimum(order, idx + 1), n - idx)

    def scaled(base, moved, d_scale):
        return moved if correction is None else base + d_scale * (moved - base)

    def step(carry, s):
        x, x_base, hist, p_prev, d_prev = carry  # hist: D_{i-1}, D_{i-2}, D_{i-3}
        i, lam, sigma, sigma_next, p, t_scale, d_scale = s
        d = denoise(denoiser, x, t_scale * sigma, cond)
        # UniC: correct x_i from base x_{i-1} with D_{i-1}, ... and the new D_i.
        corrected = [_update(x_base, lam[1:], lam[0], hist, d, q, True) for q in range(1, order + 1)]
        x = jnp.where(i > 0, scaled(x_base, _select(p_prev, corrected), d_prev), x)
        ms = (d, *hist[:2])
        last = sigma_next == 0
        lam_t = -jnp.log(jnp.where(last, 0.5 * sigma, sigma_next))  # a finite stand-in; unused when last
        predicted = [_update(x, lam[:3], lam_t, ms, None, q, False) for q in range(1, order + 1)]
        x_next = scaled(x, jnp.where(last, d, _select(p, predicted)), d_scale)
        return x_next, x, ms, p, d_scale

    zero = jnp.zeros_like(x)
    init = (x, x, (zero, zero, zero), jnp.ones((), p_pred.dtype), jnp.ones((), x.dtype))
    xs = (idx, lams, sig, sig_next, p_pred, time_scale, dir_scale)
    (x, *_), traj = run_steps(step, init, xs, trajectory=return_trajectory, state=lambda c: c[0])
    return finish(x, traj, return_trajectory)


# -- iPNDM and DEIS: Adams–Bashforth on dx/dσ = ε ---------------------------------------------------

# Adams–Bashforth weights of equal steps, most recent evaluation first (iPNDM, Zhang & Chen 2023, eq. 9).
AB_WEIGHTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)
MAX_ORDER = len(AB_WEIGHTS)

# DEIS's time variable: the VP time t with σ(t)² = exp(β_min t + β_d t²/2) - 1 (β from 0.1 to 20).
VP_BETA_MIN, VP_BETA_D = 0.1, 19.9
QUADRATURE_NODES = 32  # Gauss–Legendre in u = √t, where the integrand is smooth: exact to float64 round-off


def _warm_start(n: int, order: int) -> np.ndarray:
    """(N,) the order of each step: 1, 2, ... up to ``order``."""
    return np.minimum(np.arange(n) + 1, order)


def ipndm_coeffs(sigmas, order: int):
    """(N, order) iPNDM weights for the grid ``sigmas`` (N+1,): row i is (σ_{i+1} - σ_i) times the
    Adams–Bashforth weights of order ``min(order, i+1)``, padded with zeros."""
    n = sigmas.shape[0] - 1
    table = np.zeros((n, order))
    for i, m in enumerate(_warm_start(n, order)):
        table[i, :m] = AB_WEIGHTS[m - 1]
    return jnp.diff(sigmas)[:, None] * jnp.asarray(table, sigmas.dtype)


def _safe_sqrt(v):
    pos = v > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1)), 0)


def vp_time(sigma):
    """The VP time t of noise level ``sigma`` (t(0) = 0), DEIS's variable."""
    return (_safe_sqrt(VP_BETA_MIN**2 + 2 * VP_BETA_D * jnp.log1p(sigma**2)) - VP_BETA_MIN) / VP_BETA_D


def _dsigma_du(u):
    """dσ/du at u = √t > 0 for σ(t)² = expm1(β_min t + β_d t²/2)."""
    q = VP_BETA_MIN * u**2 + 0.5 * VP_BETA_D * u**4
    dq = 2 * VP_BETA_MIN * u + 2 * VP_BETA_D * u**3
    return jnp.exp(q) * dq / (2 * jnp.sqrt(jnp.expm1(q)))


@functools.partial(jax.jit, static_argnums=1)  # one program outside jit, not dozens of small ones
def deis_coeffs(sigmas, order: int):
    """(N, order) DEIS-tAB weights for the grid ``sigmas`` (N+1,).

    Row i holds ``c_ij = ∫_{t_i}^{t_{i+1}} σ'(t) ℓ_j(t) dt`` for the Lagrange basis ℓ_j in VP time
    through t_i, ..., t_{i-m+1}, m = ``min(order, i+1)`` (zero for j >= m). The integral runs in
    u = √t (σ is smooth in u down to σ = 0, not in t) by Gauss–Legendre; the first weight is set
    so each row sums to σ_{i+1} - σ_i exactly (the basis sums to one)."""
    n = sigmas.shape[0] - 1
    m = _warm_start(n, order)
    u = _safe_sqrt(vp_time(sigmas))
    t = u**2
    xi, wi = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    a, b = u[:-1, None], u[1:, None]
    uq = 0.5 * (a + b) + 0.5 * (b - a) * jnp.asarray(xi, sigmas.dtype)  # (N, Q)
    weight = 0.5 * (b - a) * jnp.asarray(wi, sigmas.dtype) * _dsigma_du(uq)  # (N, Q)
    tq = uq**2
    i = np.arange(n)[:, None]
    node = t[np.maximum(i - np.arange(order)[None, :], 0)]  # (N, order): node k is t_{i-k}
    cols = []
    for j in range(order):
        basis = jnp.ones_like(tq)
        for k in range(order):
            if k == j:
                continue
            used = jnp.asarray(((k < m) & (j < m))[:, None])  # no 0/0 in an unused factor, nor in its gradient
            den = jnp.where(used, node[:, j : j + 1] - node[:, k : k + 1], 1)
            basis = basis * jnp.where(used, (tq - node[:, k : k + 1]) / den, 1)
        cols.append(jnp.where(jnp.asarray(j < m), jnp.sum(weight * basis, axis=1), 0))
    c = jnp.stack(cols, axis=1)
    return c.at[:, 0].set(jnp.diff(sigmas) - jnp.sum(c[:, 1:], axis=1))


def _check_adams(name, sigmas, order, afs):
    check_sigmas(sigmas)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be an int in 1..{MAX_ORDER}, got {order!r}")
    if not isinstance(afs, (bool, np.bool_)):
        raise ValueError(f"afs must be a bool, got {afs!r}")
    n = jnp.shape(sigmas)[0] - 1
    if n < order:
        raise ValueError(f"{name} with order={order} needs a grid of at least {order} steps to reach that order, got "
                         f"{n} ({n - int(afs)} NFE): use order <= {max(n, 1)} or more steps")
    if afs and n < 2:
        raise ValueError(f"{name} with afs=True needs at least 2 steps (the first takes no denoiser call), got {n}")


def _adams(denoiser, x, sigmas, weights, order, afs, correction, cond, return_trajectory):
    """Run ``x_{i+1} = x_i + Σ_j c_ij ε_{i-j}`` with ``weights(levels (N+1,), order) -> (N, order)``."""
    if correction is not None:
        if not isinstance(correction, StepCorrection):
            raise ValueError(f"correction must be a StepCorrection, got {type(correction).__name__}")
        correction.check(sigmas, order)
    sig, sig_next = step_levels(x, sigmas)
    c = weights(jnp.concatenate([sig, sig_next[-1:]]), order)
    time_scale = jnp.ones_like(sig)
    if correction is not None:
        time_scale = jnp.asarray(correction.time_scale, x.dtype)
        c = c * jnp.asarray(correction.dir_scale, x.dtype)

    def advance(x, hist, d, ci):
        hist = jnp.concatenate([d[None], hist[:-1]])  # most recent first
        return x + jnp.tensordot(ci, hist, axes=1, precision=HIGHEST), hist

    def step(carry, s):
        x, hist = carry
        sigma, scale, ci = s
        d = (x - denoise(denoiser, x, scale * sigma, cond)) / sigma
        return advance(x, hist, d, ci)

    hist = jnp.zeros((order, *x.shape), x.dtype)
    xs = (sig, time_scale, c)
    if not afs:
        (x, _), traj = run_steps(step, (x, hist), xs, trajectory=return_trajectory, state=lambda s: s[0])
        return finish(x, traj, return_trajectory)
    x, hist = advance(x, hist, x / jnp.sqrt(1 + sig[0] ** 2), c[0])
    (x_end, _), traj = run_steps(step, (x, hist), jax.tree.map(lambda a: a[1:], xs), trajectory=return_trajectory,
                                 state=lambda s: s[0])
    if return_trajectory:
        traj = jnp.concatenate([x[None], traj])
    return finish(x_end, traj, return_trajectory)


def _adams_nfe(n, order=4, afs=False, correction=None):
    return n - int(afs)


@register(nfe=_adams_nfe, deterministic=True)
def ipndm(denoiser, x, sigmas, *, key=None, noise=None, order: int = 4, afs: bool = False,
          correction: StepCorrection | None = None, return_trajectory: bool = False, **cond):
    """iPNDM-``order`` (1 to 4): fixed Adams–Bashforth weights times σ_{i+1} - σ_i, lower-order warm
    start; ``afs`` replaces the first evaluation by ``x / sqrt(1 + σ_0²)``; ``correction`` a learned
    ``StepCorrection`` for this grid. NFE = N (N - 1 with ``afs``); at least ``order`` steps."""
    del key, noise
    _check_adams("ipndm", sigmas, order, afs)
    return _adams(denoiser, x, sigmas, ipndm_coeffs, int(order), bool(afs), correction, cond, return_trajectory)


@register(nfe=_adams_nfe, deterministic=True)
def deis(denoiser, x, sigmas, *, key=None, noise=None, order: int = 3, afs: bool = False,
         correction: StepCorrection | None = None, return_trajectory: bool = False, **cond):
    """DEIS-tAB with ``order`` (1 to 4) evaluations per step (tAB-r is order r+1; order 1 is DDIM):
    exponential-integrator weights in VP time (``deis_coeffs``), lower-order warm start; ``afs`` and
    ``correction`` as for ``ipndm``. NFE = N (N - 1 with ``afs``); at least ``order`` steps."""
    del key, noise
    _check_adams("deis", sigmas, order, afs)
    return _adams(denoiser, x, sigmas, deis_coeffs, int(order), bool(afs), correction, cond, return_trajectory)
