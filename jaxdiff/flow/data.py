"""Synthetic optical-flow pairs with exact ground truth, from scikit-image's bundled photographs.

Every layer (background, pasted objects) is a texture placed in frame 2 by an
affine map ``A2`` (frame-2 pixel -> texture coordinate) and moved by a motion
``T`` (frame-1 pixel -> frame-2 pixel). Frame 2 samples the texture at ``A2(y)``,
frame 1 at ``A2(T(x))``, so ``frame1(x) = frame2(x + flow(x))`` with
``flow(x) = T(x) - x`` holds exactly wherever the same layer shows in both frames
(up to bilinear resampling and noise). Kinds:

- "smooth": one layer, ``T`` = global affine + Gaussian-filtered random field.
- "chairs": FlyingChairs-like; that background plus 1-3 objects (textures cut from
  other images of the split by random ellipses) with their own similarity motions,
  giving motion boundaries and occlusions.

``valid`` marks pixels whose target lies in frame 2 and whose four bilinear taps
there show the same layer (visible in both frames). Images are NHWC float32 in
[0, 255]; flow is (x, y) pixels, frame 1 -> frame 2.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

# Disjoint photographs (all bundled with scikit-image, no download); grey ones are replicated to RGB.
TRAIN_IMAGES = ("astronaut", "coffee", "rocket", "immunohistochemistry", "camera", "brick", "grass", "moon", "clock")
VAL_IMAGES = ("chelsea", "coins", "gravel", "page")
KINDS = ("smooth", "chairs")


@functools.lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    """(H, W, 3) float32 in [0, 255], lightly blurred against aliasing."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)(), np.float32)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    return ndimage.gaussian_filter(image[..., :3], (0.7, 0.7, 0))


def _images(split: str) -> tuple[str, ...]:
    if split == "train":
        return TRAIN_IMAGES
    if split == "val":
        return VAL_IMAGES
    raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def photographs(split: str) -> list[np.ndarray]:
    """The ``split``'s ("train" | "val") photographs, (h, w, 3) float32 in [0, 255], lightly blurred.

    The two splits share no photograph (``TRAIN_IMAGES``, ``VAL_IMAGES``); other synthetic data
    (e.g. ``jaxdiff.tracking.data``) draws from them to keep the same held-out images.
    """
    return [_texture(name) for name in _images(split)]


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _sample(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear sample (H, W, 3) ``texture`` at (..., 2) (u, v) = (col, row); mirrored outside."""
    coords = [uv[..., 1], uv[..., 0]]
    return np.stack([ndimage.map_coordinates(texture[..., c], coords, order=1, mode="mirror") for c in range(3)], -1)


class _Layer:
    """A texture placed by ``A2(y) = M y + t``; ``target`` (H, W, 2) = ``T`` on the pixel grid;
    ``inside(uv)`` is its support (everything if None)."""

    def __init__(self, texture, m, t, target, inside=None):
        self.texture, self.m, self.t, self.target, self.inside = texture, m, t, target, inside

    def uv(self, y: np.ndarray) -> np.ndarray:
        return y @ self.m.T + self.t

    def covers(self, y: np.ndarray) -> np.ndarray:
        return np.ones(y.shape[:-1], bool) if self.inside is None else self.inside(self.uv(y))


def _background(rng, texture, grid, size, kind_smooth: bool) -> _Layer:
    h, w = size
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    scale = rng.uniform(0.7, 1.5)
    m = scale * _rotation(rng.uniform(-np.pi, np.pi))
    th, tw = texture.shape[:2]
    t = np.array([rng.uniform(0.25, 0.75) * tw, rng.uniform(0.25, 0.75) * th]) - centre @ m.T
    # Global affine motion about the centre: small rotation, zoom, shear, translation.
    a = _rotation(rng.uniform(-0.08, 0.08)) * rng.uniform(0.93, 1.07) + rng.uniform(-0.03, 0.03, (2, 2))
    shift = rng.uniform(-1, 1, 2) * (0.12 * min(h, w))
    field = np.zeros((h, w, 2))
    if kind_smooth or rng.random() < 0.5:
        sigma = rng.uniform(0.1, 0.25) * min(h, w)
        field = ndimage.gaussian_filter(rng.standard_normal((h, w, 2)), (sigma, sigma, 0), mode="reflect")
        field *= rng.uniform(0.5, 4.0) / max(np.abs(field).max(), 1e-6)
    target = (grid - centre) @ a.T + centre + shift + field
    return _Layer(texture, m, t, target)


def _object(rng, texture, grid, size) -> _Layer:
    h, w = size
    th, tw = texture.shape[:2]
    scale = rng.uniform(0.7, 1.5)
    m = scale * _rotation(rng.uniform(-np.pi, np.pi))
    uv_centre = np.array([rng.uniform(0.3, 0.7) * tw, rng.uniform(0.3, 0.7) * th])
    radius = rng.uniform(0.12, 0.3, 2) * min(h, w) * scale  # ellipse semi-axes in texture pixels
    ellipse = _rotation(rng.uniform(0, np.pi))

    def inside(uv):
        d = (uv - uv_centre) @ ellipse
        return (d[..., 0] / radius[0]) ** 2 + (d[..., 1] / radius[1]) ** 2 <= 1

    c2 = np.array([rng.uniform(0.1, 0.9) * (w - 1), rng.uniform(0.1, 0.9) * (h - 1)])
    t = uv_centre - c2 @ m.T
    # Similarity motion: frame-1 centre c1 -> frame-2 centre c2, with rotation and zoom.
    c1 = c2 - rng.uniform(-1, 1, 2) * (0.15 * min(h, w))
    a = _rotation(rng.uniform(-0.15, 0.15)) * rng.uniform(0.9, 1.1)
    return _Layer(texture, m, t, (grid - c1) @ a.T + c2, inside)


def _top_layer(layers, points_per_layer) -> np.ndarray:
    """Index of the front-most layer covering each point; layer i is sampled at points_per_layer[i]."""
    label = np.zeros(points_per_layer[0].shape[:-1], np.int32)
    for i in range(1, len(layers)):
        label = np.where(layers[i].covers(points_per_layer[i]), i, label)
    return label


def _pair(rng, names, size, kind, noise):
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    grid = np.stack([x, y], -1)
    pick = rng.permutation(len(names))
    layers = [_background(rng, _texture(names[pick[0]]), grid, size, kind == "smooth")]
    if kind == "chairs":
        for j in range(rng.integers(1, 4)):
            layers.append(_object(rng, _texture(names[pick[(j + 1) % len(names)]]), grid, size))

    targets = [layer.target for layer in layers]  # frame-2 position of each frame-1 pixel, per layer
    label1 = _top_layer(layers, targets)
    label2 = _top_layer(layers, [grid] * len(layers))
    target = np.take_along_axis(np.stack(targets), label1[None, ..., None], 0)[0]
    frame1 = np.zeros((h, w, 3))
    frame2 = np.zeros((h, w, 3))
    for i, layer in enumerate(layers):
        frame1 = np.where((label1 == i)[..., None], _sample(layer.texture, layer.uv(targets[i])), frame1)
        frame2 = np.where((label2 == i)[..., None], _sample(layer.texture, layer.uv(grid)), frame2)

    tx, ty = target[..., 0], target[..., 1]
    valid = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    x0 = np.clip(np.floor(tx), 0, w - 1).astype(int)
    y0 = np.clip(np.floor(ty), 0, h - 1).astype(int)
    for dy in (0, 1):
        for dx in (0, 1):
            valid &= label2[np.minimum(y0 + dy, h - 1), np.minimum(x0 + dx, w - 1)] == label1

    gain = rng.uniform(0.8, 1.2, 3)
    frame1 = frame1 * gain + rng.normal(0, noise, frame1.shape)
    frame2 = frame2 * gain + rng.normal(0, noise, frame2.shape)
    return np.clip(frame1, 0, 255), np.clip(frame2, 0, 255), target - grid, valid


def make_dataset(
    split: str,
    num_pairs: int,
    size: tuple[int, int] = (64, 96),
    kind: str = "smooth",
    seed: int = 0,
    noise: float = 2.0,
) -> dict[str, np.ndarray]:
    """``num_pairs`` synthetic pairs from the ``split`` ("train" | "val") photographs.

    ``kind``: "smooth" or "chairs" (see the module docstring); ``noise``: std of the
    independent Gaussian noise per frame (0..255 scale). Deterministic in ``seed``.
    Returns image1, image2 (N, H, W, 3) float32 in [0, 255], flow (N, H, W, 2) float32,
    valid (N, H, W) bool.
    """
    names = _images(split)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"size must be (H, W) with both >= 8, got {size}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    pairs = [_pair(rng, names, tuple(size), kind, noise) for _ in range(num_pairs)]
    image1, image2, flow, valid = (np.stack(a) for a in zip(*pairs))
    return {
        "image1": image1.astype(np.float32),
        "image2": image2.astype(np.float32),
        "flow": flow.astype(np.float32),
        "valid": valid,
    }
