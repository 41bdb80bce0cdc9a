"""Fixed-step solvers for ``dX = f(X, t) dt + g(X, t) dW`` as a ``lax.scan``.

``x`` is an array or a pytree; ``f(x, t)`` and ``g(x, t)`` return the same structure and
shapes as ``x``. Noise is diagonal (each step's ``dW`` has the structure of ``x``, and
``g_i`` depends on ``x`` only through ``x_i`` for Milstein) or scalar (each step's ``dW``
is one array broadcast against every leaf of ``g``, e.g. shape ``()``). Additive noise:
``g`` ignores ``x``. A batch of paths is a ``jax.vmap`` over ``x0`` and the noise.

Strong orders: ``euler_maruyama`` 0.5 (1 for additive noise), ``milstein`` /
``milstein_stratonovich`` / ``stochastic_heun`` 1 (commutative noise; the latter two solve
the Stratonovich SDE), ``sra1`` 1.5 (additive noise, needs the Lévy area ``H``).
``weak2`` (scalar noise) has weak order 2; Euler–Maruyama weak order 1.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxdiff._checks import check_finite
from jaxdiff.sdeint.brownian import VirtualBrownianTree, check_grid

__all__ = [
    "Solver",
    "euler_maruyama",
    "milstein",
    "milstein_stratonovich",
    "stochastic_heun",
    "sra1",
    "weak2",
    "sdeint",
    "time_grid",
]


@dataclasses.dataclass(frozen=True)
class Solver:
    """One step ``step(f, g, x, t, dt, dw, hh) -> x_next``; ``hh`` is the space-time Lévy area.

    ``calculus`` is "ito" or "stratonovich"; ``levy_area`` says whether ``hh`` is used;
    ``drift_evals`` counts the evaluations of ``f`` (values or derivatives) per step.
    """

    name: str
    step: Callable
    calculus: str
    levy_area: bool = False
    drift_evals: int = 1


def _axpy(a, x, y):
    """``y + a * x`` leafwise (``a`` a scalar)."""
    return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


def _times_noise(g, dw):
    """``g ⊙ dW``: leafwise for diagonal noise, broadcast for one scalar-noise array."""
    if jax.tree.structure(dw) == jax.tree.structure(g):
        return jax.tree.map(lambda gi, wi: gi * wi, g, dw)
    return jax.tree.map(lambda gi: gi * dw, g)


def _add(*trees):
    return jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *trees)


def _em_step(f, g, x, t, dt, dw, hh=None):
    return _add(_axpy(dt, f(x, t), x), _times_noise(g(x, t), dw))


def _milstein_step(f, g, x, t, dt, dw, hh=None, *, ito: bool):
    gx, dg_g = jax.jvp(lambda y: g(y, t), (x,), (g(x, t),))  # (g · ∇) g
    sq = jax.tree.map(lambda w: w * w - (dt if ito else 0), dw)
    corr = jax.tree.map(lambda a: 0.5 * a, _times_noise(dg_g, sq))
    return _add(_axpy(dt, f(x, t), x), _times_noise(gx, dw), corr)


def _heun_step(f, g, x, t, dt, dw, hh=None):
    fx, gx = f(x, t), g(x, t)
    xp = _add(_axpy(dt, fx, x), _times_noise(gx, dw))
    t1 = t + dt
    drift = jax.tree.map(lambda a, b: 0.5 * dt * (a + b), fx, f(xp, t1))
    noise = _times_noise(jax.tree.map(lambda a, b: 0.5 * (a + b), gx, g(xp, t1)), dw)
    return _add(x, drift, noise)


def _sra1_step(f, g, x, t, dt, dw, hh):
    # Rößler (2010) SRA1: I10 / h = dW / 2 + H; g is evaluated at c1 = (1, 0).
    i10 = jax.tree.map(lambda w, a: 0.5 * w + a, dw, hh)
    f1, g1, g2 = f(x, t), g(x, t + dt), g(x, t)
    x2 = _add(_axpy(0.75 * dt, f1, x), _times_noise(g1, jax.tree.map(lambda a: 1.5 * a, i10)))
    f2 = f(x2, t + 0.75 * dt)
    drift = jax.tree.map(lambda a, b: dt * (a / 3 + 2 * b / 3), f1, f2)
    noise = _add(_times_noise(g1, jax.tree.map(lambda w, a: w - a, dw, i10)), _times_noise(g2, i10))
    return _add(x, drift, noise)


def _weak2_step(f, g, x, t, dt, dw, hh=None):
    # Simplified order-2.0 weak Taylor scheme (Kloeden & Platen 14.2.1), Itô, scalar noise.
    wl = jax.tree.leaves(dw)
    if len(wl) != 1 or jnp.ndim(wl[0]):
        raise ValueError("bm must be scalar noise (one () increment per step) for weak2")
    dw = wl[0]
    fx, gx = f(x, t), g(x, t)

    def l0(fn):  # ∂t fn + (f·∇) fn + ½ D²fn[g, g]
        t_ = jnp.asarray(t, jnp.result_type(t, float))
        first = jax.jvp(fn, (x, t_), (fx, jnp.ones_like(t_)))[1]
        d2 = jax.jvp(lambda y: jax.jvp(lambda z: fn(z, t), (y,), (gx,))[1], (x,), (gx,))[1]
        return _add(first, jax.tree.map(lambda a: 0.5 * a, d2))

    l1a = jax.jvp(lambda y: f(y, t), (x,), (gx,))[1]
    l1b = jax.jvp(lambda y: g(y, t), (x,), (gx,))[1]
    terms = [
        _axpy(dt, fx, x),
        _times_noise(gx, dw),
        jax.tree.map(lambda a: 0.5 * a * (dw * dw - dt), l1b),
        jax.tree.map(lambda a, b: 0.5 * (a + b) * dw * dt, l1a, l0(g)),
        jax.tree.map(lambda a: 0.5 * a * dt * dt, l0(f)),
    ]
    return _add(*terms)


euler_maruyama = Solver("euler_maruyama", _em_step, "ito")
milstein = Solver("milstein", lambda *a: _milstein_step(*a, ito=True), "ito")
milstein_stratonovich = Solver("milstein_stratonovich", lambda *a: _milstein_step(*a, ito=False), "stratonovich")
stochastic_heun = Solver("stochastic_heun", _heun_step, "stratonovich", drift_evals=2)
sra1 = Solver("sra1", _sra1_step, "ito", levy_area=True, drift_evals=2)
weak2 = Solver("weak2", _weak2_step, "ito", drift_evals=4)


def time_grid(t0, t1, dt):
    """Uniform grid from ``t0`` to ``t1`` with step ``dt`` (the last step is ``t1``): shape (n + 1,)."""
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    if not t1 > t0:
        raise ValueError(f"t1 must be > t0, got t0={t0}, t1={t1}")
    n = max(1, round((t1 - t0) / dt))
    return jnp.linspace(t0, t1, n + 1)


def _broadcasts(w, x):
    try:
        return jnp.broadcast_shapes(w, x) == x
    except ValueError:
        return False


def _check_noise(x0, dw, n_steps, name):
    xl, wl = jax.tree.leaves(x0), jax.tree.leaves(dw)
    for shape in map(jnp.shape, wl):
        if shape[:1] != (n_steps,):
            raise ValueError(f"{name} must have a leading step axis of length len(ts) - 1 = {n_steps}, got {shape}")
    if jax.tree.structure(dw) == jax.tree.structure(x0):
        pairs = [(jnp.shape(w)[1:], jnp.shape(x)) for w, x in zip(wl, xl)]
        bad = [(w, x) for w, x in pairs if w not in ((), x)]
    elif len(wl) == 1:
        w = jnp.shape(wl[0])[1:]
        bad = [(w, jnp.shape(x)) for x in xl if not _broadcasts(w, jnp.shape(x))]
    else:
        bad = [(jax.tree.structure(dw), jax.tree.structure(x0))]
    if bad:
        got, want = bad[0]
        raise ValueError(f"{name} per-step shape must be x0's (diagonal) or broadcast to it (scalar): {got} vs {want}")


def _check_field(fn, name, x0, t0):
    out = jax.eval_shape(fn, x0, t0)
    want = jax.tree.map(lambda x: jnp.shape(x), x0)
    got = jax.tree.map(lambda o: o.shape, out)
    if jax.tree.structure(out) != jax.tree.structure(x0) or got != want:
        raise ValueError(f"{name}(x, t) must return the structure and shapes of x0 {want}, got {got}")


def _check_finite_tree(tree, message):
    """``check_finite`` on every leaf (a no-op for traced leaves)."""
    for leaf in jax.tree.leaves(tree):
        check_finite(leaf, message)


def _is_key(bm):
    return isinstance(bm, jax.Array) and jnp.issubdtype(bm.dtype, jax.dtypes.prng_key)


def _draw_block(key, x0, dts, levy_area):
    """Diagonal-noise ``dW`` (and ``H``) for ``k`` steps of sizes ``dts`` (k,), one draw per leaf:
    leaves of shape ``(k, *x.shape)``, from ``key``."""
    leaves, treedef = jax.tree.flatten(x0)
    keys = [jax.random.fold_in(key, j) for j in range(len(leaves))] if len(leaves) > 1 else [key]
    rows = 2 if levy_area else 1
    dw, hh = [], []
    for k, x in zip(keys, leaves):
        dtype = jnp.result_type(x, float)
        z = jax.random.normal(k, (rows, dts.shape[0], *jnp.shape(x)), dtype)
        h = jnp.reshape(dts, (-1,) + (1,) * jnp.ndim(x)).astype(dtype)
        dw.append(jnp.sqrt(h) * z[0])
        hh.append(jnp.sqrt(h / 12) * z[1] if levy_area else None)
    return treedef.unflatten(dw), (treedef.unflatten(hh) if levy_area else None)


def sdeint(solver: Solver, f, g, x0, ts, bm, *, save_all: bool = False, noise_block: int | None = None):
    """Solve ``dX = f dt + g dW`` on the grid ``ts`` (n,) from ``x0`` at ``ts[0]``.

    ``bm`` is the noise: increments ``dW`` with leading axis ``n - 1`` (pytree like ``x0`` or
    one scalar-noise array), ``(dW, H)`` for solvers with ``levy_area``, a
    ``VirtualBrownianTree`` (queried on ``ts``), or a typed PRNG key (``jax.random.key``):
    diagonal noise drawn inside the scan, ``noise_block`` steps at a time from
    ``fold_in(key, block)`` (only one block is ever materialised; the fastest for one-off
    paths: one draw per block amortises the generator's per-call cost; by default
    ``max(1, 16 // x0.size)`` steps, which measured best for 1-D and 64-D paths). Returns ``X(ts[-1])``, or with
    ``save_all`` every ``X(ts[k])`` stacked along a new leading axis of length ``n``.
    Concrete (not traced) ``x0`` or ``bm`` holding NaN or inf, or a non-finite result, raise
    ``ValueError``.
    """
    check_grid(ts)
    _check_finite_tree(x0, "x0 must be finite (no NaN or inf)")
    ts = jnp.asarray(ts)
    n = ts.shape[0] - 1
    _check_field(f, "f", x0, ts[0])
    _check_field(g, "g", x0, ts[0])
    if _is_key(bm):
        if noise_block is None:
            noise_block = max(1, 16 // max(1, sum(int(jnp.size(x)) for x in jax.tree.leaves(x0))))
        if not (isinstance(noise_block, int) and noise_block >= 1):
            raise ValueError(f"noise_block must be an int >= 1, got {noise_block!r}")
        return _sdeint_key(solver, f, g, x0, ts, bm, save_all, min(noise_block, n))
    if isinstance(bm, VirtualBrownianTree):
        if solver.levy_area and not bm.levy_area:
            raise ValueError(f"bm must be a VirtualBrownianTree with levy_area=True for {solver.name}")
        bm = bm.grid_increments(ts) if solver.levy_area or not bm.levy_area else bm.grid_increments(ts)[0]
    if solver.levy_area:
        if not (isinstance(bm, tuple) and len(bm) == 2):
            raise ValueError(f"bm must be a pair (dW, H) for {solver.name}, which needs the space-time Lévy area")
        _check_noise(x0, bm[1], n, "bm (H)")
        noise = bm
    else:
        noise = (bm, None)
    _check_noise(x0, noise[0], n, "bm")
    _check_finite_tree(noise, "bm must be finite (no NaN or inf)")

    def body(x, inp):
        t, dt, (w, a) = inp
        x = solver.step(f, g, x, t, dt, w, a)
        return x, (x if save_all else None)

    x, xs = jax.lax.scan(body, x0, (ts[:-1], jnp.diff(ts), noise))
    return _finish(x0, x, xs, save_all)


def _sdeint_key(solver, f, g, x0, ts, key, save_all, block):
    """``sdeint`` with noise drawn ``block`` steps at a time: an outer scan over blocks, an
    inner scan over the steps of a block, and one shorter block for the remainder."""
    n = ts.shape[0] - 1
    t, dt = ts[:-1], jnp.diff(ts)

    def run_block(x, b, tb, dtb):
        noise = _draw_block(jax.random.fold_in(key, b), x0, dtb, solver.levy_area)

        def body(x, inp):
            ti, dti, (w, a) = inp
            x = solver.step(f, g, x, ti, dti, w, a)
            return x, (x if save_all else None)

        return jax.lax.scan(body, x, (tb, dtb, noise))

    full, rest = divmod(n, block)
    m = full * block
    x, xs = jax.lax.scan(
        lambda x, inp: run_block(x, *inp), x0,
        (jnp.arange(full), t[:m].reshape(full, block), dt[:m].reshape(full, block)),
    )
    if save_all:
        xs = jax.tree.map(lambda a: a.reshape((m, *a.shape[2:])), xs)
    if rest:
        x, tail = run_block(x, full, t[m:], dt[m:])
        if save_all:
            xs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), xs, tail)
    return _finish(x0, x, xs, save_all)


def _finish(x0, x, xs, save_all):
    _check_finite_tree(x, "sdeint produced non-finite values: f or g returned NaN or inf, or the path "
                          "blew up (try a smaller step)")
    if save_all:
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), x0, xs)
    return x
