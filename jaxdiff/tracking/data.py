"""Synthetic videos with exact point tracks ("Kubric-lite", 2-D), from scikit-image's bundled photographs.

A clip is a stack of layers, each a texture seen through a projective map per frame
``M_k(t)`` (3x3: frame pixel -> texture coordinate, homogeneous):

- layer 0, the background: a photograph under a smooth camera motion (a homography about
  the frame centre: rotation, zoom, shear, translation and a small perspective part);
- layers 1..K (K in 1..``max_sprites``), sprites in front of it in that order: smooth
  star-shaped pieces cut from other photographs of the split, each moving rigidly
  (translation, rotation, zoom) along a smooth random path or a piecewise-linear one
  (abrupt turns), occluding each other and leaving or entering the frame.

Frame ``t`` shows at pixel ``p`` the texture of the front-most layer ``k`` whose support
contains ``M_k(t) p``, times a per-frame colour gain (``photometric``) plus Gaussian noise.
A point on layer ``k`` at texture coordinate ``u`` is at ``p(t) = M_k(t)^-1 u`` in frame
``t`` (its exact track, also while hidden or outside the frame); it is visible where
``p(t)`` lies inside the frame (``0 <= x <= W - 1``, ``0 <= y <= H - 1``) and no layer in
front of ``k`` covers it there. Query points are drawn on visible pixels (half of them on
sprites while sprites show) and queried at their first visible frame, TAP-Vid's
"query first" protocol.

Conventions: pixel centres at integer (x, y); videos (T, H, W, 3) float32 in [0, 255];
queries (N, 3) as (t, x, y); tracks (T, N, 2) as (x, y); visibility (T, N) bool. The
photographs and their train / validation split are ``jaxdiff.flow.data``'s.
"""

from __future__ import annotations

import numpy as np
from scipy import interpolate, ndimage

from jaxdiff.flow.data import photographs


# ----------------------------------------------------------------------------- geometry


def _translation(x: np.ndarray) -> np.ndarray:
    """(..., 2) offsets -> (..., 3, 3) homogeneous translations."""
    m = np.zeros(x.shape[:-1] + (3, 3))
    m[..., 0, 0] = m[..., 1, 1] = m[..., 2, 2] = 1
    m[..., :2, 2] = x
    return m


def _similarity(angle: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(...,) angles and scales -> (..., 3, 3) homogeneous scaled rotations."""
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    m = np.zeros(np.shape(angle) + (3, 3))
    m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1], m[..., 2, 2] = c, -s, s, c, 1
    return m


def apply_homography(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``m`` (..., 3, 3) applied to ``points`` (..., P, 2) -> (..., P, 2), dehomogenised."""
    x, y = points[..., 0], points[..., 1]
    row = [m[..., i, 0, None] * x + m[..., i, 1, None] * y + m[..., i, 2, None] for i in range(3)]
    return np.stack([row[0] / row[2], row[1] / row[2]], -1)


def _smooth(rng, num_frames: int, scale: float, dims: int, keys: int = 4) -> np.ndarray:
    """(T, dims) a smooth random path from 0: a cubic spline through a random walk at ``keys`` knots,
    ``scale`` its typical change per frame."""
    t_keys = np.linspace(0, num_frames - 1, keys)
    steps = rng.normal(0, scale, (keys - 1, dims)) * np.diff(t_keys)[:, None]
    values = np.concatenate([np.zeros((1, dims)), np.cumsum(steps, 0)])
    return interpolate.CubicSpline(t_keys, values)(np.arange(num_frames))


def _piecewise(rng, num_frames: int, speed: float) -> np.ndarray:
    """(T, 2) a path from 0 of 2-4 straight segments, each at its own random velocity (abrupt turns)."""
    inner = np.arange(1, num_frames - 1)
    cuts = np.sort(rng.choice(inner, min(rng.integers(1, 4), len(inner)), replace=False))
    velocity = np.zeros((num_frames - 1, 2))
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, num_frames - 1]):
        angle = rng.uniform(-np.pi, np.pi)
        velocity[start:stop] = rng.uniform(0.3, 1.0) * speed * np.array([np.cos(angle), np.sin(angle)])
    return np.concatenate([np.zeros((1, 2)), np.cumsum(velocity, 0)])


# ----------------------------------------------------------------------------- layers


class Layer:
    """A texture (h, w, 3) seen through ``maps`` (T, 3, 3) (frame pixel -> texture coordinate);
    ``support(uv) -> bool`` the texture coordinates it covers (None: all of them)."""

    def __init__(self, texture: np.ndarray, maps: np.ndarray, support=None):
        self.texture, self.maps, self.support = texture, maps, support

    def covers(self, t: np.ndarray | int, points: np.ndarray) -> np.ndarray:
        """Whether the layer covers ``points`` (..., P, 2) of frames ``t`` (broadcast to (...))."""
        if self.support is None:
            return np.ones(points.shape[:-1], bool)
        return self.support(apply_homography(self.maps[t], points))


def _sample(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear sample of (h, w, 3) ``texture`` at (..., 2) (u, v) = (column, row); mirrored outside."""
    coords = [uv[..., 1], uv[..., 0]]
    return np.stack([ndimage.map_coordinates(texture[..., c], coords, order=1, mode="mirror") for c in range(3)], -1)


def _camera(rng, texture, size, num_frames, perspective: float) -> Layer:
    """The background: the frame centre sees a random point of the photograph, under a smooth homography."""
    h, w = size
    unit = min(h, w) / 64  # motions scale with the frame
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    th, tw = texture.shape[:2]
    place = _translation(np.array([rng.uniform(0.3, 0.7) * tw, rng.uniform(0.3, 0.7) * th]))
    place = place @ _similarity(rng.uniform(-np.pi, np.pi), rng.uniform(0.7, 1.4))
    shift = _smooth(rng, num_frames, rng.uniform(0.2, 2.0) * unit, 2)
    angle = _smooth(rng, num_frames, rng.uniform(0, 0.02), 1)[:, 0]
    zoom = np.exp(_smooth(rng, num_frames, rng.uniform(0, 0.015), 1)[:, 0])
    motion = _similarity(angle, zoom) @ _translation(-shift)
    motion[:, :2, :2] += _smooth(rng, num_frames, 0.004, 4).reshape(num_frames, 2, 2)  # shear
    motion[:, 2, :2] = _smooth(rng, num_frames, perspective / (min(h, w) * num_frames), 2)
    maps = place @ motion @ _translation(-centre)
    return Layer(texture, maps)


def _sprite(rng, texture, size, num_frames) -> Layer:
    """A star-shaped piece of ``texture`` moving rigidly over the frame."""
    h, w = size
    unit = min(h, w) / 64
    th, tw = texture.shape[:2]
    radius = rng.uniform(0.12, 0.3) * min(h, w)  # frame pixels
    scale0 = rng.uniform(0.6, 1.6)  # texture pixels per frame pixel
    uv_centre = np.array([rng.uniform(0.3, 0.7) * tw, rng.uniform(0.3, 0.7) * th])
    # boundary radius r(φ) = r0 (1 + Σ_k a_k cos(k φ + φ_k)), k = 2, 3, 4
    amplitude = rng.uniform(0, 0.15, 3) * np.exp(1j * rng.uniform(0, 2 * np.pi, 3))
    r_texture = radius * scale0
    r_max = r_texture * (1 + np.abs(amplitude).sum())

    def support(uv):
        d = (uv[..., 0] - uv_centre[0]) + 1j * (uv[..., 1] - uv_centre[1])
        r2 = d.real**2 + d.imag**2
        out = r2 <= r_max**2
        z = d[out] / np.maximum(np.sqrt(r2[out]), 1e-12)  # e^{iφ}
        z2 = z * z
        bound = r_texture * (1 + (amplitude[0] * z2 + amplitude[1] * z2 * z + amplitude[2] * z2 * z2).real)
        out[out] = r2[out] <= bound**2
        return out

    start = np.array([rng.uniform(-0.1, 1.1) * (w - 1), rng.uniform(-0.1, 1.1) * (h - 1)])
    speed = rng.uniform(0.3, 2.5) * unit
    if rng.random() < 0.3:
        path = _piecewise(rng, num_frames, 2 * speed)
    else:
        path = _smooth(rng, num_frames, speed, 2) + np.arange(num_frames)[:, None] * speed * _direction(rng)
    angle = rng.uniform(-np.pi, np.pi) + _smooth(rng, num_frames, rng.uniform(0, 0.04), 1)[:, 0]
    zoom = np.exp(_smooth(rng, num_frames, rng.uniform(0, 0.01), 1)[:, 0])
    # frame pixel p -> texture: uv_centre + scale0 / zoom * R(-angle) (p - centre(t))
    maps = _translation(uv_centre) @ _similarity(-angle, scale0 / zoom) @ _translation(-(start + path))
    return Layer(texture, maps, support)


def _direction(rng) -> np.ndarray:
    angle = rng.uniform(-np.pi, np.pi)
    return 0.5 * np.array([np.cos(angle), np.sin(angle)])


def _front_layer(layers: list[Layer], t, points: np.ndarray) -> np.ndarray:
    """Index of the front-most layer covering each of ``points`` (..., P, 2) in frames ``t``."""
    label = np.zeros(points.shape[:-1], np.int8)
    for k in range(1, len(layers)):
        label = np.where(layers[k].covers(t, points), k, label)
    return label


# ----------------------------------------------------------------------------- clips


def clip(
    rng: np.random.Generator,
    textures: list[np.ndarray],
    size: tuple[int, int] = (64, 64),
    num_frames: int = 24,
    num_points: int = 64,
    *,
    max_sprites: int = 8,
    noise: float = 2.0,
    photometric: float = 0.2,
    perspective: float = 0.15,
) -> dict[str, np.ndarray]:
    """One clip: the background from ``textures[0]``, sprites cut from the others (drawn at random).

    Args:
        rng: the randomness (NumPy generator).
        textures: photographs (h, w, 3) in [0, 255]; at least two.
        size: (H, W) of the frames.
        num_frames: T.
        num_points: N query points.
        max_sprites: sprites are 1..``max_sprites``.
        noise: std of the Gaussian noise per pixel (0..255 scale).
        photometric: largest relative change of the per-frame colour gain (0: none).
        perspective: strength of the camera's projective part (0: affine camera).

    Returns:
        video (T, H, W, 3) float32, queries (N, 3) float32 (t, x, y), tracks (T, N, 2) float32,
        visible (T, N) bool, layer (N,) int8 (0: background), label (T, H, W) int8 (the layer each
        pixel shows) and maps (K + 1, T, 3, 3) float64 (frame pixel -> texture coordinate per layer).
    """
    h, w = size
    t_all = np.arange(num_frames)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    grid = np.stack([x, y], -1).reshape(1, h * w, 2)
    pick = rng.permutation(len(textures))
    layers = [_camera(rng, textures[pick[0]], size, num_frames, perspective)]
    for _ in range(rng.integers(1, max_sprites + 1)):
        layers.append(_sprite(rng, textures[pick[rng.integers(1, len(textures))]], size, num_frames))

    label = _front_layer(layers, t_all, np.broadcast_to(grid, (num_frames, h * w, 2)))
    video = np.zeros((num_frames, h * w, 3))
    for k, layer in enumerate(layers):
        t, i = np.nonzero(label == k)
        video[t, i] = _sample(layer.texture, apply_homography(layer.maps[t], grid[0, i, None])[:, 0])
    gain = 1 + rng.uniform(-photometric, photometric, (2, 3))
    gain = gain[0] + (gain[1] - gain[0]) * (t_all / max(num_frames - 1, 1))[:, None]
    video = np.clip(video * gain[:, None] + rng.normal(0, noise, video.shape), 0, 255)

    queries, tracks, visible, layer_of = _points(rng, layers, label.reshape(num_frames, h, w), size, num_points)
    return {
        "video": video.reshape(num_frames, h, w, 3).astype(np.float32),
        "queries": queries.astype(np.float32),
        "tracks": tracks.astype(np.float32),
        "visible": visible,
        "layer": layer_of,
        "label": label.reshape(num_frames, h, w),
        "maps": np.stack([layer.maps for layer in layers]),
    }


def _points(rng, layers, label, size, num_points):
    """Queries (N, 3), tracks (T, N, 2), visibility (T, N) and layers (N,) of points drawn on visible pixels."""
    h, w = size
    num_frames = label.shape[0]
    frames = rng.integers(0, num_frames - 1, num_points)  # a point is drawn where it shows at this frame
    xy = rng.uniform([0, 0], [w - 1, h - 1], (num_points, 2))
    on_sprites = np.arange(num_points) < num_points // 2
    for _ in range(20):  # redraw the sprite half where it missed every sprite
        miss = on_sprites & (label[frames, np.rint(xy[:, 1]).astype(int), np.rint(xy[:, 0]).astype(int)] == 0)
        if not miss.any():
            break
        xy[miss] = rng.uniform([0, 0], [w - 1, h - 1], (miss.sum(), 2))
    layer_of = _front_layer(layers, frames, xy[:, None])[:, 0]
    tracks = np.zeros((num_frames, num_points, 2))
    for k, layer in enumerate(layers):
        mine = layer_of == k
        if mine.any():
            uv = apply_homography(layer.maps[frames[mine]], xy[mine, None])[:, 0]  # (n, 2)
            tracks[:, mine] = apply_homography(np.linalg.inv(layer.maps)[:, None], uv[None, :, None])[..., 0, :]
    t_all = np.arange(num_frames)[:, None]
    inside = (tracks[..., 0] >= 0) & (tracks[..., 0] <= w - 1) & (tracks[..., 1] >= 0) & (tracks[..., 1] <= h - 1)
    front = _front_layer(layers, np.broadcast_to(t_all, tracks.shape[:2]), tracks[..., None, :])[..., 0]
    visible = inside & (front == layer_of)
    first = np.argmax(visible, axis=0)  # every point shows at its drawing frame
    queries = np.concatenate([first[:, None], tracks[first, np.arange(num_points)]], -1)
    return queries, tracks, visible, layer_of


def frame_flow(maps: np.ndarray, label: np.ndarray, t: int) -> np.ndarray:
    """(H, W, 2) flow from frame ``t`` to ``t + 1`` of a clip (its ``maps`` and ``label``): where each pixel's
    front layer carries it, whether or not it stays visible."""
    h, w = label.shape[1:]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    grid = np.stack([x, y], -1).reshape(-1, 2)
    k = label[t].reshape(-1)
    uv = apply_homography(maps[k, t], grid[:, None])
    moved = apply_homography(np.linalg.inv(maps[k, t + 1]), uv)[:, 0]
    return (moved - grid).reshape(h, w, 2).astype(np.float32)


def make_videos(
    split: str,
    num_videos: int,
    size: tuple[int, int] = (64, 64),
    num_frames: int = 24,
    num_points: int = 64,
    seed: int = 0,
    **options,
) -> dict[str, np.ndarray]:
    """``num_videos`` clips from the ``split`` ("train" | "val") photographs; clip i is drawn from
    ``default_rng([seed, i])``, so any subset can be rebuilt alone.

    Args:
        split: "train" or "val" (disjoint photographs, ``jaxdiff.flow.data``'s).
        num_videos: V.
        size: (H, W), both >= 16.
        num_frames: T >= 2.
        num_points: N >= 1 query points per clip.
        seed: the clips' seed.
        **options: ``max_sprites``, ``noise``, ``photometric``, ``perspective`` of ``clip``.

    Returns:
        video (V, T, H, W, 3) float32 in [0, 255], queries (V, N, 3) float32 (t, x, y), tracks
        (V, T, N, 2) float32 (x, y), visible (V, T, N) bool, layer (V, N) int8 (0: background).
    """
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    return _videos(split, np.arange(num_videos), size, num_frames, num_points, seed, options)


def _videos(split, indices, size, num_frames, num_points, seed, options) -> dict[str, np.ndarray]:
    textures = photographs(split)  # checks the split
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (H, W) with both >= 16, got {size}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    unknown = set(options) - {"max_sprites", "noise", "photometric", "perspective"}
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; clip takes max_sprites, noise, photometric, perspective")
    if options.get("max_sprites", 8) < 1:
        raise ValueError(f"max_sprites must be >= 1, got {options['max_sprites']}")
    clips = [clip(np.random.default_rng([seed, int(i)]), textures, tuple(size), num_frames, num_points, **options)
             for i in indices]
    return {key: np.stack([c[key] for c in clips]) for key in ("video", "queries", "tracks", "visible", "layer")}


class VideoSource:
    """``num_videos`` clips of ``make_videos`` as a data source: ``get(indices)`` draws the clips of
    those indices (deterministic, nothing held in memory), ``{name: (B, ...)}``."""

    def __init__(self, split: str, num_videos: int, size=(64, 64), num_frames: int = 24, num_points: int = 64,
                 seed: int = 0, **options):
        _videos(split, np.arange(1), size, 2, 1, seed, options)  # checks the arguments early
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        self.split, self.num_videos, self.size, self.num_frames = split, num_videos, tuple(size), num_frames
        self.num_points, self.seed, self.options = num_points, seed, options

    def __len__(self) -> int:
        return self.num_videos

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return _videos(self.split, np.asarray(indices), self.size, self.num_frames, self.num_points, self.seed,
                       self.options)
