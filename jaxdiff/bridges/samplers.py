"""Bridge samplers over ``denoiser(x_t, t, x_T) -> x0_hat``: DDBM's hybrid Heun and DBIM.

Both start from the source ``x_T`` (B, ...), walk a strictly decreasing grid ``ts`` (N+1,)
inside [0, T) and return the translated sample (B, ...). ``ts`` may also be an int N, meaning
the reference grid with N steps (``ddbm_grid`` / ``dbim_grid``); ``cosine_grid`` is denser at
both ends and markedly better for the high-order DBIM. When ``ts`` is concrete,
every per-step coefficient is computed on the host in float64 and the loop is a ``lax.scan``
over that table, so the samplers jit and vmap; the denoiser sees ``t`` as a scalar.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.bridges.process import _xp
from jaxdiff._checks import check_finite

Array = Any
Denoiser = Callable[[Array, Array, Array], Array]


def _check_output(x):
    """Return ``x``; outside tracing, raise instead of returning NaN or inf."""
    check_finite(x, "bridge sampler produced non-finite values: the denoiser returned NaN or inf, "
                    "or x_T is not finite")
    return x


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
    out = denoiser(x, t, x_T)
    if out.shape != x_T.shape:
        raise ValueError(f"denoiser returned shape {out.shape}, but x_T has shape {x_T.shape}")
    return out


def _need_key(key, why: str):
    if key is None:
        raise ValueError(f"key is required {why}")
    return key


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


def ddbm_heun(denoiser: Denoiser, x_T, ts, *, bridge, churn_step_ratio: float = 0.33,
              guidance: float = 1.0, key=None):
    """DDBM's hybrid sampler (Zhou et al. 2023, Alg. 1): per step a stochastic Euler step of the
    reverse bridge SDE from t_i to t̂ = t_i + r (t_{i+1} − t_i), then a Heun step of the
    probability-flow ODE from t̂ to t_{i+1} (Euler when t_{i+1} = 0). NFE = 3N − 1 on a grid
    ending at 0 (2N − 1 with r = 0). ``guidance`` scales the h-transform term.

    Args:
      x_T: (B, ...) source. ts: (N+1,) decreasing times in [0, T), or int N (``ddbm_grid``).
      bridge: a ``VPBridge``/``VEBridge``. key: required when churn_step_ratio > 0.
    Returns: (B, ...) samples.
    """
    if not 0.0 <= churn_step_ratio < 1.0:
        raise ValueError(f"churn_step_ratio must lie in [0, 1), got {churn_step_ratio}")
    ts = _check(bridge, x_T, ts, ddbm_grid)
    churn = churn_step_ratio > 0
    if churn:
        key = _need_key(key, "when churn_step_ratio > 0")
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
    table = [jnp.asarray(v, x_T.dtype) for v in (t_i, t_hat, t_next, *sde, *ode1[:3], *ode2[:3])]
    keys = jax.random.split(key, t_i.shape[0]) if churn else jnp.zeros((t_i.shape[0], 2), jnp.uint32)

    def drift(x, d, c):
        return _lin(c[0], x - x_T) + _lin(c[1], x_T) + _lin(c[2], d)

    def step(x, inp):
        k, (ti, th, tn, *c) = inp
        if churn:
            d = _denoise(denoiser, x, ti, x_T)
            z = jax.random.normal(k, x.shape, x.dtype)
            x = x + (th - ti) * drift(x, d, c[0:3]) + jnp.sqrt(ti - th) * c[3] * z
        d1 = drift(x, _denoise(denoiser, x, th, x_T), c[4:7])
        x_euler = x + (tn - th) * d1

        def heun(_):
            d2 = drift(x_euler, _denoise(denoiser, x_euler, tn, x_T), c[7:10])
            return x + (tn - th) * 0.5 * (d1 + d2)

        return jax.lax.cond(tn > 0, heun, lambda _: x_euler, None), None

    x, _ = jax.lax.scan(step, x_T, (keys, table))
    return _check_output(x)


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


def dbim_step(bridge, x_s, x0_hat, x_T, s, t, *, eta: float = 0.0, noise=None):
    """One first-order DBIM update of x_s (B, ...) from time s to t < s given x0_hat; ``noise``
    (like x_s) is needed when eta > 0. With the true x_0 it maps q(x_s | x_0, x_T) onto
    q(x_t | x_0, x_T)."""
    cx, cT, w0, omega = (jnp.asarray(v, x_s.dtype) for v in _first_order(bridge, float(s), float(t), eta))
    out = cx * x_s + cT * x_T + w0 * x0_hat
    return out + omega * noise if eta > 0 else out


def dbim(denoiser: Denoiser, x_T, ts, *, bridge, eta: float = 0.0, order: int = 1, key=None,
         boot_noise: bool = True):
    """DBIM (Zheng et al. 2024): the non-Markovian bridge sampler.

    Booting: x0_hat = D(x_T, t_max), x_{t_0} = a x_T + b x0_hat + c z (z = 0 if not
    ``boot_noise``: the pure ODE, which collapses to one sample per x_T). Then per step s → t,
    with ω = eta α_t ρ_t √(1 − ρ_t²/ρ_s²) and r = √(c_t² − ω²)/c_s:
    x_t = r x_s + (a_t − r a_s) x_T + (b_t − r b_s) x0_hat + ω z
    (eta = 1: the Markovian posterior; no noise on the last step).
    ``order`` 2/3 (eta = 0 only): multistep exponential integrators in λ = log(b/c), first order
    on the first and last steps. NFE = N + 1.

    Args:
      x_T: (B, ...) source. ts: (N+1,) decreasing times in [0, T), or int N (``dbim_grid``).
      bridge: a ``VPBridge``/``VEBridge``. key: required when eta > 0 or boot_noise.
    Returns: (B, ...) samples at t = ts[-1].
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    if order > 1 and eta != 0:
        raise ValueError(f"eta must be 0 for order {order} (the high-order DBIM is the ODE), got {eta}")
    ts = _check(bridge, x_T, ts, dbim_grid)
    noisy = eta > 0 or boot_noise
    if noisy:
        key = _need_key(key, "when eta > 0 or boot_noise=True")
        k_boot, k_steps = jax.random.split(key)
    n = ts.shape[0] - 1
    dtype = x_T.dtype
    table = tuple(jnp.asarray(v, dtype) for v in (ts[:-1], *_dbim_table(bridge, ts, eta, order)))
    a0, b0, c0 = bridge.abc(ts[0])
    x0_hat = _denoise(denoiser, x_T, jnp.asarray(bridge.t_max, dtype), x_T)
    x = _lin(jnp.asarray(a0, dtype), x_T) + _lin(jnp.asarray(b0, dtype), x0_hat)
    if boot_noise:
        x = x + _lin(jnp.asarray(c0, dtype), jax.random.normal(k_boot, x_T.shape, dtype))
    keys = jax.random.split(k_steps, n) if eta > 0 else jnp.zeros((n, 2), jnp.uint32)

    def step(carry, inp):
        x, d1, d2 = carry
        k, (s, cx, cT, w0, w1, w2, sig) = inp
        d0 = _denoise(denoiser, x, s, x_T)
        x_new = _lin(cx, x) + _lin(cT, x_T) + _lin(w0, d0) + _lin(w1, d1) + _lin(w2, d2)
        if eta > 0:
            x_new = x_new + _lin(sig, jax.random.normal(k, x.shape, x.dtype))
        return (x_new, d0, d1), None

    (x, _, _), _ = jax.lax.scan(step, (x, x0_hat, x0_hat), (keys, table))
    return _check_output(x)
