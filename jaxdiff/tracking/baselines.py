"""Baselines for point tracking: zero motion and optical flow chained from frame to frame (e.g. RAFT's).

Both return ``(tracks (B, T, N, 2), visible (B, T, N) bool)`` for queries (B, N, 3) as (t, x, y),
in the conventions of ``jaxdiff.tracking``; before its query frame a point holds the query point and
is not visible.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdiff.flow.corr import bilinear_sample

Array = jax.Array


def _check_queries(queries, num_frames: int) -> None:
    q = np.asarray(queries)
    if q.ndim != 3 or q.shape[-1] != 3:
        raise ValueError(f"queries must have shape (B, N, 3) as (t, x, y), got {q.shape}")
    frames = q[..., 0]
    if not np.all((frames == np.round(frames)) & (frames >= 0) & (frames <= num_frames - 1)):
        raise ValueError(f"queries[..., 0] (query frames) must be integers in [0, {num_frames - 1}]")


def zero_motion(queries, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Every point stays at its query point, visible from its query frame on."""
    _check_queries(queries, num_frames)
    q = np.asarray(queries, np.float32)
    tracks = np.broadcast_to(q[:, None, :, 1:], (q.shape[0], num_frames, q.shape[1], 2)).copy()
    visible = np.arange(num_frames)[None, :, None] >= q[:, None, :, 0]
    return tracks, visible


def _sample_clamped(field: Array, points: Array) -> Array:
    """``field`` (B, H, W, 2) at ``points`` (B, N, 2), each clamped into the frame first."""
    h, w = field.shape[1:3]
    return bilinear_sample(field, jnp.clip(points, 0, jnp.array([w - 1, h - 1], points.dtype)))


@functools.partial(jax.jit, static_argnames=("has_backward",))
def _chain(forward, backward, queries, threshold, has_backward: bool):
    b, steps, h, w, _ = forward.shape
    frame, start = queries[..., 0], queries[..., 1:]

    def advance(p, t):
        f = _sample_clamped(forward[:, t], p)
        moving = (t >= frame)[..., None]
        nxt = jnp.where(moving, p + f, p)
        inside = (nxt[..., 0] >= 0) & (nxt[..., 0] <= w - 1) & (nxt[..., 1] >= 0) & (nxt[..., 1] <= h - 1)
        consistent = jnp.ones_like(inside)
        if has_backward:
            cycle = f + _sample_clamped(backward[:, t], nxt)
            consistent = jnp.linalg.norm(cycle, axis=-1) <= threshold
        return nxt, (nxt, (inside & consistent & (t >= frame)) | (t + 1 == frame))

    _, (points, visible) = lax.scan(advance, start, jnp.arange(steps))
    tracks = jnp.concatenate([start[None], points], 0)
    visible = jnp.concatenate([(frame == 0)[None], visible], 0)
    return jnp.moveaxis(tracks, 0, 1), jnp.moveaxis(visible, 0, 1)


def chain_flows(forward, queries, backward=None, threshold: float = 1.0) -> tuple[Array, Array]:
    """Tracks from chaining flow fields: a point moves by the forward flow sampled (bilinearly) at its
    current position, frame after frame from its query frame.

    Args:
        forward: (B, T - 1, H, W, 2) flow from frame t to t + 1, (x, y) pixels.
        queries: (B, N, 3) query (t, x, y).
        backward: (B, T - 1, H, W, 2) flow from frame t + 1 to t, or None.
        threshold: a step is visible when the forward flow and the backward flow at the point's new
            position cancel to within ``threshold`` pixels (the forward-backward check).

    Returns:
        tracks (B, T, N, 2) and visible (B, T, N): a point is visible at its query frame and, after it, where
        it lies inside the frame and (with ``backward``) its last step passed the check. Positions outside the
        frame read the flow of the nearest border pixel.
    """
    forward = jnp.asarray(forward, jnp.float32)
    if forward.ndim != 5 or forward.shape[-1] != 2:
        raise ValueError(f"forward must have shape (B, T - 1, H, W, 2), got {forward.shape}")
    if backward is not None and np.shape(backward) != forward.shape:
        raise ValueError(f"backward must have the shape of forward {forward.shape}, got {np.shape(backward)}")
    _check_queries(queries, forward.shape[1] + 1)
    if np.shape(queries)[0] != forward.shape[0]:
        raise ValueError(f"queries must have shape (B={forward.shape[0]}, N, 3), got {np.shape(queries)}")
    has_backward = backward is not None
    backward = jnp.asarray(backward, jnp.float32) if has_backward else forward
    return _chain(forward, backward, jnp.asarray(queries, jnp.float32), threshold, has_backward)


def raft_flows(model, variables, video, iters: int = 12, batch: int = 16) -> tuple[Array, Array]:
    """Forward and backward flows (B, T - 1, H, W, 2) between consecutive frames of ``video`` (B, T, H, W, 3),
    by ``jaxdiff.flow.raft``'s ``estimate_flow`` (any frame size), ``batch`` frame pairs at a time."""
    from jaxdiff.flow.raft import estimate_flow

    video = jnp.asarray(video, jnp.float32)
    b, t = video.shape[:2]
    first = video[:, :-1].reshape((-1,) + video.shape[2:])
    second = video[:, 1:].reshape((-1,) + video.shape[2:])
    run = jax.jit(lambda a, c: estimate_flow(model, variables, a, c, iters))
    pairs = first.shape[0]
    forward = jnp.concatenate([run(first[i:i + batch], second[i:i + batch]) for i in range(0, pairs, batch)])
    backward = jnp.concatenate([run(second[i:i + batch], first[i:i + batch]) for i in range(0, pairs, batch)])
    shape = (b, t - 1) + forward.shape[1:]
    return forward.reshape(shape), backward.reshape(shape)
