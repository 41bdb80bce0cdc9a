"""All-pairs and on-the-fly correlation with RAFT's windowed lookup, NHWC: the functions to call.

Coordinates are (x, y) in pixels of the second feature map, pixel centres at
integers, zeros outside: PyTorch ``grid_sample(align_corners=True)`` after
RAFT's normalisation ``2x/(W-1) - 1``. An infinite (±inf) coordinate lies outside
like any far one, so its windows are zero, in every path and under ``jit``; a
concrete NaN coordinate raises ``ValueError``.

Channel order of a lookup is RAFT's ``CorrBlock``: level-major, then the
x-offset (slow), then the y-offset (fast)::

    channel = l * (2r+1)**2 + (dx + r) * (2r+1) + (dy + r)

Kernels, chosen here and nowhere else: on the CPU both lookups run by default as the C++ kernels of
``jaxdiff.flow.corr_native`` (compiled on first use, see ``jaxdiff._native``); on other platforms,
with ``kernel="xla"``, or where no C++ compiler works, the XLA formulation of
``jaxdiff.flow.corr_xla`` runs. Both give the same windows and gradients (tested against each other
and against RAFT). Products are float32 on every backend, as in RAFT's PyTorch ``CorrBlock``
(XLA's default precision would round matmul inputs to TF32 on recent GPUs and to bfloat16 on TPUs).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdiff._arrays import concrete
from jaxdiff.flow import corr_native, corr_xla

Array = jax.Array
KERNELS = ("auto", "native", "xla")


# ----------------------------------------------------------------------------- checks


def _check_features(f1, f2) -> None:
    if f1.ndim != 4:
        raise ValueError(f"f1 must have shape (B, H, W, D), got {f1.shape}")
    if f2.ndim != 4:
        raise ValueError(f"f2 must have shape (B, H, W, D), got {f2.shape}")
    if f1.shape != f2.shape:
        raise ValueError(f"f1 and f2 must have the same shape (B, H, W, D), got f1 {f1.shape}, f2 {f2.shape}")


def _check_levels(num_levels: int, height: int, width: int) -> None:
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if min(height, width) >> (num_levels - 1) < 1:
        raise ValueError(f"num_levels={num_levels} pools a {height}x{width} map to nothing")


def _check_coords(coords, batch: int, height: int, width: int, radius: int) -> None:
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if coords.shape != (batch, height, width, 2):
        expected = (batch, height, width, 2)
        raise ValueError(f"coords must have shape {expected} (B, H, W, xy), got {coords.shape}")
    c = concrete(coords)
    if c is not None and np.isnan(c).any():
        raise ValueError("coords contain NaN")


# ----------------------------------------------------------------------------- backend


def _resolve_kernel(kernel: str) -> str:
    """"native" or "xla" for a requested ``kernel``; "auto" is native where the default backend is
    the CPU and the C++ kernels load."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "xla" or (kernel == "auto" and jax.default_backend() != "cpu"):
        return "xla"
    loaded = corr_native.available()
    if kernel == "native" and not loaded:
        raise RuntimeError("kernel='native': the C++ correlation kernels did not build (see the warning above)")
    return "native" if loaded else "xla"


def _dispatch(kernel: str, native: Callable, xla: Callable, *args):
    """``native(*args)`` on the CPU and ``xla(*args)`` elsewhere for "native"; ``xla`` for "xla"."""
    if kernel == "xla":
        return xla(*args)
    return lax.platform_dependent(*args, cpu=native, default=xla)


# ----------------------------------------------------------------------------- sampling


def bilinear_sample(image: Array, coords: Array) -> Array:
    """Sample ``image`` (B, H, W, C) at ``coords`` (B, ..., 2) in (x, y) pixels -> (B, ..., C).

    Each of the four corner taps contributes only if it lies inside the image.
    """
    if image.ndim != 4:
        raise ValueError(f"image must have shape (B, H, W, C), got {image.shape}")
    if coords.ndim < 2 or coords.shape[0] != image.shape[0] or coords.shape[-1] != 2:
        raise ValueError(f"coords must have shape (B={image.shape[0]}, ..., 2), got {coords.shape}")
    b, h, w, c = image.shape
    xy = coords.reshape(b, -1, 2).astype(image.dtype)
    x, y = xy[..., 0], xy[..., 1]
    x0, y0 = jnp.floor(x), jnp.floor(y)
    flat = image.reshape(b, h * w, c)
    out = jnp.zeros((b, xy.shape[1], c), image.dtype)
    for xi in (x0, x0 + 1):
        for yi in (y0, y0 + 1):
            weight = (1 - jnp.abs(x - xi)) * (1 - jnp.abs(y - yi))
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            idx = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)).astype(jnp.int32)
            taps = jnp.take_along_axis(flat, idx[..., None], axis=1)
            out = out + jnp.where(inside, weight, 0)[..., None] * taps
    return out.reshape(coords.shape[:-1] + (c,))


# ----------------------------------------------------------------------------- all pairs


def correlation_volume(f1: Array, f2: Array) -> Array:
    """All-pairs correlation <f1, f2> / sqrt(D): (B, H, W, D) x2 -> (B, H, W, H, W)."""
    _check_features(f1, f2)
    b, h, w, d = f1.shape
    f1 = f1.reshape(b, h * w, d) * (1 / math.sqrt(d))
    volume = jnp.einsum("bnd,bmd->bnm", f1, f2.reshape(b, h * w, d), precision=lax.Precision.HIGHEST)
    return volume.reshape(b, h, w, h, w)


def _avg_pool(x: Array, axes: tuple[int, int]) -> Array:
    """2x2 stride-2 average pooling (floor sizes) over two adjacent ``axes``."""
    a, b = axes
    h, w = x.shape[a] // 2, x.shape[b] // 2

    def tap(i, j):
        x_i = lax.slice_in_dim(x, i, i + 2 * h - 1, stride=2, axis=a)
        return lax.slice_in_dim(x_i, j, j + 2 * w - 1, stride=2, axis=b)

    return (tap(0, 0) + tap(1, 0) + tap(0, 1) + tap(1, 1)) * 0.25


@functools.partial(jax.jit, static_argnames=("num_levels",))
def _pyramid(f1: Array, f2: Array, num_levels: int) -> list[Array]:
    """Unchecked ``correlation_pyramid``."""
    levels = [correlation_volume(f1, f2)]
    for _ in range(num_levels - 1):
        levels.append(_avg_pool(levels[-1], (3, 4)))
    return levels


def correlation_pyramid(f1: Array, f2: Array, num_levels: int = 4) -> list[Array]:
    """Volume pyramid: level l is (B, H, W, H >> l, W >> l) (floor sizes), 2x2 average pooled."""
    _check_features(f1, f2)
    _check_levels(num_levels, f1.shape[1], f1.shape[2])
    return _pyramid(f1, f2, num_levels)


def lookup(pyramid: Sequence[Array], coords: Array, radius: int = 4, *, kernel: str = "auto") -> Array:
    """RAFT lookup: pyramid levels (B, H, W, h_l, w_l), coords (B, H, W, 2) -> (B, H, W, L (2r+1)²).

    Level l samples a (2r+1)² window at ``coords / 2**l``; ``coords`` get no gradient.
    ``kernel``: "auto" (C++ on the CPU where it builds, else XLA), "native" or "xla".
    """
    if len(pyramid) < 1:
        raise ValueError("pyramid must hold at least one level")
    b, h, w = pyramid[0].shape[:3]
    _check_coords(coords, b, h, w, radius)
    return _lookup(tuple(pyramid), coords, radius, _resolve_kernel(kernel))


@functools.partial(jax.jit, static_argnames=("radius", "kernel"))
def _lookup(pyramid: tuple[Array, ...], coords: Array, radius: int, kernel: str) -> Array:
    """Windows (B, H, W, L (2r+1)²) by the resolved ``kernel``."""
    b, h, w = pyramid[0].shape[:3]
    xy = lax.stop_gradient(coords).reshape(-1, 2).astype(pyramid[0].dtype)
    maps = tuple(v.reshape((-1,) + v.shape[3:]) for v in pyramid)
    native = functools.partial(corr_native.lookup, radius=radius)
    xla = functools.partial(corr_xla.lookup, radius=radius)
    return _dispatch(kernel, native, xla, maps, xy).reshape(b, h, w, -1)


# ----------------------------------------------------------------------------- on the fly


def feature_pyramid(f2: Array, num_levels: int = 4) -> list[Array]:
    """Pooled features: level l is (B, H >> l, W >> l, D); pooling f2 equals pooling the volume."""
    if f2.ndim != 4:
        raise ValueError(f"f2 must have shape (B, H, W, D), got {f2.shape}")
    _check_levels(num_levels, f2.shape[1], f2.shape[2])
    levels = [f2]
    for _ in range(num_levels - 1):
        levels.append(_avg_pool(levels[-1], (1, 2)))
    return levels


@functools.partial(jax.jit, static_argnames=("r", "tile", "chunk", "slack", "spill", "kernel"))
def _on_the_fly(
    f1: Array, pyramid: tuple[Array, ...], xy: Array, r: int, tile: int, chunk: int, slack: int, spill: int, kernel: str
) -> Array:
    """Windows (B, H, W, L (2r+1)²) by the resolved ``kernel``."""
    native = functools.partial(corr_native.on_the_fly, r=r)
    xla = functools.partial(corr_xla.on_the_fly, r=r, tile=tile, chunk=chunk, slack=slack, spill=spill)
    return _dispatch(kernel, native, xla, f1, pyramid, xy)


def lookup_on_the_fly(
    f1: Array,
    f2: Array | Sequence[Array],
    coords: Array,
    radius: int = 4,
    num_levels: int = 4,
    *,
    tile: int = 8,
    chunk: int | None = None,
    slack: int = 3,
    spill: int | None = None,
    kernel: str = "auto",
) -> Array:
    """``lookup`` without the (HW)² volume: f1 (B, H, W, D), f2 (B, H, W, D) or its ``feature_pyramid``
    (a pyramid must be that pooling of f2: the C++ kernel takes a level-(l+1) tap as the mean of
    the four level-l taps below it when it has already computed them).

    Returns (B, H, W, num_levels (2r+1)²), equal to ``lookup`` on the volume pyramid
    (pooling f2 equals pooling the volume). Queries are cut into ``tile`` x ``tile``
    tiles, ``chunk // tile²`` tiles at a time. At level l a tile is one matmul against a
    block of ``2r+2 + ceil((tile-1) / 2**l) + slack`` level pixels a side centred on its
    windows (the whole level where that is smaller); queries whose windows leave the
    block (motion boundaries) are redone from gathered taps, ``spill`` at a time. By default
    ``chunk`` = 128 and ``spill`` = 8 on the CPU; on GPUs and TPUs, where each of the
    sequential steps costs kernel launches, ``chunk`` = 1024 and ``spill`` = 256.
    Forward working memory is O((chunk / tile² (2r+2+tile+slack)² + spill (2r+2)²) D) next to O(B H W D)
    for the inputs and output; the backward pass also holds a cotangent of f1 and of
    each pyramid level per tile of a step. ``tile``, ``chunk``, ``slack`` and ``spill``
    shape the XLA formulation; ``kernel`` is as in ``lookup`` (the C++ kernel needs
    O((2r+4)²) scratch per thread and computes each window's taps exactly).
    """
    pyramid = list(f2) if isinstance(f2, (list, tuple)) else None
    if pyramid is None:
        _check_features(f1, f2)
        pyramid = feature_pyramid(f2, num_levels)
    else:
        _check_features(f1, pyramid[0])
        num_levels = len(pyramid)
    b, h, w, _ = f1.shape
    _check_levels(num_levels, h, w)
    _check_coords(coords, b, h, w, radius)
    accelerator = jax.default_backend() != "cpu"
    chunk = chunk if chunk is not None else (1024 if accelerator else 128)
    spill = spill if spill is not None else (256 if accelerator else 8)
    if min(tile, chunk, spill) < 1 or slack < 0:
        got = f"tile={tile}, chunk={chunk}, spill={spill}, slack={slack}"
        raise ValueError(f"tile, chunk and spill must be >= 1 and slack >= 0, got {got}")
    xy = lax.stop_gradient(coords).astype(f1.dtype)
    return _on_the_fly(f1, tuple(pyramid), xy, radius, tile, chunk, slack, spill, _resolve_kernel(kernel))


# ----------------------------------------------------------------------------- convenience


def correlation_lookup(
    f1: Array,
    f2: Array,
    num_levels: int = 4,
    radius: int = 4,
    mode: str = "auto",
    memory_budget: int = 1 << 30,
    kernel: str = "auto",
) -> Callable[[Array], Array]:
    """RAFT's ``CorrBlock`` as a closure: returns ``coords (B, H, W, 2) -> (B, H, W, L (2r+1)²)``.

    ``mode``: "all_pairs" builds the pyramid once; "on_the_fly" never builds it;
    "auto" picks on-the-fly when the level-0 volume would exceed ``memory_budget`` bytes.
    ``kernel`` is as in ``lookup``.
    """
    _check_features(f1, f2)
    _check_levels(num_levels, f1.shape[1], f1.shape[2])
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if mode not in ("auto", "all_pairs", "on_the_fly"):
        raise ValueError(f"mode must be 'auto', 'all_pairs' or 'on_the_fly', got {mode!r}")
    b, h, w, _ = f1.shape
    if mode == "auto":
        volume_bytes = b * (h * w) ** 2 * jnp.dtype(f1.dtype).itemsize
        mode = "on_the_fly" if volume_bytes > memory_budget else "all_pairs"
    if mode == "all_pairs":
        pyramid = correlation_pyramid(f1, f2, num_levels)
        return lambda coords: lookup(pyramid, coords, radius, kernel=kernel)
    features = feature_pyramid(f2, num_levels)
    return lambda coords: lookup_on_the_fly(f1, features, coords, radius, kernel=kernel)
