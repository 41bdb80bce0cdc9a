"""Itô and Stratonovich integrals of a sampled path, and the drift that converts between them."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "path",
    "quadratic_variation",
    "ito_integral",
    "stratonovich_integral",
    "ito_to_stratonovich_drift",
    "stratonovich_to_ito_drift",
]


def path(dw, w0=0.0):
    """The path ``W`` (n + 1, ...) on the grid from its increments ``dw`` (n, ...), ``W_0 = w0``."""
    dw = jnp.asarray(dw)
    return jnp.concatenate([jnp.zeros_like(dw[:1]) + w0, w0 + jnp.cumsum(dw, 0)])


def quadratic_variation(w):
    """Running ``Σ (ΔW)²`` of a path ``w`` (n + 1, ...): shape (n + 1, ...), starting at 0."""
    return path(jnp.diff(jnp.asarray(w), axis=0) ** 2)


def ito_integral(h, w):
    """Running Itô integral ``∫ h(W) dW ≈ Σ h(W_k) ΔW_k`` of a path ``w`` (n + 1, ...): (n + 1, ...).

    ``h`` maps ``W`` elementwise (arrays of the path's shape).
    """
    w = jnp.asarray(w)
    return path(h(w[:-1]) * jnp.diff(w, axis=0))


def stratonovich_integral(h, w):
    """Running Stratonovich integral ``Σ ½(h(W_k) + h(W_{k+1})) ΔW_k`` of ``w`` (n + 1, ...)."""
    w = jnp.asarray(w)
    hw = h(w)
    return path(0.5 * (hw[:-1] + hw[1:]) * jnp.diff(w, axis=0))


def _half_g_dg(g, x, t):
    _, dg_g = jax.jvp(lambda y: g(y, t), (x,), (g(x, t),))
    return jax.tree.map(lambda a: 0.5 * a, dg_g)


def ito_to_stratonovich_drift(f, g):
    """Drift ``f - ½ (g·∇)g`` of the Stratonovich SDE with the Itô SDE ``(f, g)``'s solutions.

    Diagonal (``g_i`` a function of ``x_i``) or scalar noise; ``f, g: (x, t) -> like x``.
    """
    return lambda x, t: jax.tree.map(jnp.subtract, f(x, t), _half_g_dg(g, x, t))


def stratonovich_to_ito_drift(f, g):
    """Drift ``f + ½ (g·∇)g`` of the Itô SDE equivalent to the Stratonovich SDE ``(f, g)``."""
    return lambda x, t: jax.tree.map(jnp.add, f(x, t), _half_g_dg(g, x, t))
