"""Brownian motion: increments on a grid, bridge refinement, a virtual Brownian tree.

Space-time Lévy area: over a step ``[s, s + h]`` with increment ``dW``,
``H = (1/h) ∫_s^{s+h} (W_u - W_s) du - dW / 2`` is ``N(0, h/12)`` and independent of
``dW``; ``∫_s^{s+h} (W_u - W_s) du = h (dW/2 + H)`` is the integral the strong-order-1.5
additive-noise schemes need.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_grid", "increments", "coarsen", "refine", "VirtualBrownianTree"]


def check_grid(ts, name: str = "ts") -> None:
    """Raise ``ValueError`` unless ``ts`` is 1-D, has >= 2 points and (if concrete) is finite and
    strictly increases."""
    if jnp.ndim(ts) != 1 or jnp.shape(ts)[0] < 2:
        raise ValueError(f"{name} must be a 1-D time grid with at least 2 points, got shape {jnp.shape(ts)}")
    try:
        v = np.asarray(ts)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return  # traced: checked by the caller's concrete grid, if any
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    dt = np.diff(v)
    if not np.all(dt > 0):
        k = int(np.argmax(dt <= 0))
        raise ValueError(f"{name} must be strictly increasing (dt <= 0 between ts[{k}] and ts[{k + 1}])")


def increments(key, ts, shape=(), dtype=None, *, levy_area: bool = False):
    """Independent Brownian increments on the grid ``ts`` (n,).

    Returns ``dW`` of shape ``(n - 1, *shape)`` with ``Var dW_k = ts[k+1] - ts[k]``, and
    with ``levy_area=True`` the pair ``(dW, H)``, ``H_k ~ N(0, dt_k / 12)`` independent.
    """
    check_grid(ts)
    dtype = dtype or jnp.result_type(float)
    ts = jnp.asarray(ts, dtype)
    dt = jnp.diff(ts).reshape((-1,) + (1,) * len(shape))
    z = jax.random.normal(key, (2 if levy_area else 1, ts.shape[0] - 1, *shape), dtype)
    dw = jnp.sqrt(dt) * z[0]
    return (dw, jnp.sqrt(dt / 12) * z[1]) if levy_area else dw


@functools.partial(jax.jit, static_argnames="factor")
def coarsen(ts, dw, hh=None, *, factor: int):
    """Exactly combine ``factor`` consecutive steps: ``ts`` (n,), ``dw``/``hh`` (n - 1, ...).

    Returns ``(ts[::factor], dW_coarse)`` or, with ``hh``, ``(ts_coarse, dW_coarse, H_coarse)``;
    the coarse ``H`` is the space-time Lévy area of the same path over each coarse step.
    """
    n = dw.shape[0]
    if factor < 1 or n % factor:
        raise ValueError(f"factor must divide the number of steps {n}, got {factor}")
    ts = jnp.asarray(ts)
    tail = dw.shape[1:]
    bshape = (-1, factor) + (1,) * len(tail)
    dws = dw.reshape((-1, factor) + tail)
    dw_c = dws.sum(1)
    if hh is None:
        return ts[::factor], dw_c
    dt = jnp.diff(ts).reshape(bshape).astype(dw.dtype)
    before = jnp.cumsum(dws, 1) - dws  # W at each sub-step start minus W at the coarse start
    area = jnp.sum(dt * (before + dws / 2 + hh.reshape(dws.shape)), 1)
    h = dt.sum(1)
    return ts[::factor], dw_c, area / h - dw_c / 2


def refine(key, ts, w):
    """Brownian-bridge refinement: halve every step of a path ``w`` (n, ...) on ``ts`` (n,).

    Returns ``(ts_fine, w_fine)`` of shapes (2n - 1,) and (2n - 1, ...); the old points are kept.
    """
    check_grid(ts)
    ts, w = jnp.asarray(ts), jnp.asarray(w)
    dt = jnp.diff(ts).reshape((-1,) + (1,) * (w.ndim - 1)).astype(w.dtype)
    mid = 0.5 * (w[1:] + w[:-1]) + jnp.sqrt(dt / 4) * jax.random.normal(key, w[1:].shape, w.dtype)
    w_fine = jnp.concatenate([jnp.stack([w[:-1], mid], 1).reshape((-1,) + w.shape[1:]), w[-1:]])
    ts_fine = jnp.concatenate([jnp.stack([ts[:-1], 0.5 * (ts[1:] + ts[:-1])], 1).reshape(-1), ts[-1:]])
    return ts_fine, w_fine


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["key"],
    meta_fields=["t0", "t1", "shape", "tol", "depth", "levy_area", "dtype"],
)
@dataclasses.dataclass(frozen=True)
class VirtualBrownianTree:
    """Brownian motion on ``[t0, t1]`` as a pure function of ``(key, t)``: same key, same path.

    ``depth`` bisections (or ``depth = ceil(log2((t1 - t0) / tol))``, at most 30) of
    ``[t0, t1]``; node ``i`` of level ``l`` draws its midpoint from ``fold_in(key, 2**l + i)``
    (its heap number, a pure function of its place in the tree). With ``levy_area`` every
    node also carries the space-time Lévy area ``H`` and splits ``(W, H)`` jointly. Inside a
    leaf (width ``(t1 - t0) / 2**depth``, the resolution) ``W`` is interpolated: the
    conditional mean given the leaf's ``(dW, H)`` (quadratic), else linear; so steps below
    the resolution have too little variance. Values at any time are the same whatever else
    is queried, in any order, and increments over any grid sum exactly. ``shape`` is the
    shape of ``W(t)``, e.g. ``(n_paths, d)``. A pytree (leaf: ``key``), so it passes through
    ``jit``/``vmap``; queries are jitted, and a whole grid shares the top levels' draws.
    """

    t0: float
    t1: float
    key: jax.Array
    shape: tuple[int, ...] = ()
    tol: float | None = None
    depth: int | None = None
    levy_area: bool = False
    dtype: object = None

    def __post_init__(self):
        if not float(self.t1) > float(self.t0):
            raise ValueError(f"t1 must be > t0, got t0={self.t0}, t1={self.t1}")
        if self.depth is None:
            if self.tol is None or not self.tol > 0:
                raise ValueError(f"give tol > 0 or depth >= 0, got tol={self.tol}, depth={self.depth}")
            object.__setattr__(self, "depth", max(0, math.ceil(math.log2((self.t1 - self.t0) / self.tol))))
        if not isinstance(self.depth, int) or not 0 <= self.depth <= 30:
            raise ValueError(f"depth must be an int in [0, 30] (or tol > (t1 - t0) / 2**30), got {self.depth!r}")
        object.__setattr__(self, "t0", float(self.t0))
        object.__setattr__(self, "t1", float(self.t1))
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "dtype", jnp.dtype(self.dtype or jnp.result_type(float)))

    def _query(self, t):
        """``(W(t), ∫_{t0}^t W du)`` for times ``t`` of any shape."""
        return _query(self, jnp.asarray(t, self.dtype))

    def evaluate(self, t):
        """``W(t)`` for times ``t`` of any shape: output ``t.shape + shape`` (``W(t0) = 0``)."""
        return self._query(t)[0]

    def increment(self, s, t):
        """``W(t) - W(s)``, or ``(dW, H)`` over ``[s, t]`` with ``levy_area``; ``s``/``t`` same shape."""
        s, t = jnp.asarray(s, self.dtype), jnp.asarray(t, self.dtype)
        w, i = self._query(jnp.stack([s, t]))
        dw = w[1] - w[0]
        if not self.levy_area:
            return dw
        h = (t - s).reshape(t.shape + (1,) * len(self.shape))
        return dw, (i[1] - i[0] - h * w[0]) / h - dw / 2

    def grid_increments(self, ts):
        """Increments over consecutive points of ``ts`` (n,): ``dW`` (n - 1, *shape), plus ``H`` with ``levy_area``."""
        check_grid(ts)
        ts = jnp.asarray(ts, self.dtype)
        w, i = self._query(ts)
        dw = jnp.diff(w, axis=0)
        if not self.levy_area:
            return dw
        h = jnp.diff(ts).reshape((-1,) + (1,) * len(self.shape))
        return dw, (jnp.diff(i, axis=0) - h * w[:-1]) / h - dw / 2

    # -- internals -------------------------------------------------------------------------

    def _draws(self, ids):
        """Standard normals of node heap numbers ``ids`` (n,): (n, 1 or 2, *shape)."""
        k = 2 if self.levy_area else 1
        keys = jax.vmap(lambda i: jax.random.fold_in(self.key, i))(ids)
        return jax.vmap(lambda key: jax.random.normal(key, (k, *self.shape), self.dtype))(keys)

    def _split(self, state, z, h):
        """Children ``(left, right)`` of nodes ``state = (wa, w, hh, ia)`` of length ``h``, draws ``z``."""
        wa, w, hh, ia = state
        if self.levy_area:
            u = 3 * hh + 0.5 * jnp.sqrt(h) * z[:, 0]  # W_left - W_right given H
            v = 2 * hh - 0.5 * u  # H_left + H_right
            d = jnp.sqrt(h / 12) * z[:, 1]  # H_left - H_right
            w1, h1, w2, h2 = 0.5 * (w + u), 0.5 * (v + d), 0.5 * (w - u), 0.5 * (v - d)
        else:
            w1 = 0.5 * w + 0.5 * jnp.sqrt(h) * z[:, 0]
            w2, h1, h2 = w - w1, hh, hh
        return (wa, w1, h1, ia), (wa + w1, w2, h2, ia + 0.5 * h * (wa + 0.5 * w1 + h1))

    def _descend(self, state, target, levels):
        """Walk ``state`` (n, *shape) down ``levels`` towards the leaves ``target`` (n,)."""
        half_shape = (-1,) + (1,) * len(self.shape)

        def body(st, level):
            z = self._draws((1 << level) + (target >> (self.depth - level)))
            right = ((target >> (self.depth - level - 1)) & 1).reshape(half_shape) == 1
            h = (self.t1 - self.t0) * jnp.exp2(-level.astype(self.dtype))
            left, right_child = self._split(st, z, h)
            return jax.tree.map(lambda r, l: jnp.where(right, r, l), right_child, left), None

        return jax.lax.scan(body, state, jnp.asarray(levels, jnp.int32))[0]

    def _query_impl(self, t):
        flat = t.reshape(-1)
        depth, span, n = self.depth, self.t1 - self.t0, t.size
        leaf = jnp.clip(jnp.floor((flat - self.t0) / span * 2**depth), 0, 2**depth - 1).astype(jnp.int32)
        # The top ``dense`` levels are built whole (2**dense - 1 nodes, drawn in one go; node
        # ``i`` of level ``l`` uses ``fold_in(key, 2**l + i)``), deeper nodes per query.
        cap = max(0, int(math.log2(max(1, 2**24 // max(1, math.prod(self.shape))))))
        dense = min(range(min(depth, cap) + 1), key=lambda d: 1.5 * 2**d + n * (depth - d))
        root_z = jax.random.normal(jax.random.fold_in(self.key, 0), (2, *self.shape), self.dtype)
        zero = jnp.zeros((1, *self.shape), self.dtype)
        w = math.sqrt(span) * root_z[0][None]
        hh = math.sqrt(span / 12) * root_z[1][None] if self.levy_area else zero
        state = (zero, w, hh, zero)
        top = self._draws(jnp.arange(1, 2**dense)) if dense else None
        for level in range(dense):
            z = top[2**level - 1 : 2 ** (level + 1) - 1]
            kids = self._split(state, z, jnp.asarray(span / 2**level, self.dtype))
            state = jax.tree.map(lambda l, r: jnp.stack([l, r], 1).reshape((-1, *self.shape)), *kids)
        state = jax.tree.map(lambda a: a[leaf >> (depth - dense)], state)
        wa, w, hh, ia = self._descend(state, leaf, range(dense, depth))
        h = span / 2**depth
        tau = ((flat - self.t0 - leaf.astype(self.dtype) * h) / h).clip(0, 1).reshape((-1,) + (1,) * len(self.shape))
        bump = 6 * tau * (1 - tau) * hh if self.levy_area else 0
        w_t = wa + tau * w + bump
        i_t = ia + h * (tau * wa + 0.5 * tau**2 * w + 6 * (tau**2 / 2 - tau**3 / 3) * hh)
        out = t.shape + self.shape
        return w_t.reshape(out), i_t.reshape(out)


_query = jax.jit(VirtualBrownianTree._query_impl)
