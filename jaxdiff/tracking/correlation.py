"""Correlation windows around point tracks, on ``jaxdiff.flow``'s RAFT lookup.

A track carries one feature vector f (D,) (sampled where it was queried); at frame t its
correlation window is RAFT's: level l of the pyramid is the correlation of f with the frame's
features average-pooled 2^l x 2^l, sampled bilinearly on a (2r+1)² grid of unit steps around
``coords / 2^l`` (coords in level-0 feature pixels, centres at integers, zeros outside). Channels
are RAFT's ``CorrBlock`` order: level-major, then the x-offset (slow), then the y-offset (fast).

Two computations give the same windows:

- "all_pairs": the correlation of every track with every pixel of every level (B, S, N, h_l, w_l),
  looked up by ``jaxdiff.flow.corr.lookup`` (the C++ kernel on the CPU), one query per track and
  frame. Memory O(S N h w); built once per window and read at every iteration.
- "on_the_fly": the (2r+1)² pooled features around each track, sampled by
  ``jaxdiff.flow.corr.bilinear_sample`` and dotted with f. Memory O(S N r² D), whatever the frame
  size, for 1080p frames and many tracks. (Bilinear sampling is linear, so sampling features then
  correlating equals correlating then sampling, as pooling the features equals pooling the volume.)

Products are float32 on every device (``Precision.HIGHEST``), as the flow package's.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxdiff.flow.corr import bilinear_sample, feature_pyramid, lookup

Array = jax.Array
MODES = ("all_pairs", "on_the_fly")


def pyramid(fmaps: Array, num_levels: int) -> list[Array]:
    """Frame features (B, T, h, w, D) -> levels (B, T, h >> l, w >> l, D), 2x2 average pooled (floor sizes)."""
    b, t = fmaps.shape[:2]
    levels = feature_pyramid(fmaps.reshape((b * t,) + fmaps.shape[2:]), num_levels)
    return [level.reshape((b, t) + level.shape[1:]) for level in levels]


def volumes(features: Array, levels: Sequence[Array]) -> list[Array]:
    """All-pairs correlation of track ``features`` (B, N, D) with feature ``levels`` (B, S, h_l, w_l, D):
    (B, S, N, h_l, w_l) each."""
    return [jnp.einsum("bnd,bshwd->bsnhw", features, level, precision=lax.Precision.HIGHEST) for level in levels]


def offsets(radius: int) -> Array:
    """((2r+1)², 2) window offsets (dx, dy) in RAFT's channel order: dx slow, dy fast."""
    d = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    dx, dy = jnp.meshgrid(d, d, indexing="ij")
    return jnp.stack([dx.ravel(), dy.ravel()], -1)


def windows_all_pairs(vols: Sequence[Array], coords: Array, radius: int) -> Array:
    """Windows (B, S, N, L (2r+1)²) of ``coords`` (B, S, N, 2) in the ``volumes`` (B, S, N, h_l, w_l)."""
    b, s, n = coords.shape[:3]
    maps = [v.reshape((b * s, n, 1) + v.shape[3:]) for v in vols]
    return lookup(maps, coords.reshape(b * s, n, 1, 2), radius).reshape(b, s, n, -1)


def windows_on_the_fly(features: Array, levels: Sequence[Array], coords: Array, radius: int) -> Array:
    """Windows (B, S, N, L (2r+1)²) of ``coords`` (B, S, N, 2) for track ``features`` (B, N, D) in the
    feature ``levels`` (B, S, h_l, w_l, D), without an all-pairs volume."""
    b, s, n = coords.shape[:3]
    coords = lax.stop_gradient(coords)
    out = []
    for l, level in enumerate(levels):
        points = coords[..., None, :] / 2**l + offsets(radius)  # (B, S, N, K, 2)
        taps = bilinear_sample(level.reshape((b * s,) + level.shape[2:]), points.reshape(b * s, n, -1, 2))
        out.append(jnp.einsum("bsnkd,bnd->bsnk", taps.reshape(b, s, n, -1, taps.shape[-1]), features,
                              precision=lax.Precision.HIGHEST))
    return jnp.concatenate(out, -1)


def match_logits(features: Array, fmaps: Array, temperature: float) -> Array:
    """``temperature`` times the correlation of track ``features`` (B, N, D) with every pixel of every frame
    of ``fmaps`` (B, T, h, w, D): (B, T, N, h, w)."""
    return temperature * jnp.einsum("bnd,bthwd->btnhw", features, fmaps, precision=lax.Precision.HIGHEST)


def best_match(features: Array, fmaps: Array, temperature: float, radius: int, chunk: int = 1) -> Array:
    """Each track's match in every frame, as TAPIR initialises its tracks: the soft-argmax of
    softmax(``temperature`` · correlation) over the (2r+1)² pixels around the correlation's argmax.

    Args:
        features: (B, N, D) track features.
        fmaps: (B, T, h, w, D) frame features.
        temperature: scale of the correlation before the softmax.
        radius: r, the half-width of the soft-argmax window.
        chunk: frames correlated at a time (memory O(chunk B N h w)).

    Returns:
        (B, T, N, 2) positions (x, y) in feature pixels.
    """
    h, w = fmaps.shape[2:4]
    dx, dy = offsets(radius).astype(jnp.int32).T  # (K,) each

    def frame(fmap):  # (B, h, w, D) -> (B, N, 2)
        logits = match_logits(features, fmap[:, None], temperature)[:, 0]
        flat = logits.reshape(logits.shape[:2] + (-1,))  # (B, N, h w)
        best = jnp.argmax(flat, -1)[..., None]
        x, y = best % w + dx, best // w + dy  # (B, N, K)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        taps = jnp.take_along_axis(flat, jnp.clip(y, 0, h - 1) * w + jnp.clip(x, 0, w - 1), -1)
        p = jax.nn.softmax(jnp.where(inside, taps, -jnp.inf), -1)
        return jnp.stack([jnp.sum(p * x, -1), jnp.sum(p * y, -1)], -1)

    return jnp.moveaxis(lax.map(frame, jnp.moveaxis(fmaps, 1, 0), batch_size=chunk), 0, 1)


def volume_bytes(batch: int, frames: int, tracks: int, height: int, width: int, num_levels: int) -> int:
    """Bytes of float32 all-pairs volumes over ``num_levels`` levels of an ``height`` x ``width`` map."""
    pixels = sum((height >> l) * (width >> l) for l in range(num_levels))
    return 4 * batch * frames * tracks * pixels
