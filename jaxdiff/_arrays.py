"""Array helpers shared across jaxdiff."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def bcast(c, x):
    """Reshape a coefficient of shape ``()`` or ``(B,)`` to broadcast against ``x`` of shape ``(B, ...)``."""
    return jnp.reshape(c, jnp.shape(c) + (1,) * (jnp.ndim(x) - jnp.ndim(c)))


def concrete(a) -> np.ndarray | None:
    """``a`` as a NumPy array, or None while it is traced (checks on values then pass)."""
    try:
        return np.asarray(a)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def after(x, *values):
    """``values`` unchanged, but in XLA computed only once ``x`` exists: each plus ``0 · x[0]`` (0 where
    that is not finite, so a NaN in ``x`` changes nothing).

    Samplers pass their noise level through it to every denoiser call, so no two calls run at once:
    on the CPU (jaxlib 0.10) two batched LAPACK kernels (``inv``, ``solve``, ``cholesky``, ...) running
    together can deadlock the intra-op thread pool, and a denoiser's σ-only work would otherwise start
    before the state it belongs to. XLA folds neither the product nor the select; with ``x`` sharded
    over its batch, the tie costs one scalar all-reduce per call.
    """
    zero = 0 * jnp.sum(jnp.ravel(x)[:1])
    zero = jnp.where(jnp.isfinite(zero), zero, 0)
    out = tuple(v + zero.astype(jnp.result_type(v)) for v in values)
    return out[0] if len(out) == 1 else out


def in_chunks(fn, *arrays, chunk: int):
    """``fn(*parts)`` over consecutive ``chunk``-row parts of ``arrays`` (each (N, ...)), the last part
    padded with copies of its first row so a jitted ``fn`` compiles once; its outputs (a tuple, or one
    array, of (chunk, ...) arrays) are cut back to N rows and concatenated as NumPy arrays."""
    outs = []
    for s in range(0, len(arrays[0]), chunk):
        part = [np.asarray(a[s:s + chunk]) for a in arrays]
        k = len(part[0])
        if k < chunk:
            part = [np.concatenate([p, np.repeat(p[:1], chunk - k, 0)]) for p in part]
        out = fn(*part)
        outs.append([np.asarray(o)[:k] for o in (out if isinstance(out, tuple) else (out,))])
    joined = tuple(np.concatenate(column) for column in zip(*outs))
    return joined if isinstance(out, tuple) else joined[0]
