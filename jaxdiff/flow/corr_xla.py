"""The XLA formulation of the correlation lookups of ``jaxdiff.flow.corr``: runs on every backend.

A window is read as one (2r+2)² patch of integer taps per query and level, masked outside the
image and interpolated by four shifted slices (all window taps share one fractional offset). The
slow reference path clamps the patch into the map and interpolates with hat weights
``max(0, 1 - |p - c|)``, which is exact because every in-image tap of a window lies in its clamped
patch. ``lookup`` reads windows from the volume pyramid; ``on_the_fly`` computes them tile by
tile, each tile one matmul against a block of the pooled features. Every einsum asks for float32
products (``Precision.HIGHEST``), which GPUs would otherwise round to TF32 and TPUs to bfloat16.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
_FLOAT32 = lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- windows


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


def lookup(pyramid: tuple[Array, ...], xy: Array, radius: int) -> Array:
    """Windows (Q, L (2r+1)²) of level-0 coords ``xy`` (Q, 2) in levels (Q, h_l, w_l)."""
    origin = jnp.zeros(xy.shape, jnp.int32)
    out = [_windows(v, origin, xy / 2**i, radius, v.shape[1], v.shape[2]) for i, v in enumerate(pyramid)]
    return jnp.concatenate(out, -1)


# ----------------------------------------------------------------------------- on the fly


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


def on_the_fly(
    f1: Array, pyramid: tuple[Array, ...], xy: Array, r: int, tile: int, chunk: int, slack: int, spill: int
) -> Array:
    """Windows (B, H, W, L (2r+1)²) of ``f1`` (B, H, W, D) at level-0 coords ``xy`` (B, H, W, 2) in the
    feature ``pyramid`` (levels (B, h_l, w_l, D)), ``chunk // tile²`` tiles at a time, each written into the output.

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
