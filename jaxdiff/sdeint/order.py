"""Empirical convergence orders: errors at several step sizes on shared Brownian paths.

Every step size sees the same paths: fine increments (and Lévy areas) are drawn once and
combined exactly ([`coarsen`][jaxdiff.sdeint.brownian.coarsen]); the reference is an exact
solution of the fine path or the same solver on the fine grid.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.sdeint.brownian import coarsen, increments
from jaxdiff.sdeint.integrals import path
from jaxdiff.sdeint.solvers import Solver, sdeint

__all__ = ["OrderFit", "fit_order", "simulate", "strong_order", "weak_order", "plot_order"]


@dataclasses.dataclass(frozen=True)
class OrderFit:
    """Fitted slope of log(error) against log(step): ``order``, OLS ``stderr``, bootstrap ``ci``."""

    order: float
    stderr: float
    ci: tuple[float, float]
    steps: np.ndarray
    errors: np.ndarray


def _slope(log_h, log_e):
    a = np.vstack([log_h, np.ones_like(log_h)]).T
    coef, res, *_ = np.linalg.lstsq(a, log_e, rcond=None)
    n = log_h.size
    resid = log_e - a @ coef
    se = np.sqrt(resid @ resid / max(n - 2, 1) / np.sum((log_h - log_h.mean()) ** 2))
    return coef[0], se


def fit_order(hs, samples, *, kind: str = "strong", n_boot: int = 500, level: float = 0.95, seed: int = 0):
    """Order from per-path ``samples`` (n_h, n_paths) at step sizes ``hs`` (n_h,).

    ``kind="strong"``: samples are non-negative errors and the error is their mean;
    ``kind="weak"``: samples are signed differences and the error is ``|mean|``. The CI is a
    paired bootstrap over paths (percentile, ``level``).
    """
    if kind not in ("strong", "weak"):
        raise ValueError(f"kind must be 'strong' or 'weak', got {kind!r}")
    hs, s = np.asarray(hs, np.float64), np.asarray(samples, np.float64)
    if s.ndim != 2 or s.shape[0] != hs.shape[0]:
        raise ValueError(f"samples must have shape (len(hs), n_paths) = ({hs.shape[0]}, n), got {s.shape}")
    err = lambda m: m if kind == "strong" else np.abs(m)  # noqa: E731
    errors = err(s.mean(1))
    order, se = _slope(np.log(hs), np.log(errors))
    idx = np.random.default_rng(seed).integers(0, s.shape[1], (n_boot, s.shape[1]))
    boot = [_slope(np.log(hs), np.log(err(s[:, i].mean(1))))[0] for i in idx]
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return OrderFit(float(order), float(se), (float(lo), float(hi)), hs, errors)


def simulate(solver: Solver, f, g, x0, t1, key, *, n_paths, steps, n_fine, noise_shape=None, exact=None, t0=0.0):
    """Solve ``n_paths`` paths at each step count in ``steps`` and a reference on the fine grid.

    ``n_fine`` must be a multiple of every step count; ``noise_shape`` is one step's ``dW``
    shape per path (default: ``x0``'s shape, diagonal noise; ``()`` for scalar noise).
    ``exact(ts, w)`` maps the fine grid (n_fine + 1,) and a path (n_fine + 1, *noise_shape)
    to ``X(t1)``; without it the reference is ``solver`` on the fine grid. Returns
    ``(hs, xs, ref)``: hs (n_h,), xs a list of (n_paths, ...) pytrees, ref (n_paths, ...).
    """
    if any(n_fine % m for m in steps):
        raise ValueError(f"n_fine={n_fine} must be a multiple of every step count in steps={steps}")
    noise_shape = jnp.shape(x0) if noise_shape is None else tuple(noise_shape)
    ts = jnp.linspace(t0, t1, n_fine + 1)
    noise = increments(key, ts, (n_paths, *noise_shape), levy_area=solver.levy_area)
    noise = noise if solver.levy_area else (noise,)

    @functools.partial(jax.jit, static_argnames="factor")
    def solve(noise, factor):
        ts_c, *bm = coarsen(ts, *noise, factor=factor)
        bm = tuple(bm) if solver.levy_area else bm[0]
        return jax.vmap(lambda b: sdeint(solver, f, g, x0, ts_c, b), in_axes=(1,))(bm)

    xs = [solve(noise, n_fine // m) for m in steps]
    if exact is None:
        ref = solve(noise, 1)
    else:
        ref = jax.vmap(lambda w: exact(ts, w), in_axes=1)(path(noise[0]))
    hs = np.array([(t1 - t0) / m for m in steps])
    return hs, xs, ref


def _per_path_norm(x, ref):
    sq = [jnp.reshape((a - b) ** 2, (a.shape[0], -1)).sum(1) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(ref))]
    return jnp.sqrt(sum(sq))


def strong_order(solver: Solver, f, g, x0, t1, key, **kw):
    """Strong order: ``E|X_h(t1) - X(t1)|`` per step size (keywords of [`simulate`][], plus ``fit_kw``)."""
    fit_kw = kw.pop("fit_kw", {})
    hs, xs, ref = simulate(solver, f, g, x0, t1, key, **kw)
    return fit_order(hs, np.stack([np.asarray(_per_path_norm(x, ref)) for x in xs]), kind="strong", **fit_kw)


def weak_order(solver: Solver, f, g, x0, t1, key, *, phi=lambda x: x, **kw):
    """Weak order: ``|E φ(X_h(t1)) - E φ(X(t1))|`` with ``φ: state -> scalar``.

    Estimated as ``mean(φ(X_h) - φ(X_ref))`` on the same paths: with an exact reference it
    has the same expectation and far less variance than two independent means.
    """
    fit_kw = kw.pop("fit_kw", {})
    hs, xs, ref = simulate(solver, f, g, x0, t1, key, **kw)
    d = [np.asarray(jax.vmap(phi)(x) - jax.vmap(phi)(ref)) for x in xs]
    return fit_order(hs, np.stack(d), kind="weak", **fit_kw)


def plot_order(fits: dict, ax=None):
    """Log-log plot of error against step size for ``{label: OrderFit}``; returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(4, 3))[1]
    for label, fit in fits.items():
        ax.loglog(fit.steps, fit.errors, "o-", label=f"{label}: {fit.order:.2f} [{fit.ci[0]:.2f}, {fit.ci[1]:.2f}]")
    ax.set_xlabel("step size h")
    ax.set_ylabel("error")
    ax.legend(fontsize="small")
    return ax
