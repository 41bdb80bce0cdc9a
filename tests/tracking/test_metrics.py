"""TAP-Vid metrics on cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.tracking import metrics
from jaxdiff.tracking.baselines import zero_motion


def case():
    """One 256x256 clip, 3 frames, 2 points: point 0 queried at t=0, point 1 at t=1 ("first": 3 frames scored).

    - point 0, t=1: visible, predicted visible, 3 px off (within 4, 8, 16);
    - point 0, t=2: hidden, predicted visible (a false positive whatever the distance);
    - point 1, t=2: visible, predicted hidden, 0.5 px off (within every threshold, but no true positive).
    """
    queries = np.array([[[0, 10, 10], [1, 50, 60]]], float)
    tracks = np.zeros((1, 3, 2, 2))
    tracks[0, :, 0] = [10, 10]
    tracks[0, :, 1] = [50, 60]
    visible = np.array([[[True, False], [True, True], [False, True]]])
    pred = tracks.copy()
    pred[0, 1, 0] += [3, 0]
    pred[0, 2, 0] += [100, 100]
    pred[0, 2, 1] += [0.3, 0.4]
    pred_visible = np.array([[[True, False], [True, True], [True, False]]])
    return queries, tracks, visible, pred, pred_visible


def test_hand_computed_case():
    out = metrics.tapvid_metrics(*case(), (256, 256))
    assert out["occlusion_accuracy"] == pytest.approx(1 / 3)
    assert [out[f"pts_within_{t}"] for t in metrics.THRESHOLDS] == pytest.approx([0.5, 0.5, 1, 1, 1])
    assert out["average_pts_within_thresh"] == pytest.approx(0.8)
    # jaccard: TP / (2 visible + FP): δ < 4: TP 0, FP 2; δ >= 4: TP 1, FP 1
    assert [out[f"jaccard_{t}"] for t in metrics.THRESHOLDS] == pytest.approx([0, 0, 1 / 3, 1 / 3, 1 / 3])
    assert out["average_jaccard"] == pytest.approx(0.2)


def test_strided_mode_scores_frames_before_the_query():
    queries, tracks, visible, pred, pred_visible = case()
    out = metrics.tapvid_metrics(queries, tracks, visible, pred, pred_visible, (256, 256), mode="strided")
    # point 1 at t=0 joins: hidden and predicted hidden -> OA 2/4; nothing else changes
    assert out["occlusion_accuracy"] == pytest.approx(0.5)
    assert out["average_pts_within_thresh"] == pytest.approx(0.8)


def test_perfect_tracks_score_one_and_zero_motion_is_exact_on_a_static_clip():
    rng = np.random.default_rng(0)
    tracks = rng.uniform(0, 63, (2, 8, 5, 2))
    visible = rng.random((2, 8, 5)) < 0.7
    visible[:, 0] |= ~visible.any(1)
    frames = np.argmax(visible, 1)
    queries = np.concatenate([frames[..., None], np.take_along_axis(tracks, frames[:, None, :, None], 1)[:, 0]], -1)
    out = metrics.tapvid_metrics(queries, tracks, visible, tracks, visible, (64, 64))
    assert all(v == 1.0 for v in out.values())
    still = np.broadcast_to(tracks[:, :1], tracks.shape)
    at_start = np.concatenate([np.zeros((2, 5, 1)), tracks[:, 0]], -1)
    out = metrics.tapvid_metrics(at_start, still, np.ones_like(visible), *zero_motion(at_start, 8), (64, 64))
    assert out["average_jaccard"] == out["average_pts_within_thresh"] == out["occlusion_accuracy"] == 1.0


def test_distances_are_measured_at_256x256():
    """A 64x128 clip (H x W): 1 px in x is 2 px at 256, 1 px in y is 4 px."""
    queries = np.array([[[0, 5, 5], [0, 5, 5]]], float)
    tracks = np.full((1, 2, 2, 2), 5.0)
    pred = tracks.copy()
    pred[0, 1, 0, 0] += 1  # x: 2 px at 256 -> within 4, not 2
    pred[0, 1, 1, 1] += 1  # y: 4 px at 256 -> within 8, not 4 (strictly less)
    visible = np.ones((1, 2, 2), bool)
    out = metrics.tapvid_metrics(queries, tracks, visible, pred, visible, (64, 128))
    assert [out[f"pts_within_{t}"] for t in metrics.THRESHOLDS] == pytest.approx([0, 0, 0.5, 1, 1])


def test_hidden_frame_accuracy():
    queries, tracks, visible, pred, _ = case()
    out = metrics.occluded_accuracy(queries, tracks, visible, pred, (256, 256))
    assert out["occluded_frames"] == 1  # point 0 at t=2 is hidden, inside the frame, after its query
    assert out["occluded_average_pts_within_thresh"] == 0.0  # predicted 141 px away
    pred[0, 2, 0] = tracks[0, 2, 0] + [5, 0]
    out = metrics.occluded_accuracy(queries, tracks, visible, pred, (256, 256))
    assert [out[f"occluded_pts_within_{t}"] for t in metrics.THRESHOLDS] == [0, 0, 0, 1, 1]


def test_clips_without_visible_frames_are_skipped_and_bad_input_named():
    queries, tracks, visible, pred, pred_visible = case()
    two = [np.concatenate([a, a]) for a in (queries, tracks, visible, pred, pred_visible)]
    two[2][1] = False
    assert metrics.tapvid_metrics(*two, (256, 256)) == metrics.tapvid_metrics(*case(), (256, 256))
    with pytest.raises(ValueError, match="query frames"):
        metrics.tapvid_metrics(queries + [[[5, 0, 0]]], tracks, visible, pred, pred_visible, (256, 256))
    with pytest.raises(ValueError, match="pred_tracks"):
        metrics.tapvid_metrics(queries, tracks, visible, pred[:, :2], pred_visible, (256, 256))
    with pytest.raises(ValueError, match="pred_visible"):
        metrics.tapvid_metrics(queries, tracks, visible, pred, pred_visible[..., 0], (256, 256))
    with pytest.raises(ValueError, match="mode"):
        metrics.tapvid_metrics(*case(), (256, 256), mode="last")
