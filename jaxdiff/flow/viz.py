"""Middlebury colour coding of flow fields (Baker et al. 2007): hue = direction, saturation = magnitude."""

from __future__ import annotations

import numpy as np

# Colour-wheel segments (number of hues) between red, yellow, green, cyan, blue, magenta and back.
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def colour_wheel() -> np.ndarray:
    """(55, 3) float RGB in [0, 1] around the wheel, starting at red."""
    primaries = {"R": (1, 0, 0), "Y": (1, 1, 0), "G": (0, 1, 0), "C": (0, 1, 1), "B": (0, 0, 1), "M": (1, 0, 1)}
    rows = []
    for (a, b), n in _SEGMENTS:
        t = np.arange(n)[:, None] / n
        rows.append((1 - t) * np.array(primaries[a]) + t * np.array(primaries[b]))
    return np.concatenate(rows)


def flow_to_colour(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """(H, W, 2) flow -> (H, W, 3) uint8; magnitudes are divided by ``max_flow`` (default: the largest).

    Zero flow is white; direction picks the hue; |flow| >= ``max_flow`` is fully saturated.
    """
    flow = np.asarray(flow, np.float64)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    if max_flow is not None and not max_flow > 0:
        raise ValueError(f"max_flow must be > 0, got {max_flow}")
    flow = np.nan_to_num(flow)
    mag = np.linalg.norm(flow, axis=-1)
    scale = max_flow if max_flow is not None else max(mag.max(), 1e-8)
    radius = np.minimum(mag / scale, 1.0)[..., None]
    wheel = colour_wheel()
    n = len(wheel)
    pos = (np.arctan2(-flow[..., 1], -flow[..., 0]) / np.pi + 1) / 2 * (n - 1)
    i0 = np.floor(pos).astype(int)
    frac = (pos - i0)[..., None]
    colour = (1 - frac) * wheel[i0 % n] + frac * wheel[(i0 + 1) % n]
    return np.round(255 * (1 - radius * (1 - colour))).astype(np.uint8)
