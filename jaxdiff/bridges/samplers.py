"""Bridge samplers over ``denoiser(x_t, t, x_T) -> x0_hat``: DDBM's hybrid Heun and DBIM.

Both are ``sampler(denoiser, x_T, ts, *, bridge, key=None, noise=None, return_trajectory=False,
**options)``: they start from the source ``x_T`` (B, ...), walk a strictly decreasing grid ``ts``
(N+1,) inside [0, T) and return the translated sample (B, ...), with ``return_trajectory`` also the
state after each step (N, B, ...). ``ts`` may also be an int N, meaning the reference grid with N
steps (``ddbm_grid`` / ``dbim_grid``); ``cosine_grid`` is denser at both ends and markedly better
for the high-order DBIM. Every random draw is ``noise(key, step, t, t_next, shape, dtype)`` with a
distinct integer ``step`` (``jaxdiff.samplers.noise``; default ``gaussian``, which needs ``key``).
When ``ts`` is concrete, every per-step coefficient is computed on the host in float64 and the
loop is a ``lax.scan`` over that table, so the samplers jit and vmap; the denoiser sees ``t`` as a
scalar. Denoiser calls run one after another, never overlapping (``_denoise``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import after
from jaxdiff._checks import check_finite
from jaxdiff.bridges.process import _xp
from jaxdiff.samplers.noise import gaussian

Array = Any
Denoiser = Callable[[Array, Array, Array], Array]


def _finish(x, trajectory, return_trajectory: bool):
    """``x`` (or ``(x, trajectory)``); outside tracing, raise instead of returning NaN or inf."""
    check_finite(x, "bridge sampler produced non-finite values: the denoiser returned NaN or inf, "
                    "or x_T is not finite")
    return (x, trajectory) if return_trajectory else x


def ddbm_grid(bridge, n: int, rho: float = 7.0):
    """DDBM's grid: n Karras (ρ=7) levels from t_max down to t_min, then 0; float64 (n+1,)."""
    ramp = np.linspace(0.0, 1.0, n)
    lo, hi = bridge.t_min ** (1 / rho), bridge.t_max ** (1 / rho)
    return np.append((hi + ramp * (lo - hi)) ** rho, 0.0)


def dbim_grid(bridge, n: int):
    """DBIM's grid: n+1 uniform times from min(T − 1e-3, t_max) down to t_min; float64 (n+1,)."""
    return np.linspace(min(bridge.T - 1e-3, bridge.t_max), bridge.t_min, n + 1)


def cosine_grid(bridge, n: int):
    """n+1 times t = T (1 + cos πu)/2, u uniform, from min(T − 1e-3, t_max) down to t_min: dense at
    both ends, where the bridge changes fastest (jaxdiff's choice for high-order DBIM); float64."""
    ends = (min(bridge.T - 1e-3, bridge.t_max), bridge.t_min)
    u0, u1 = (np.arccos(2 * t / bridge.T - 1) / np.pi for t in ends)
    return 0.5 * bridge.T * (1 + np.cos(np.pi * np.linspace(u0, u1, n + 1)))


def _check(bridge, x_T, ts, default_grid):
    if isinstance(ts, (int, np.integer)) and not isinstance(ts, bool):
        if ts < 1:
            raise ValueError(f"ts as a step count must be >= 1, got {ts}")
        ts = default_grid(bridge, int(ts))
    if jnp.ndim(x_T) < 1:
        raise ValueError(f"x_T must have a leading batch axis (B, ...), got shape {jnp.shape(x_T)}")
    try:
        v = np.asarray(ts, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return ts
    if v.ndim != 1 or v.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D grid of at least 2 times, got shape {v.shape}")
    if not np.all(np.isfinite(v)) or v.min() < 0 or v.max() >= bridge.T:
        raise ValueError(f"ts must lie in [0, T) = [0, {bridge.T}), got range [{v.min()}, {v.max()}]")
    if np.any(np.diff(v) >= 0):
        raise ValueError("ts must be strictly decreasing")
    return v


def _denoise(denoiser, x, t, x_T):
    """``denoiser(x, t, x_T)``, checked to have x_T's shape (B, ...); ``t`` and ``x_T`` pass through
    ``jaxdiff._arrays.after(x, ...)``, so no two denoiser calls run at once (a CPU deadlock otherwise)."""
    t, x_T = after(x, t, x_T)
    out = denoiser(x, t, x_T)
    if out.shape != x_T.shape:
        raise ValueError(f"denoiser returned shape {out.shape}, but x_T has shape {x_T.shape}")
    return out


def _draw(noise, key, step, t, t_next, x):
    """Standard normal draws like ``x`` from the noise source, checked to have its shape."""
    z = noise(key, step, t, t_next, x.shape, x.dtype)
    if jnp.shape(z) != x.shape:
        raise ValueError(f"noise source returned shape {jnp.shape(z)}, expected {x.shape}")
    return z


def _drift_coeffs(bridge, t, *, ode: bool, guidance: float):
    """(p_x, p_T, p_D, g): reverse drift = p_x x + p_T x_T + p_D x0_hat, diffusion g, at ``t``."""
    xp, t = _xp(t)
    alpha, alpha_bar, _, rho_bar2 = bridge.alpha_rho(t)
    a, b, c = bridge.abc(t)
    f, g2 = bridge.f_g2(t)
    k = 0.5 if ode else 1.0
    q, h = g2 * k / c**2, g2 * guidance / (alpha**2 * rho_bar2)
    return f + q - h, -q * a + h * alpha_bar, -q * b, xp.sqrt(g2)


def _lin(c, x):
    return jnp.reshape(c, (1,) * x.ndim) * x


def ddbm_heun(denoiser: Denoiser, x_T, ts, *, bridge, key=None, noise=None, return_trajectory: bool = False,
              churn_step_ratio: float = 0.33, guidance: float = 1.0):
    """DDBM's hybrid sampler (Zhou et al. 2023, Alg. 1): per step a stochastic Euler step of the
    reverse bridge SDE from t_i to t̂ = t_i + r (t_{i+1} − t_i) (noise step i, times (t_i, t̂)),
    then a Heun step of the probability-flow ODE from t̂ to t_{i+1}; the last step is Euler when it
    ends at t = 0. NFE = 3N − 1 on a grid ending at 0 (2N − 1 with r = 0), else 3N (2N).
    ``guidance`` scales the h-transform term.

    Args:
      x_T: (B, ...) source. ts: (N+1,) decreasing times in [0, T), or int N (``ddbm_grid``).
      bridge: a ``VPBridge``/``VEBridge``. key, noise: the noise source and its key (drawn from
        only when churn_step_ratio > 0).
    Returns: (B, ...) samples; with ``return_trajectory``, also the states after each step (N, B, ...).
    """
    if not 0.0 <= churn_step_ratio < 1.0:
        raise ValueError(f"churn_step_ratio must lie in [0, 1), got {churn_step_ratio}")
    ts = _check(bridge, x_T, ts, ddbm_grid)
    noise = gaussian if noise is None else noise
    churn = churn_step_ratio > 0
    t_i, t_next = ts[:-1], ts[1:]
    t_hat = t_i + churn_step_ratio * (t_next - t_i)
    xp, _ = _xp(ts)
    t_next_safe = xp.where(t_next > 0, t_next, t_hat)  # the drift at t = 0 is never used
    sde = _drift_coeffs(bridge, t_i, ode=False, guidance=guidance)
    ode1 = _drift_coeffs(bridge, t_hat, ode=True, guidance=guidance)
    ode2 = _drift_coeffs(bridge, t_next_safe, ode=True, guidance=guidance)
    # drift p_x x + p_T x_T + p_D d = p_x (x − x_T) + (p_x + p_T) x_T + p_D d, the sum formed in float64:
    # near T, p_x and p_T ~ 1/(T − t) nearly cancel, and rounding p_x x and p_T x_T apart does not
    sde, ode1, ode2 = ((c[0], c[0] + c[1], *c[2:]) for c in (sde, ode1, ode2))
    table = (jnp.arange(t_i.shape[0]),
             *(jnp.asarray(v, x_T.dtype) for v in (t_i, t_hat, t_next, *sde, *ode1[:3], *ode2[:3])))

    def drift(x, d, c):
        return _lin(c[0], x - x_T) + _lin(c[1], x_T) + _lin(c[2], d)

    def step(x, row, heun: bool):
        i, ti, th, tn, *c = row
        if churn:
            d = _denoise(denoiser, x, ti, x_T)
            z = _draw(noise, key, i, ti, th, x)
            x = x + (th - ti) * drift(x, d, c[0:3]) + jnp.sqrt(ti - th) * c[3] * z
        d1 = drift(x, _denoise(denoiser, x, th, x_T), c[4:7])
        x_euler = x + (tn - th) * d1
        if not heun:
            return x_euler
        d2 = drift(x_euler, _denoise(denoiser, x_euler, tn, x_T), c[7:10])
        return x + (tn - th) * 0.5 * (d1 + d2)

    def body(x, row):
        x = step(x, row, True)
        return x, (x if return_trajectory else None)

    x, traj = jax.lax.scan(body, x_T, jax.tree.map(lambda v: v[:-1], table))
    last = jax.tree.map(lambda v: v[-1], table)
    if xp is np:
        x = step(x, last, bool(ts[-1] > 0))
    else:  # a traced grid: whether it ends at 0 is known only at run time
        x = jax.lax.cond(ts[-1] > 0, lambda x, r: step(x, r, True), lambda x, r: step(x, r, False), x, last)
    if return_trajectory:
        traj = jnp.concatenate([traj, x[None]])
    return _finish(x, traj, return_trajectory)


def _first_order(bridge, s, t, eta: float):
    """DBIM's eta update s → t: (c_x, c_T, w_0, ω), x_t = c_x x_s + c_T x_T + w_0 x0_hat + ω z."""
    xp, s = _xp(s)
    _, t = _xp(t)
    a_s, b_s, c_s = bridge.abc(s)
    a_t, b_t, c_t = bridge.abc(t)
    alpha_t, _, rho2_t, _ = bridge.alpha_rho(t)
    rho2_s = bridge.alpha_rho(s)[2]
    omega = eta * alpha_t * xp.sqrt(rho2_t * (1.0 - rho2_t / rho2_s))
    ratio = xp.sqrt(xp.maximum(c_t**2 - omega**2, 0.0)) / c_s
    return ratio, a_t - ratio * a_s, b_t - ratio * b_s, omega


def _dbim_table(bridge, ts, eta: float, order: int):
    """Per-step (c_x, c_T, w_0, w_1, w_2, σ), each (N,): x_next = c_x x + c_T x_T + Σ_j w_j D_j + σ z
    with D_0 the current denoiser output and D_1, D_2 the two before it."""
    xp, ts = _xp(ts)
    n = ts.shape[0] - 1
    i = xp.arange(n)
    cx, cT, w0, omega = _first_order(bridge, ts[:-1], ts[1:], eta)
    sigma = omega * (i < n - 1)
    w1 = w2 = 0.0 * cx
    if order > 1:
        # exponential integrator in λ = log(b/c); λ(0) = +inf only ever ends a (first-order) last step
        _, b, c = bridge.abc(ts)
        lam = xp.log(b) - xp.log(xp.where(c > 0, c, 1.0))
        h = lam[1:] - lam[:-1]
        h1 = lam[i] - lam[xp.maximum(i - 1, 0)]
        h2 = lam[xp.maximum(i - 1, 0)] - lam[xp.maximum(i - 2, 0)]
        o2 = (i >= 1) & (i < n - 1) & ((order == 2) | (i == 1))
        o3 = (i >= 2) & (i < n - 1) & (order == 3)
        h1, h2 = xp.where(i >= 1, h1, 1.0), xp.where(i >= 2, h2, 1.0)
        em = xp.exp(-h)
        phi2, phi3 = em + h - 1.0, h**2 / 2 - h + 1.0 - em
        bt = b[1:]
        # order 2: dD = (D_0 − D_1)/h1
        w0 = w0 + xp.where(o2, bt * phi2 / h1, 0.0)
        w1 = w1 - xp.where(o2, bt * phi2 / h1, 0.0)
        # order 3: dD, d²D from the three-point divided differences (DBIM, Alg. 2)
        g = h1 + h2
        d0, d2 = (2 * h1 + h2) / (h1 * g), h1 / (h2 * g)
        e0, e2 = 2 / (h1 * g), 2 / (h2 * g)
        w0 = w0 + xp.where(o3, bt * (phi2 * d0 + phi3 * e0), 0.0)
        w1 = w1 - xp.where(o3, bt * (phi2 * (d0 + d2) + phi3 * (e0 + e2)), 0.0)
        w2 = w2 + xp.where(o3, bt * (phi2 * d2 + phi3 * e2), 0.0)
    return cx, cT, w0, w1, w2, sigma


def dbim_step(bridge, x_s, x0_hat, x_T, s, t, *, eta: float = 0.0, z=None):
    """One first-order DBIM update of x_s (B, ...) from time s to t < s given x0_hat; ``z``
    (standard normal draws like x_s) is needed when eta > 0. With the true x_0 it maps
    q(x_s | x_0, x_T) onto q(x_t | x_0, x_T)."""
    cx, cT, w0, omega = (jnp.asarray(v, x_s.dtype) for v in _first_order(bridge, float(s), float(t), eta))
    out = cx * x_s + cT * x_T + w0 * x0_hat
    return out + omega * z if eta > 0 else out


def dbim(denoiser: Denoiser, x_T, ts, *, bridge, key=None, noise=None, return_trajectory: bool = False,
         eta: float = 0.0, order: int = 1, boot_noise: bool = True):
    """DBIM (Zheng et al. 2024): the non-Markovian bridge sampler.

    Booting: x0_hat = D(x_T, t_max), x_{t_0} = a x_T + b x0_hat + c z (noise step 0, times
    (T, t_0); z = 0 if not ``boot_noise``: the pure ODE, which collapses to one sample per x_T).
    Then per step s → t, with ω = eta α_t ρ_t √(1 − ρ_t²/ρ_s²) and r = √(c_t² − ω²)/c_s:
    x_t = r x_s + (a_t − r a_s) x_T + (b_t − r b_s) x0_hat + ω z (noise step i + 1, times (s, t))
    (eta = 1: the Markovian posterior; no noise on the last step).
    ``order`` 2/3 (eta = 0 only): multistep exponential integrators in λ = log(b/c), first order
    on the first and last steps. NFE = N + 1.

    Args:
      x_T: (B, ...) source. ts: (N+1,) decreasing times in [0, T), or int N (``dbim_grid``).
      bridge: a ``VPBridge``/``VEBridge``. key, noise: the noise source and its key (drawn from
        only when eta > 0 or boot_noise).
    Returns: (B, ...) samples at t = ts[-1]; with ``return_trajectory``, also the states after
    each step (N, B, ...).
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    if order > 1 and eta != 0:
        raise ValueError(f"eta must be 0 for order {order} (the high-order DBIM is the ODE), got {eta}")
    ts = _check(bridge, x_T, ts, dbim_grid)
    noise = gaussian if noise is None else noise
    n = ts.shape[0] - 1
    dtype = x_T.dtype
    table = (jnp.arange(1, n + 1),
             *(jnp.asarray(v, dtype) for v in (ts[:-1], ts[1:], *_dbim_table(bridge, ts, eta, order))))
    a0, b0, c0 = bridge.abc(ts[0])
    x0_hat = _denoise(denoiser, x_T, jnp.asarray(bridge.t_max, dtype), x_T)
    x = _lin(jnp.asarray(a0, dtype), x_T) + _lin(jnp.asarray(b0, dtype), x0_hat)
    if boot_noise:
        z = _draw(noise, key, 0, jnp.asarray(bridge.T, dtype), jnp.asarray(ts[0], dtype), x)
        x = x + _lin(jnp.asarray(c0, dtype), z)

    def step(carry, row):
        x, d1, d2 = carry
        i, s, t, cx, cT, w0, w1, w2, sig = row
        d0 = _denoise(denoiser, x, s, x_T)
        x_new = _lin(cx, x) + _lin(cT, x_T) + _lin(w0, d0) + _lin(w1, d1) + _lin(w2, d2)
        if eta > 0:
            x_new = x_new + _lin(sig, _draw(noise, key, i, s, t, x))
        return (x_new, d0, d1), (x_new if return_trajectory else None)

    (x, _, _), traj = jax.lax.scan(step, (x, x0_hat, x0_hat), table)
    return _finish(x, traj, return_trajectory)
