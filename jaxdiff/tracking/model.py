"""A CoTracker-style joint point tracker (Karaev et al., arXiv 2307.07635; the v2 / v3 family), Flax linen.

Frames go through a small CNN to unit-norm features at stride 4 (or 2, finer on small frames: the
first block's output joined to the second's upsampled). A point queried at (t_q, x, y) keeps the
feature sampled there; in every frame its correlation window (4 pyramid levels,
radius 3, ``jaxdiff.tracking.correlation``) is read around its current estimate. Each point and
frame of a window of S frames is one token: an embedding of the correlation window, a sinusoidal
encoding of the displacements to the neighbouring frames, the visibility logit and whether the
frame comes after the query. A transformer alternates attention over time (each track) with
attention over space through K learned virtual tracks (the virtual tokens read the active points,
talk among themselves, and the points read them back); it outputs an update of each position and
visibility logit, applied M times per window. Windows of S frames slide by S/2: the first S/2
frames of a window start where the previous window ended, its other frames at the last of them,
and points not yet queried at the query position. ``virtual=0`` drops the space attention, so
every point is tracked alone (the joint-tracking ablation). ``initial="match"`` starts every frame
that the previous window did not estimate at the track's best match in that frame instead, as TAPIR
does (a soft-argmax around the argmax of the correlation with the whole frame), and trains that match
with a cross-entropy over the frame's feature pixels.

Conventions (``jaxdiff.tracking``): videos (B, T, H, W, 3) in [0, 255]; queries (B, N, 3) as
(t, x, y) pixels with centres at integers; tracks (B, T, N, 2) as (x, y); visibility (B, T, N).
Feature pixel j of the stride-s maps is centred on image pixel s j + (s - 1) / 2.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxdiff._arrays import concrete
from jaxdiff.flow.corr import bilinear_sample
from jaxdiff.nn.conv import Conv
from jaxdiff.tracking import correlation

Array = jax.Array
STRIDES = (2, 4)
CORR_MODES = ("auto",) + correlation.MODES
INITIAL = ("query", "match")


# ----------------------------------------------------------------------------- networks


class Encoder(nn.Module):
    """Frames (B, H, W, 3) in [-1, 1] -> unit-norm features (B, H // s, W // s, dim) at ``stride`` s = 4 or 2
    (H, W multiples of 4; floor sizes otherwise): two 4x4 stride-2 convolutions (padding 1, so output pixel
    j is centred on input pixel 2j + 0.5), each followed by a residual block, instance norm after every
    convolution, then a 1x1 projection; at s = 2 the projection of the first block's output plus the
    second's, upsampled 2x bilinearly (half-pixel centres keep the grids aligned). Feature pixel j is
    centred on input pixel s j + (s - 1) / 2."""

    dim: int = 64
    width: int = 32
    stride: int = 4

    @nn.compact
    def __call__(self, x: Array) -> Array:
        blocks = []
        for width in (self.width, 2 * self.width):
            x = nn.relu(nn.InstanceNorm()(Conv(width, (4, 4), 2, padding=((1, 1), (1, 1)))(x)))
            y = nn.relu(nn.InstanceNorm()(Conv(width, (3, 3), padding=1)(x)))
            x = nn.relu(x + nn.InstanceNorm()(Conv(width, (3, 3), padding=1)(y)))
            blocks.append(x)
        x = Conv(self.dim, (1, 1))(x)
        if self.stride == 2:
            fine = blocks[0]
            x = Conv(self.dim, (1, 1))(fine) + jax.image.resize(x, fine.shape[:-1] + x.shape[-1:], "bilinear")
        return x * lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-12))


class Block(nn.Module):
    """Pre-norm attention block: x (..., L, C) attends to ``context`` (..., M, C) (itself if None), then an MLP.
    ``mask`` (..., L or 1, M) marks the keys each query may read."""

    heads: int
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, x: Array, context: Array | None = None, mask: Array | None = None) -> Array:
        c = x.shape[-1]
        y = nn.LayerNorm()(x)
        kv = y if context is None else nn.LayerNorm()(context)
        mask = None if mask is None else mask[..., None, :, :]  # a heads axis
        x = x + nn.MultiHeadDotProductAttention(self.heads, qkv_features=c)(y, kv, mask=mask)
        y = nn.gelu(nn.Dense(int(self.mlp_ratio * c))(nn.LayerNorm()(x)))
        return x + nn.Dense(c)(y)


def posenc(x: Array, degrees: int) -> Array:
    """(..., d) -> (..., d (1 + 2 degrees)): x, sin(2^k x) and cos(2^k x) for k < degrees."""
    scaled = (x[..., None, :] * (2.0 ** jnp.arange(degrees))[:, None]).reshape(x.shape[:-1] + (-1,))
    return jnp.concatenate([x, jnp.sin(scaled), jnp.cos(scaled)], -1)


def time_embedding(length: int, dim: int) -> np.ndarray:
    """(length, dim) fixed 1-D sin-cos embedding of positions 0..length-1."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim // 2))
    angles = np.arange(length)[:, None] * omega[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], -1).astype(np.float32)


class Updater(nn.Module):
    """One refinement of a window: tokens from (corr (B, S, N, C), displacements (B, S, N, 4), vis logits
    (B, S, N), after-query flags (B, S, N)), attention over time and, with ``virtual`` > 0, over space through
    virtual tracks (the points of ``active`` (B, N) only); returns updates (B, S, N, 2) of the positions in
    feature pixels and (B, S, N) of the visibility logits."""

    hidden: int = 128
    heads: int = 4
    depth: int = 3
    virtual: int = 16
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, corr, displacement, vis, after_query, active):
        corr = nn.Dense(self.hidden)(nn.gelu(nn.Dense(self.hidden)(corr)))
        parts = [corr, posenc(displacement / 4, 5), vis[..., None], after_query[..., None]]
        x = nn.Dense(self.hidden)(jnp.concatenate(parts, -1))
        b, s, n, _ = x.shape
        x = jnp.swapaxes(x, 1, 2) + time_embedding(s, self.hidden)  # (B, N, S, C): tracks of tokens
        if self.virtual:
            scale = 1 / math.sqrt(self.hidden)
            virtual = self.param("virtual_tracks", nn.initializers.normal(scale), (self.virtual, self.hidden))
            x = jnp.concatenate([x, jnp.broadcast_to(virtual[None, :, None], (b, self.virtual, s, self.hidden))], 1)
        keys = jnp.broadcast_to(active[:, None, None, :], (b, s, 1, n))  # the virtual tokens read active points
        for i in range(self.depth):
            x = Block(self.heads, self.mlp_ratio, name=f"time_{i}")(x)
            if self.virtual:
                tokens = jnp.swapaxes(x, 1, 2)  # (B, S, N + K, C)
                points, virtual = tokens[:, :, :n], tokens[:, :, n:]
                virtual = Block(self.heads, self.mlp_ratio, name=f"virtual_reads_points_{i}")(virtual, points, keys)
                virtual = Block(self.heads, self.mlp_ratio, name=f"virtual_{i}")(virtual)
                points = Block(self.heads, self.mlp_ratio, name=f"points_read_virtual_{i}")(points, virtual)
                x = jnp.swapaxes(jnp.concatenate([points, virtual], 2), 1, 2)
        x = jnp.swapaxes(nn.LayerNorm()(x[:, :n]), 1, 2)  # (B, S, N, C)
        delta = nn.Dense(2, kernel_init=nn.initializers.normal(1e-3), name="position_head")(x)
        dvis = nn.Dense(1, kernel_init=nn.initializers.zeros, name="visibility_head")(x)[..., 0]
        return delta, dvis


# ----------------------------------------------------------------------------- the tracker


@dataclasses.dataclass(frozen=True)
class CoTracker:
    """Hyperparameters and the functions of the tracker; parameters live outside (``init``).

    Attributes:
        window: S, frames per window (even, >= 2); windows slide by S / 2.
        iters: M, refinements per window.
        radius: correlation window radius r (a (2r+1)² window per level).
        levels: correlation pyramid levels.
        stride: the features' stride, 4 (CoTracker's) or 2 (finer positions on small frames).
        dim: feature channels.
        width: the encoder's first width (the second is twice it).
        hidden: transformer width.
        heads: attention heads.
        depth: rounds of time attention (each followed by a space round when ``virtual`` > 0).
        virtual: K virtual tracks; 0 tracks each point alone.
        corr: "all_pairs", "on_the_fly" or "auto" (on the fly when a window's all-pairs volumes would
            exceed ``corr_budget`` bytes); see ``jaxdiff.tracking.correlation``.
        corr_budget: bytes, for "auto".
        gamma: discount of earlier refinements in the loss.
        huber: the Huber loss's threshold in pixels.
        occluded_weight: loss weight of positions where the point is hidden (visible ones weigh 1).
        vis_weight: weight of the visibility cross-entropy.
        initial: where a window's new frames start: "query" (CoTracker: the last known position) or
            "match" (the best match in the frame, ``correlation.best_match``).
        match_temperature: scale of the correlation in the match's softmax.
        match_radius: half-width of the match's soft-argmax window, feature pixels.
        match_weight: weight of the match's cross-entropy (with ``initial="match"``).
    """

    window: int = 8
    iters: int = 4
    radius: int = 3
    levels: int = 4
    stride: int = 4
    dim: int = 64
    width: int = 32
    hidden: int = 128
    heads: int = 4
    depth: int = 3
    virtual: int = 16
    corr: str = "auto"
    corr_budget: int = 1 << 28
    gamma: float = 0.8
    huber: float = 4.0
    occluded_weight: float = 0.2
    vis_weight: float = 1.0
    initial: str = "query"
    match_temperature: float = 20.0
    match_radius: int = 2
    match_weight: float = 1.0

    def __post_init__(self):
        if self.window < 2 or self.window % 2:
            raise ValueError(f"window must be even and >= 2, got {self.window}")
        for name in ("iters", "levels", "dim", "width", "hidden", "heads", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("radius", "virtual", "match_radius"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden must be a multiple of heads={self.heads}, got {self.hidden}")
        if self.corr not in CORR_MODES:
            raise ValueError(f"corr must be one of {CORR_MODES}, got {self.corr!r}")
        if self.stride not in STRIDES:
            raise ValueError(f"stride must be one of {STRIDES}, got {self.stride}")
        if self.initial not in INITIAL:
            raise ValueError(f"initial must be one of {INITIAL}, got {self.initial!r}")

    @property
    def encoder(self) -> Encoder:
        return Encoder(self.dim, self.width, self.stride)

    @property
    def updater(self) -> Updater:
        return Updater(self.hidden, self.heads, self.depth, self.virtual)

    def min_size(self) -> int:
        """The smallest frame side: the coarsest correlation level keeps one pixel."""
        return self.stride << (self.levels - 1)

    def init(self, key: Array) -> dict:
        """Parameters ``{"encoder": ..., "updater": ...}`` (they do not depend on the frame size)."""
        return _init(self, key)

    # ------------------------------------------------------------------------- the forward pass

    def windows(self, num_frames: int) -> tuple[int, int]:
        """(number of windows, padded length) for a clip of ``num_frames`` >= ``window``."""
        step = self.window // 2
        count = -(-(num_frames - self.window) // step) + 1
        return count, (count - 1) * step + self.window

    def features(self, params, video: Array, chunk: int | None = None) -> Array:
        """Unit-norm features (B, T, H // s, W // s, dim) (s = ``stride``) of ``video`` (B, T, H, W, 3) in [0, 255];
        ``chunk`` frames at a time (all at once if None)."""
        b, t = video.shape[:2]
        frames = 2 * (video.reshape((b * t,) + video.shape[2:]) / 255.0) - 1
        encode = functools.partial(self.encoder.apply, {"params": params["encoder"]})
        if chunk is None:
            out = encode(frames)
        else:
            out = lax.map(lambda f: encode(f[None])[0], frames, batch_size=chunk)
        return out.reshape((b, t) + out.shape[1:])

    def corr_mode(self, batch: int, tracks: int, height: int, width: int) -> str:
        """The correlation the tracker uses on feature maps of ``height`` x ``width``."""
        if self.corr != "auto":
            return self.corr
        size = correlation.volume_bytes(batch, self.window, tracks, height, width, self.levels)
        return "all_pairs" if size <= self.corr_budget else "on_the_fly"

    def track_features(self, fmaps: Array, queries: Array) -> Array:
        """Features (B, N, D) of the query points (B, N, 3) in ``fmaps`` (B, T, h, w, D), bilinear."""
        b, t = fmaps.shape[:2]
        n = queries.shape[1]
        start = to_features(queries[..., 1:], self.stride)
        sampled = bilinear_sample(fmaps.reshape((b * t,) + fmaps.shape[2:]), jnp.repeat(start, t, 0)[:, :, None])
        frame = queries[..., 0].astype(jnp.int32)
        return jnp.take_along_axis(sampled.reshape(b, t, n, -1), frame[:, None, :, None], 1)[:, 0]

    def refine_window(self, params, levels, features: Array, frames: Array, coords: Array, vis: Array,
                      mode: str = "all_pairs"):
        """The M refinements of one window of S frames.

        Args:
            params: the tracker's parameters.
            levels: the window's feature pyramid, (B, S, h_l, w_l, D) per level.
            features: (B, N, D) the tracks' features.
            frames: (B, N) query frames relative to the window's first frame; a track whose query frame
                is >= S is inactive (space attention does not read it, and its estimates stay).
            coords: (B, S, N, 2) initial positions in feature pixels.
            vis: (B, S, N) initial visibility logits.
            mode: "all_pairs" or "on_the_fly" correlation.

        Returns:
            coords (M, B, S, N, 2) and visibility logits (M, B, S, N) after each refinement.
        """
        s = coords.shape[1]
        active = frames < s
        after = (jnp.arange(s)[None, :, None] >= frames[:, None, :]).astype(coords.dtype)
        if mode == "all_pairs":
            lookup = functools.partial(correlation.windows_all_pairs, correlation.volumes(features, levels))
        else:
            lookup = functools.partial(correlation.windows_on_the_fly, features, levels)
        updater = functools.partial(self.updater.apply, {"params": params["updater"]})
        keep = active[:, None, :]

        def refine(state, _):
            c, v = state
            c = lax.stop_gradient(c)
            corr = lookup(coords=c, radius=self.radius)
            forward = jnp.concatenate([c[:, 1:] - c[:, :-1], jnp.zeros_like(c[:, :1])], 1)
            backward = jnp.concatenate([jnp.zeros_like(c[:, :1]), c[:, :-1] - c[:, 1:]], 1)
            delta, dvis = updater(corr, jnp.concatenate([forward, backward], -1), v, after, active)
            c, v = jnp.where(keep[..., None], c + delta, c), jnp.where(keep, v + dvis, v)
            return (c, v), (c, v)

        return lax.scan(refine, (coords, vis), None, length=self.iters)[1]

    def forward(self, params, video: Array, queries: Array, chunk: int | None = None):
        """The sliding windows over ``video``, unchecked; see ``slide``."""
        return self.slide(params, self.features(params, video, chunk), queries)

    def slide(self, params, fmaps: Array, queries: Array):
        """The sliding windows over frame features ``fmaps`` (B, T, h, w, D): returns (coords (B, T', N, 2)
        and visibility logits (B, T', N) of the padded clip of T' frames, in feature pixels; every
        window's refinements: coords (W, M, B, S, N, 2) and logits (W, M, B, S, N)).

        Window w starts at frame ``w S / 2``: a track queried before its middle starts from the previous
        window's estimates of its first S / 2 frames, then (``initial="query"``) the last of them or
        (``"match"``) its best match in each frame; any other track from its query point or best matches.
        """
        b, t = fmaps.shape[:2]
        n = queries.shape[1]
        count, padded = self.windows(t)
        fmaps = jnp.concatenate([fmaps, jnp.repeat(fmaps[:, -1:], padded - t, 1)], 1)
        levels = correlation.pyramid(fmaps, self.levels)
        features = self.track_features(fmaps, queries)
        frame = queries[..., 0].astype(jnp.int32)  # (B, N)
        start = to_features(queries[..., 1:], self.stride)
        mode = self.corr_mode(b, n, *fmaps.shape[2:4])
        s, step = self.window, self.window // 2
        first = jnp.broadcast_to(start[:, None], (b, padded, n, 2))  # the first estimates of every frame
        if self.initial == "match":  # best matches, the query point in the query frame
            matches = correlation.best_match(lax.stop_gradient(features), lax.stop_gradient(fmaps),
                                             self.match_temperature, self.match_radius)
            first = jnp.where((jnp.arange(padded)[None, :, None] == frame[:, None])[..., None], first, matches)

        def window(carry, ind):
            coords, vis = carry  # (B, T', N, 2), (B, T', N)
            copy = (frame < ind + step)[:, None, :]
            if self.initial == "match":
                known = copy & (jnp.arange(s) < step)[None, :, None]
                coords0 = jnp.where(known[..., None], dynamic_window(coords, ind, s), dynamic_window(first, ind, s))
            else:
                coords0 = jnp.where(copy[..., None], pad_last(dynamic_window(coords, ind, step), s), start[:, None])
            vis0 = jnp.where(copy, pad_last(dynamic_window(vis, ind, step), s), 0.0)
            cs, vs = self.refine_window(params, [dynamic_window(level, ind, s) for level in levels], features,
                                        frame - ind, coords0, vis0, mode)
            coords = lax.dynamic_update_slice_in_dim(coords, cs[-1], ind, 1)
            vis = lax.dynamic_update_slice_in_dim(vis, vs[-1], ind, 1)
            return (lax.stop_gradient(coords), lax.stop_gradient(vis)), (cs, vs)

        (coords, vis), refinements = lax.scan(window, (first, jnp.zeros((b, padded, n))), jnp.arange(count) * step)
        return coords, vis, refinements

    # ------------------------------------------------------------------------- the public functions

    def track(self, params, video: Array, queries: Array, *, chunk: int | None = 8,
              support: int = 0) -> tuple[Array, Array]:
        """Track the query points through the video.

        Args:
            params: from ``init`` (or training).
            video: (B, T, H, W, 3) in [0, 255], finite; T >= ``window``, H and W >= ``min_size()``.
            queries: (B, N, 3) as (t, x, y): integer frames in [0, T - 1], points inside the frame
                (0 <= x <= W - 1, 0 <= y <= H - 1).
            chunk: frames encoded at a time (bounds the encoder's memory); None: all at once.
            support: G > 0 also tracks a G x G grid of points queried in the first frame
                (``support_grid``), as context for the queries through space attention (CoTracker's
                support grid), and drops them from the outputs; 0: none.

        Returns:
            tracks (B, T, N, 2) (x, y) pixels and visibility (B, T, N) probabilities (threshold them, e.g.
            at 0.5, for a flag). Before its query frame a point is not tracked: its track holds the query
            point there, with visibility 0.
        """
        check_inputs(video, queries, self.window, self.min_size())
        if not isinstance(support, (int, np.integer)) or support < 0:
            raise ValueError(f"support must be an integer >= 0 (a G x G grid; 0: none), got {support!r}")
        queries = jnp.asarray(queries, jnp.float32)
        n = queries.shape[1]
        if support:
            b, _, h, w, _ = np.shape(video)
            grid = jnp.broadcast_to(support_grid(support, h, w), (b, support * support, 3))
            queries = jnp.concatenate([queries, grid], 1)
        tracks, visibility = _track(self, params, jnp.asarray(video, jnp.float32), queries, chunk)
        return tracks[:, :, :n], visibility[:, :, :n]

    def loss(self, params, batch: dict, key: Array | None = None) -> tuple[Array, dict]:
        """``(params, batch, key) -> (loss, terms)`` for ``jaxdiff.train.make_train_step``.

        ``batch``: video (B, T, H, W, 3), queries (B, N, 3), tracks (B, T, N, 2), visible (B, T, N).
        Every refinement m of every window is scored on the frames at and after each point's query
        frame: γ^(M-1-m) times a Huber loss of the positions in pixels (hidden positions weighted
        ``occluded_weight``), plus ``vis_weight`` times the cross-entropy of the visibility logits,
        normalised by the weights; with ``initial="match"``, plus ``match_weight`` times ``match_loss``.
        Terms: loss, huber, bce, match (0 with ``initial="query"``), epe (the last refinement's mean
        distance in pixels over visible frames).
        """
        del key
        video, queries = batch["video"].astype(jnp.float32), batch["queries"].astype(jnp.float32)
        b, t = video.shape[:2]
        fmaps = self.features(params, video)
        _, _, (cs, vs) = self.slide(params, fmaps, queries)
        count, padded = self.windows(t)
        step = self.window // 2
        frames = np.arange(count)[:, None] * step + np.arange(self.window)  # (W, S) clip frames of each window
        real = frames < t
        index = np.minimum(frames, t - 1)
        gt = jnp.moveaxis(batch["tracks"][:, index], 0, 1)[:, None]  # (W, 1, B, S, N, 2): broadcast over M
        visible = jnp.moveaxis(batch["visible"][:, index], 0, 1)[:, None].astype(jnp.float32)
        after = jnp.asarray(frames)[:, None, None, :, None] >= queries[None, None, :, None, :, 0]
        valid = (after & jnp.asarray(real)[:, None, None, :, None]).astype(jnp.float32)
        pred = to_pixels(cs, self.stride)
        weights = self.gamma ** jnp.arange(self.iters - 1, -1, -1.0)[None, :, None, None, None]
        w_pos = valid * (visible + self.occluded_weight * (1 - visible))
        huber = jnp.sum(optax.huber_loss(pred, gt, delta=self.huber), -1) / self.huber  # ~ distance for large errors
        huber = jnp.sum(weights * w_pos * huber) / jnp.maximum(jnp.sum(w_pos) * jnp.sum(weights), 1)
        bce = optax.sigmoid_binary_cross_entropy(vs, visible)
        bce = jnp.sum(weights * valid * bce) / jnp.maximum(jnp.sum(valid) * jnp.sum(weights), 1)
        last = valid[:, 0] * visible[:, 0]
        epe = jnp.sum(last * jnp.linalg.norm(pred[:, -1] - gt[:, 0], axis=-1)) / jnp.maximum(jnp.sum(last), 1)
        match = self.match_loss(fmaps, queries, batch["tracks"], batch["visible"]) if self.initial == "match" else 0.0
        loss = huber + self.vis_weight * bce + self.match_weight * match
        return loss, {"loss": loss, "huber": huber, "bce": bce, "match": jnp.asarray(match), "epe": epe}

    def match_loss(self, fmaps: Array, queries: Array, tracks: Array, visible: Array) -> Array:
        """Mean cross-entropy of softmax(``match_temperature`` · correlation) over each frame's feature
        pixels (``fmaps`` (B, T, h, w, D)) against the true position, over the frames after each query
        where the point is ``visible`` (B, T, N); ``tracks`` (B, T, N, 2) in pixels. The target puts
        bilinear weights on the four feature pixels around the position."""
        t, h, w = fmaps.shape[1:4]
        logits = correlation.match_logits(self.track_features(fmaps, queries), fmaps, self.match_temperature)
        g = to_features(tracks.astype(jnp.float32), self.stride)
        tx = jnp.maximum(1 - jnp.abs(jnp.arange(w) - g[..., :1]), 0)  # (B, T, N, w): tents = bilinear weights
        ty = jnp.maximum(1 - jnp.abs(jnp.arange(h) - g[..., 1:]), 0)
        target = ty[..., :, None] * tx[..., None, :]
        logp = jax.nn.log_softmax(logits.reshape(logits.shape[:3] + (-1,)), -1).reshape(logits.shape)
        ce = -jnp.sum(target * logp, (-2, -1))  # (B, T, N)
        after = jnp.arange(t)[None, :, None] > queries[:, None, :, 0]
        valid = (after & (visible > 0)).astype(jnp.float32)
        return jnp.sum(valid * ce) / jnp.maximum(jnp.sum(valid), 1)


@functools.partial(jax.jit, static_argnums=0)
def _init(model: CoTracker, key: Array) -> dict:
    k1, k2 = jax.random.split(key)
    frame = jnp.zeros((1, model.min_size(), model.min_size(), 3))
    s, n = model.window, 1
    token = (jnp.zeros((1, s, n, model.levels * (2 * model.radius + 1) ** 2)), jnp.zeros((1, s, n, 4)),
             jnp.zeros((1, s, n)), jnp.zeros((1, s, n)), jnp.ones((1, n), bool))
    return {"encoder": model.encoder.init(k1, frame)["params"], "updater": model.updater.init(k2, *token)["params"]}


@functools.partial(jax.jit, static_argnums=(0, 4))
def _track(model: CoTracker, params, video: Array, queries: Array, chunk: int | None):
    t = video.shape[1]
    coords, vis, _ = model.forward(params, video, queries, chunk)
    tracks = to_pixels(coords[:, :t], model.stride)
    before = jnp.arange(t)[None, :, None] < queries[:, None, :, 0]
    tracks = jnp.where(before[..., None], queries[:, None, :, 1:], tracks)
    return tracks, jnp.where(before, 0.0, jax.nn.sigmoid(vis[:, :t]))


def support_grid(size: int, height: int, width: int) -> np.ndarray:
    """(size², 3) queries (0, x, y): the centres of a ``size`` x ``size`` tiling of the first frame."""
    ys, xs = ((np.arange(size) + 0.5) * extent / size - 0.5 for extent in (height, width))
    y, x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([np.zeros(size * size), x.ravel(), y.ravel()], -1).astype(np.float32)


def to_features(xy: Array, stride: int) -> Array:
    """Image pixels -> feature pixels of ``stride`` s (feature pixel j is centred on image pixel s j + (s - 1) / 2)."""
    return (xy - (stride - 1) / 2) / stride


def to_pixels(xy: Array, stride: int) -> Array:
    """Feature pixels of ``stride`` -> image pixels."""
    return xy * stride + (stride - 1) / 2


def dynamic_window(x: Array, start, length: int) -> Array:
    """x[:, start:start + length] along axis 1, ``start`` traced."""
    return lax.dynamic_slice_in_dim(x, start, length, 1)


def pad_last(x: Array, length: int) -> Array:
    """Repeat the last entry of axis 1 up to ``length``."""
    return jnp.concatenate([x, jnp.repeat(x[:, -1:], length - x.shape[1], 1)], 1)


def check_inputs(video, queries, window: int, min_size: int) -> None:
    """Raise ``ValueError`` naming the argument for a video or queries ``CoTracker.track`` cannot take."""
    if np.ndim(video) != 5 or np.shape(video)[-1] != 3:
        raise ValueError(f"video must have shape (B, T, H, W, 3), got {np.shape(video)}")
    b, t, h, w, _ = np.shape(video)
    if t < window:
        raise ValueError(f"video has {t} frames, fewer than one window ({window}); pad or shorten the window")
    if min(h, w) < min_size:
        raise ValueError(f"video frames must be at least {min_size} pixels a side, got {h}x{w}")
    if np.ndim(queries) != 3 or np.shape(queries)[0] != b or np.shape(queries)[-1] != 3:
        raise ValueError(f"queries must have shape (B={b}, N, 3) as (t, x, y), got {np.shape(queries)}")
    v = concrete(video)
    if v is not None and not np.all(np.isfinite(v)):
        raise ValueError("video must be finite (it holds NaN or inf pixels)")
    q = concrete(queries)
    if q is None:
        return
    if not np.all(np.isfinite(q)):
        raise ValueError("queries must be finite")
    frames = q[..., 0]
    if not np.all((frames == np.round(frames)) & (frames >= 0) & (frames <= t - 1)):
        raise ValueError(f"queries[..., 0] (query frames) must be integers in [0, {t - 1}], got {frames.min()}.."
                         f"{frames.max()}")
    x, y = q[..., 1], q[..., 2]
    if not np.all((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)):
        raise ValueError(f"queries[..., 1:] (points) must lie inside the {w}x{h} frame: 0 <= x <= {w - 1}, "
                         f"0 <= y <= {h - 1}")
