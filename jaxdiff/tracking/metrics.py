"""TAP-Vid metrics (Doersch et al. 2022, arXiv 2211.03726): position accuracy δ, occlusion accuracy OA and
Average Jaccard AJ, computed on the host in float64 as TAP-Vid's reference ``compute_tapvid_metrics``.

Distances are measured at 256x256: a clip of H x W pixels has its x differences scaled by 256 / W and
its y differences by 256 / H. A prediction is within threshold δ when its scaled distance to the
ground truth is < δ, for δ in {1, 2, 4, 8, 16}. Each clip is scored over its evaluation frames:
with ``mode="first"`` the frames after each point's query frame (TAP-Vid's "query first"), with
``mode="strided"`` every frame but the query frame. Per clip:

- ``pts_within_δ``: the fraction of ground-truth visible evaluation frames predicted within δ,
  whatever the predicted visibility; ``average_pts_within_thresh`` (δ_avg) its mean over δ;
- ``occlusion_accuracy``: the fraction of evaluation frames whose predicted visibility is right;
- ``jaccard_δ``: true positives / (true positives + false positives + false negatives), a true
  positive being visible, predicted visible and within δ; ``average_jaccard`` (AJ) its mean over δ.

The returned figures are means over clips (a clip without a visible evaluation frame is skipped).
Shapes follow ``jaxdiff.tracking``: queries (B, N, 3) as (t, x, y), tracks (B, T, N, 2) as (x, y),
visibility (B, T, N).
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = (1, 2, 4, 8, 16)
MODES = ("first", "strided")


def _check(queries, tracks, visible, pred_tracks, pred_visible, size):
    tracks = np.asarray(tracks, np.float64)
    if tracks.ndim != 4 or tracks.shape[-1] != 2:
        raise ValueError(f"tracks must have shape (B, T, N, 2), got {tracks.shape}")
    b, t, n, _ = tracks.shape
    queries = np.asarray(queries, np.float64)
    if queries.shape != (b, n, 3):
        raise ValueError(f"queries must have shape (B, N, 3) = {(b, n, 3)}, got {queries.shape}")
    frames = queries[..., 0]
    if not (np.all(frames == np.round(frames)) and np.all((frames >= 0) & (frames < t))):
        raise ValueError(f"queries[..., 0] (query frames) must be integers in [0, {t - 1}]")
    pred_tracks = np.asarray(pred_tracks, np.float64)
    if pred_tracks.shape != tracks.shape:
        raise ValueError(f"pred_tracks must have the shape of tracks {tracks.shape}, got {pred_tracks.shape}")
    for name, v in (("visible", visible), ("pred_visible", pred_visible)):
        if np.shape(v) != (b, t, n):
            raise ValueError(f"{name} must have shape (B, T, N) = {(b, t, n)}, got {np.shape(v)}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be the clip's (H, W), got {size}")
    if not np.all(np.isfinite(tracks)):
        raise ValueError("tracks must be finite")
    return queries, tracks, np.asarray(visible, bool), pred_tracks, np.asarray(pred_visible, bool)


def evaluation_frames(queries: np.ndarray, num_frames: int, mode: str = "first") -> np.ndarray:
    """(B, T, N) bool: the frames each point is scored on (after its query frame, or all but it)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    t = np.arange(num_frames)[None, :, None]
    query = np.round(np.asarray(queries)[..., 0]).astype(int)[:, None, :]
    return t > query if mode == "first" else t != query


def scaled_distance_squared(tracks: np.ndarray, pred_tracks: np.ndarray, size) -> np.ndarray:
    """(B, T, N) squared distances at 256x256 for clips of ``size`` (H, W)."""
    scale = np.array([256.0 / size[1], 256.0 / size[0]])
    return np.sum(np.square((np.asarray(pred_tracks, np.float64) - tracks) * scale), -1)


def tapvid_metrics(
    queries, tracks, visible, pred_tracks, pred_visible, size: tuple[int, int], mode: str = "first"
) -> dict[str, float]:
    """TAP-Vid's figures, means over the B clips.

    Args:
        queries: (B, N, 3) query (t, x, y); t are integer frame indices.
        tracks: (B, T, N, 2) ground-truth (x, y) in pixels.
        visible: (B, T, N) ground-truth visibility.
        pred_tracks: (B, T, N, 2) predicted (x, y) in pixels.
        pred_visible: (B, T, N) predicted visibility (bool).
        size: the clips' (H, W) in pixels; distances are rescaled to 256x256.
        mode: "first" (frames after the query frame) or "strided" (all frames but the query frame).

    Returns:
        ``occlusion_accuracy``, ``pts_within_δ`` and ``jaccard_δ`` for δ in ``THRESHOLDS``,
        ``average_pts_within_thresh`` (δ_avg) and ``average_jaccard`` (AJ), each a float.
    """
    queries, tracks, visible, pred_tracks, pred_visible = _check(
        queries, tracks, visible, pred_tracks, pred_visible, size)
    evaluate = evaluation_frames(queries, tracks.shape[1], mode)
    d2 = scaled_distance_squared(tracks, pred_tracks, size)
    axes = (1, 2)
    gt_positives = np.sum(visible & evaluate, axes)
    scored = gt_positives > 0
    if not scored.any():
        raise ValueError("no clip has a visible evaluation frame to score")

    def mean(per_clip):
        return float(np.mean(per_clip[scored]))

    out = {"occlusion_accuracy": mean(np.sum((pred_visible == visible) & evaluate, axes) / np.sum(evaluate, axes))}
    within_all, jaccard_all = [], []
    for thresh in THRESHOLDS:
        within = d2 < thresh**2
        correct = within & visible
        frac = np.sum(correct & evaluate, axes) / np.maximum(gt_positives, 1)
        true_positives = np.sum(correct & pred_visible & evaluate, axes)
        false_positives = np.sum(((~visible) | (~within)) & pred_visible & evaluate, axes)
        jaccard = true_positives / (gt_positives + false_positives)
        out[f"pts_within_{thresh}"], out[f"jaccard_{thresh}"] = mean(frac), mean(jaccard)
        within_all.append(frac)
        jaccard_all.append(jaccard)
    out["average_pts_within_thresh"] = mean(np.mean(within_all, 0))
    out["average_jaccard"] = mean(np.mean(jaccard_all, 0))
    return out


def occluded_accuracy(queries, tracks, visible, pred_tracks, size: tuple[int, int]) -> dict[str, float]:
    """Position accuracy where the ground truth is hidden behind another layer: δ over the frames after
    the query frame at which a point is inside the frame but not visible (its exact position known).

    Args:
        queries: (B, N, 3) query (t, x, y).
        tracks: (B, T, N, 2) ground-truth (x, y), defined while hidden too.
        visible: (B, T, N) ground-truth visibility.
        pred_tracks: (B, T, N, 2) predicted (x, y).
        size: the clips' (H, W).

    Returns:
        ``occluded_pts_within_δ`` for δ in ``THRESHOLDS``, their mean ``occluded_average_pts_within_thresh``
        (δ_avg over hidden frames) and ``occluded_frames`` (how many frames were scored), pooled over clips.
    """
    queries, tracks, visible, pred_tracks, _ = _check(queries, tracks, visible, pred_tracks, visible, size)
    h, w = size
    inside = (tracks[..., 0] >= 0) & (tracks[..., 0] <= w - 1) & (tracks[..., 1] >= 0) & (tracks[..., 1] <= h - 1)
    hidden = inside & ~visible & evaluation_frames(queries, tracks.shape[1])
    count = int(hidden.sum())
    d2 = scaled_distance_squared(tracks, pred_tracks, size)[hidden]
    out = {f"occluded_pts_within_{t}": float(np.mean(d2 < t**2)) if count else float("nan") for t in THRESHOLDS}
    out["occluded_average_pts_within_thresh"] = float(np.mean([out[f"occluded_pts_within_{t}"] for t in THRESHOLDS]))
    out["occluded_frames"] = count
    return out
