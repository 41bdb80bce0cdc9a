"""All-pairs and on-the-fly correlation with RAFT's windowed lookup, NHWC.

Coordinates are (x, y) in pixels of the second feature map, pixel centres at
integers, zeros outside: PyTorch ``grid_sample(align_corners=True)`` after
RAFT's normalisation ``2x/(W-1) - 1``. An infinite (±inf) coordinate lies outside
like any far one, so its windows are zero, in every path and under ``jit``; a
concrete NaN coordinate raises ``ValueError``.

Channel order of a lookup is RAFT's ``CorrBlock``: level-major, then the
x-offset (slow), then the y-offset (fast)::

    channel = l * (2r+1)**2 + (dx + r) * (2r+1) + (dy + r)

A window is read as one (2r+2)² patch of integer taps per query and level,
masked outside the image and interpolated by four shifted slices (all window
taps share one fractional offset). The slow reference path clamps the patch into
the map and interpolates with hat weights ``max(0, 1 - |p - c|)``, which is exact
because every in-image tap of a window lies in its clamped patch.

Kernels: on the CPU both lookups run by default as C++ kernels (``jaxdiff/csrc/corr_cpu.cc``,
compiled on first use, see ``jaxdiff._native``) that read each window straight from the volume,
or compute its (2r+2)² taps as dot products, on XLA's intra-op threads, and their gradients
likewise; on other platforms, with ``kernel="xla"``, or where no C++ compiler works, the XLA
formulation below runs. Both give the same windows and gradients (tested against each other
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

from jaxdiff import _native

Array = jax.Array
KERNELS = ("auto", "native", "xla")
_FLOAT32 = lax.Precision.HIGHEST  # every einsum: full float32 products on GPUs and TPUs too
_FFI_TARGETS = tuple(
    (f"jaxdiff_corr_{name}", f"JaxdiffCorr{symbol}")
    for name, symbol in (("lookup", "Lookup"), ("lookup_grad", "LookupGrad"), ("windows", "Windows"),
                         ("windows_grad", "WindowsGrad"))
)


# ----------------------------------------------------------------------------- checks


def _concrete(a):
    try:
        return np.asarray(a)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


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
    c = _concrete(coords)
    if c is not None and np.isnan(c).any():
        raise ValueError("coords contain NaN")


def _resolve_kernel(kernel: str) -> str:
    """"native" or "xla" for a requested ``kernel``; "auto" is native where the default backend is
    the CPU and the C++ kernels load."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "xla" or (kernel == "auto" and jax.default_backend() != "cpu"):
        return "xla"
    loaded = _native.load("corr_cpu", _FFI_TARGETS)
    if kernel == "native" and not loaded:
        raise RuntimeError("kernel='native': the C++ correlation kernels did not build (see the warning above)")
    return "native" if loaded else "xla"


def _dispatch(kernel: str, native: Callable, xla: Callable, *args):
    """``native(*args)`` on the CPU and ``xla(*args)`` elsewhere for "native"; ``xla`` for "xla"."""
    if kernel == "xla":
        return xla(*args)
    return lax.platform_dependent(*args, cpu=native, default=xla)


def _with_grad(forward: Callable, backward: Callable) -> Callable:
    """``forward(*args, xy)`` whose vector-Jacobian product in ``args`` is ``backward(*args, xy, g)``
    (a tuple); the coordinates ``xy`` get none."""

    @jax.custom_vjp
    def f(*args):
        return forward(*args)

    f.defvjp(lambda *args: (forward(*args), args), lambda args, g: backward(*args, g) + (jnp.zeros_like(args[-1]),))
    return f


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


def _starts(p: Array, size: int, k: int, r: int) -> Array:
    """Clamped first tap index of a k-wide patch for window centres ``p`` on a map of ``size``."""
    s = jnp.clip(jnp.floor(p) - r, 0, size - k)
    return jnp.clip(jnp.nan_to_num(s).astype(jnp.int32), 0, size - k)


def _hat(p: Array, start: Array, r: int, k: int) -> Array:
    """Interpolation weights (N, 2r+1, k): window offset x patch tap."""
    pos = p[:, None] + jnp.arange(-r, r + 1, dtype=p.dtype)
    taps = (start[:, None] + jnp.arange(k)).astype(p.dtype)
    return jnp.maximum(0, 1 - jnp.abs(pos[:, :, None] - taps[:, None, :]))


def _hat_windows(maps: Array, origin: Array, xy: Array, r: int) -> Array:
    """Windows (N, (2r+1)², x-offset slow) by hat weights over one clamped (2r+2)² patch per query.

    ``maps`` (N, hm, wm): entry [i, j] is level pixel (origin_y + i, origin_x + j);
    ``origin`` (N, 2) int [x, y]; ``xy`` (N, 2) level coords. Each map must hold every
    in-image tap of its window and no out-of-image data other than zeros.
    """
    k = 2 * r + 2
    maps = _pad_to(maps, k, k, (1, 2))
    _, hm, wm = maps.shape
    rel = xy - origin
    local = jnp.stack([_starts(rel[:, 0], wm, k, r), _starts(rel[:, 1], hm, k, r)], -1)
    patch = jax.vmap(lambda m, s: _slice(m, (s[1], s[0]), (k, k)))(maps, local)
    start = local + origin
    wx = _hat(xy[:, 0], start[:, 0], r, k)
    wy = _hat(xy[:, 1], start[:, 1], r, k)
    t = jnp.einsum("njk,nak->naj", patch, wx, precision=_FLOAT32)
    return jnp.einsum("naj,nbj->nab", t, wy, precision=_FLOAT32).reshape(patch.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("r", "height", "width"))
def _windows(maps: Array, origin: Array, xy: Array, r: int, height: int, width: int) -> Array:
    """As ``_hat_windows`` for a ``height`` x ``width`` level, fast: gathers (2r+2)-long row
    segments at unclamped window starts from the flattened maps, masks taps outside the
    image, then interpolates by four shifted slices. A segment may spill into a
    neighbouring query's map (masked); only the first and last query can spill past the
    buffer (maps of fewer than 2r+2 entries are zero-padded to keep it so), so those two
    are recomputed with hat weights.
    """
    k = 2 * r + 2
    if maps.shape[1] * maps.shape[2] < k:
        maps = _pad_to(maps, k, k, (1, 2))
    n, hm, wm = maps.shape
    x0, y0 = jnp.floor(xy[:, 0]), jnp.floor(xy[:, 1])
    # An infinite coordinate masks every tap; a zero fraction keeps inf - inf (NaN) out of the blend.
    frac = jnp.where(jnp.isinf(xy), 0, xy - jnp.floor(xy))
    fx, fy = frac[:, 0, None, None], frac[:, 1, None, None]
    col = jnp.clip(jnp.nan_to_num(x0) - r, -k, width).astype(jnp.int32)
    rows = jnp.clip(jnp.nan_to_num(y0) - r, -k, height).astype(jnp.int32)[:, None] + jnp.arange(k)
    cols = col[:, None] + jnp.arange(k)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    map_rows = jnp.clip(rows, 0, height - 1) - origin[:, 1:]
    first = jnp.arange(n)[:, None] * (hm * wm) + map_rows * wm + (col - origin[:, 0])[:, None]
    flat = maps.reshape(-1)
    segments = jax.vmap(jax.vmap(lambda f: _slice(flat, (f,), (k,))))(first)
    patch = jnp.where(inside, segments, 0)  # (N, row, col)
    rows_x = (1 - fx) * patch[:, :, :-1] + fx * patch[:, :, 1:]  # (N, row, x-offset)
    # A conditional is a fusion barrier on XLA:CPU (optimization_barrier is stripped there):
    # it materialises rows_x instead of re-gathering every tap inside one fused loop (3x faster).
    rows_x = lax.cond(jnp.any(inside), lambda a: a, jnp.zeros_like, rows_x)
    out = (1 - fy) * rows_x[:, :-1] + fy * rows_x[:, 1:]  # (N, y-offset, x-offset)
    out = out.transpose(0, 2, 1).reshape(n, -1)
    ends = jnp.array([0, n - 1])
    return out.at[ends].set(_hat_windows(maps[ends], origin[ends], xy[ends], r))


def _slice(x: Array, starts, sizes) -> Array:
    """``lax.dynamic_slice`` with int32 starts (mixed index dtypes fail under x64)."""
    return lax.dynamic_slice(x, [jnp.asarray(i, jnp.int32) for i in starts], sizes)


def _slices(x: Array, starts: Array, sizes: tuple[int, ...]) -> Array:
    """Stack of ``len(starts)`` dynamic slices of ``x``; starts (M, x.ndim). Unrolled on the CPU:
    XLA:CPU copies each slice as one memcpy, where a batched gather of large slices crawls; one
    gather elsewhere, whose transpose is one scatter-add (unrolled, the backward pass on a GPU
    adds M slice-sized updates into full-size buffers one by one)."""
    if jax.default_backend() == "cpu":
        return jnp.stack([_slice(x, list(s), sizes) for s in starts])
    return jax.vmap(lambda s: lax.dynamic_slice(x, list(s), sizes))(starts.astype(jnp.int32))


def _pad_to(x: Array, height: int, width: int, axes: tuple[int, int]) -> Array:
    pad = [(0, 0)] * x.ndim
    pad[axes[0]] = (0, max(0, height - x.shape[axes[0]]))
    pad[axes[1]] = (0, max(0, width - x.shape[axes[1]]))
    return jnp.pad(x, pad) if any(p[1] for p in pad) else x


# ----------------------------------------------------------------------------- all pairs


def correlation_volume(f1: Array, f2: Array) -> Array:
    """All-pairs correlation <f1, f2> / sqrt(D): (B, H, W, D) x2 -> (B, H, W, H, W)."""
    _check_features(f1, f2)
    b, h, w, d = f1.shape
    f1 = f1.reshape(b, h * w, d) * (1 / math.sqrt(d))
    return jnp.einsum("bnd,bmd->bnm", f1, f2.reshape(b, h * w, d), precision=_FLOAT32).reshape(b, h, w, h, w)


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


def _lookup_xla(pyramid: tuple[Array, ...], xy: Array, radius: int) -> Array:
    """Windows (Q, L (2r+1)²) of level-0 coords ``xy`` (Q, 2) in levels (Q, h_l, w_l)."""
    origin = jnp.zeros(xy.shape, jnp.int32)
    out = [_windows(v, origin, xy / 2**i, radius, v.shape[1], v.shape[2]) for i, v in enumerate(pyramid)]
    return jnp.concatenate(out, -1)


def _lookup_ffi(pyramid: tuple[Array, ...], xy: Array, radius: int) -> Array:
    shape = jax.ShapeDtypeStruct((xy.shape[0], len(pyramid) * (2 * radius + 1) ** 2), xy.dtype)
    call = jax.ffi.ffi_call("jaxdiff_corr_lookup", shape, vmap_method="sequential")
    return call(xy, *pyramid, radius=np.int64(radius))


def _lookup_ffi_grad(pyramid: tuple[Array, ...], xy: Array, g: Array, radius: int) -> tuple[tuple[Array, ...]]:
    """(dpyramid,) of ``_lookup_ffi`` for the output cotangent ``g`` (Q, L (2r+1)²)."""
    shapes = tuple(jax.ShapeDtypeStruct(v.shape, v.dtype) for v in pyramid)
    call = jax.ffi.ffi_call("jaxdiff_corr_lookup_grad", shapes, vmap_method="sequential")
    return (tuple(call(xy, g, radius=np.int64(radius))),)


@functools.partial(jax.jit, static_argnames=("radius", "kernel"))
def _lookup(pyramid: tuple[Array, ...], coords: Array, radius: int, kernel: str) -> Array:
    b, h, w = pyramid[0].shape[:3]
    xy = lax.stop_gradient(coords).reshape(-1, 2).astype(pyramid[0].dtype)
    maps = tuple(v.reshape((-1,) + v.shape[3:]) for v in pyramid)
    xla = functools.partial(_lookup_xla, radius=radius)
    native = _with_grad(functools.partial(_lookup_ffi, radius=radius), functools.partial(_lookup_ffi_grad, radius=radius))
    out = _dispatch(kernel, native, xla, maps, xy)
    return out.reshape(b, h, w, -1)


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


def _gather_windows(f1q: Array, xy: Array, image: Array, start: Array, f2g: Array, r: int) -> Array:
    """Windows (N, (2r+1)²) from per-query taps: f1q (N, D), xy, start (N, 2), image (N,),
    f2g (B, h, w, D) padded to at least 2r+2 a side."""
    k = 2 * r + 2
    d = f2g.shape[-1]
    taps = _slices(f2g, jnp.stack([image, start[:, 1], start[:, 0], jnp.zeros_like(image)], -1), (1, k, k, d))
    corr = jnp.einsum("nijd,nd->nij", taps.reshape(-1, k, k, d), f1q, precision=_FLOAT32)
    return _hat_windows(corr, start, xy, r)


def _tiles_level(f: Array, xy: Array, image: Array, f2l: Array, r: int, extent: tuple[int, int], spill: int) -> Array:
    """Windows (G, T, (2r+1)²) of G tiles of T queries at one level: f (G, T, D), xy (G, T, 2)
    level coords, image (G,) into ``f2l`` (B, h, w, D).

    Each tile is one matmul against an ``extent`` (rows, cols) block of its image centred
    on its patches, clipped to the map (the whole map where that is smaller); queries
    whose patch leaves their block are redone from gathered taps, ``spill`` at a time.
    """
    _, h, w, d = f2l.shape
    g, t, _ = f.shape
    k = 2 * r + 2
    ey, ex = min(extent[0], h), min(extent[1], w)
    size, region = jnp.array([w, h]), jnp.array([ex, ey])
    start = jnp.stack([_starts(xy[..., 0], max(w, k), k, r), _starts(xy[..., 1], max(h, k), k, r)], -1)
    origin = jnp.clip(jnp.round(start.mean(1)).astype(jnp.int32) - (region - k) // 2, 0, size - region)
    zero = jnp.zeros_like(image)
    blocks = _slices(f2l, jnp.stack([image, origin[:, 1], origin[:, 0], zero], -1), (1, ey, ex, d))
    # Block-major operand order: XLA:CPU runs this batched matmul 2-10x faster than the transpose.
    corr = jnp.einsum("gmd,gnd->gmn", blocks.reshape(g, -1, d), f, precision=_FLOAT32)
    corr = corr.transpose(0, 2, 1).reshape(g * t, ey, ex)
    flat_xy = xy.reshape(-1, 2)
    out = _windows(corr, jnp.repeat(origin, t, 0), flat_xy, r, h, w)
    if (ey, ex) == (h, w):
        return out.reshape(g, t, -1)
    local = (start - origin[:, None]).reshape(-1, 2)
    missed = ~jnp.all((size == region) | ((local >= 0) & (local <= region - k)), -1)
    n, spill = g * t, min(spill, g * t)
    steps = -(-n // spill)
    order = jnp.nonzero(missed, size=steps * spill, fill_value=n)[0]  # missed queries first, then n
    f2g = _pad_to(f2l, k, k, (1, 2))
    fq, sq, iq = f.reshape(n, d), start.reshape(n, 2), jnp.repeat(image, t)

    def redo(j):
        idx = jnp.minimum(lax.dynamic_slice_in_dim(order, j * spill, spill), n - 1)
        return _gather_windows(fq[idx], flat_xy[idx], iq[idx], sq[idx], f2g, r)

    def patch_up(out):
        skip = jnp.zeros((spill, out.shape[-1]), out.dtype)
        redone = lax.map(lambda j: lax.cond(j * spill < missed.sum(), redo, lambda _: skip, j), jnp.arange(steps))
        return out.at[order].set(redone.reshape(-1, out.shape[-1]), mode="drop")

    return lax.cond(missed.any(), patch_up, lambda o: o, out).reshape(g, t, -1)


def _on_the_fly_ffi(f1: Array, pyramid: tuple[Array, ...], xy: Array, r: int) -> Array:
    """Windows (B, H, W, L (2r+1)²) from the C++ kernel: each query's taps as dot products."""
    b, h, w, d = f1.shape
    shape = jax.ShapeDtypeStruct((b, h * w, len(pyramid) * (2 * r + 1) ** 2), f1.dtype)
    call = jax.ffi.ffi_call("jaxdiff_corr_windows", shape, vmap_method="sequential")
    out = call(f1, xy, *pyramid, radius=np.int64(r), scale=1 / math.sqrt(d))
    return out.reshape(b, h, w, -1)


def _on_the_fly_ffi_grad(f1: Array, pyramid: tuple[Array, ...], xy: Array, g: Array, r: int):
    """(df1, dpyramid) of ``_on_the_fly_ffi`` for the output cotangent ``g`` (B, H, W, L (2r+1)²)."""
    shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (f1, *pyramid))
    call = jax.ffi.ffi_call("jaxdiff_corr_windows_grad", shapes, vmap_method="sequential")
    grads = call(f1, xy, g, *pyramid, radius=np.int64(r), scale=1 / math.sqrt(f1.shape[-1]))
    return grads[0], tuple(grads[1:])


@functools.partial(jax.jit, static_argnames=("r", "tile", "chunk", "slack", "spill", "kernel"))
def _on_the_fly(
    f1: Array, pyramid: tuple[Array, ...], xy: Array, r: int, tile: int, chunk: int, slack: int, spill: int, kernel: str
) -> Array:
    """Windows (B, H, W, L (2r+1)²) by ``kernel``: the C++ kernel on the CPU, else ``_on_the_fly_xla``."""
    xla = functools.partial(_on_the_fly_xla, r=r, tile=tile, chunk=chunk, slack=slack, spill=spill)
    native = _with_grad(functools.partial(_on_the_fly_ffi, r=r), functools.partial(_on_the_fly_ffi_grad, r=r))
    return _dispatch(kernel, native, xla, f1, pyramid, xy)


def _on_the_fly_xla(
    f1: Array, pyramid: tuple[Array, ...], xy: Array, r: int, tile: int, chunk: int, slack: int, spill: int
) -> Array:
    """Windows (B, H, W, L (2r+1)²), ``chunk // tile²`` tiles at a time, each written into the output.

    Tiles are ``min(tile, H)`` x ``min(tile, W)``; the last tile of a row or column is shifted
    back inside the image (it overlaps its neighbour), so no input is padded or copied.
    """
    b, h, w, d = f1.shape
    k = 2 * r + 2
    ty, tx = min(tile, h), min(tile, w)
    gy, gx = -(-h // ty), -(-w // tx)
    num_tiles = b * gy * gx
    per_step = max(1, min(num_tiles, chunk // (ty * tx)))
    channels = len(pyramid) * (2 * r + 1) ** 2

    def corners(step):
        t = jnp.minimum(step * per_step + jnp.arange(per_step), num_tiles - 1)
        return t // (gy * gx), jnp.minimum(t // gx % gy * ty, h - ty), jnp.minimum(t % gx * tx, w - tx)

    @jax.checkpoint
    def windows(step, f1, pyramid, xy):
        image, y0, x0 = corners(step)
        zero = jnp.zeros_like(image)

        def tiles(a):  # (B, H, W, c) -> (G, ty tx, c)
            corner = jnp.stack([image, y0, x0, zero], -1)
            return _slices(a, corner, (1, ty, tx, a.shape[-1])).reshape(per_step, ty * tx, -1)

        f, c = tiles(f1), tiles(xy)
        out = []
        for level, f2l in enumerate(pyramid):
            extent = (k + -(-(ty - 1) // 2**level) + slack, k + -(-(tx - 1) // 2**level) + slack)
            out.append(_tiles_level(f, c / 2**level, image, f2l, r, extent, spill))
        return jnp.concatenate(out, -1) * (1 / math.sqrt(d))  # (G, ty tx, C)

    def body(step, out):
        image, y0, x0 = corners(step)
        new = windows(step, f1, pyramid, xy).reshape(per_step, 1, ty, tx, channels)
        for i in range(per_step):
            out = lax.dynamic_update_slice(out, new[i], (image[i], y0[i], x0[i], 0))
        return out

    return lax.fori_loop(0, -(-num_tiles // per_step), body, jnp.zeros((b, h, w, channels), f1.dtype))


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
