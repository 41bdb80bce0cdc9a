"""Baselines: zero motion, chained flow with its forward-backward check, Lucas–Kanade (needs OpenCV), and the
synthetic clips' dense flow."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.tracking import baselines, data


def test_chained_constant_flow_is_exact():
    forward = np.broadcast_to(np.array([1.5, -0.5], np.float32), (1, 5, 16, 20, 2))
    queries = np.array([[[0, 2.0, 10.0], [2, 5.0, 5.0]]], np.float32)
    tracks, visible = baselines.chain_flows(forward, queries, -forward, threshold=0.1)
    t = np.arange(6)[:, None]
    np.testing.assert_allclose(tracks[0, :, 0], np.array([2, 10]) + t * [1.5, -0.5], atol=1e-5)
    np.testing.assert_allclose(tracks[0, :, 1], np.array([5, 5]) + np.maximum(t - 2, 0) * [1.5, -0.5], atol=1e-5)
    np.testing.assert_array_equal(visible[0, :, 1], [False, False, True, True, True, True])
    assert visible[0, :, 0].all()
    _, visible = baselines.chain_flows(forward, queries, forward, threshold=0.1)  # backward flow disagrees
    assert not visible[0, 1:, 0].any()
    x_out = baselines.chain_flows(forward * 10, queries)[1]  # moves out of the 20 px frame
    assert not x_out[0, -1, 0]


def test_zero_motion_and_bad_queries():
    queries = np.array([[[1, 3.0, 4.0]]])
    tracks, visible = baselines.zero_motion(queries, 3)
    np.testing.assert_array_equal(tracks[0, :, 0], [[3, 4]] * 3)
    np.testing.assert_array_equal(visible[0, :, 0], [False, True, True])
    with pytest.raises(ValueError, match="query frames"):
        baselines.zero_motion(queries, 1)
    with pytest.raises(ValueError, match="backward"):
        baselines.chain_flows(np.zeros((1, 2, 8, 8, 2)), queries, np.zeros((1, 2, 8, 9, 2)))


def test_frame_flow_carries_each_pixel_with_its_layer():
    rng = np.random.default_rng(3)
    c = data.clip(rng, data.photographs("train"), (40, 48), 4, 8, noise=0.0, photometric=0.0)
    flow = data.frame_flow(c["maps"], c["label"], 1)
    t = c["queries"][:, 0].astype(int)
    for p in np.nonzero(t <= 1)[0]:  # points whose track is defined by frame 1
        x, y = c["tracks"][1, p]
        if c["visible"][1, p] and x == np.round(x) and y == np.round(y):
            np.testing.assert_allclose(c["tracks"][2, p] - c["tracks"][1, p], flow[int(y), int(x)], atol=1e-4)
    y, x = np.mgrid[0:40, 0:48]
    k = c["label"][1]
    moved = data.apply_homography(np.linalg.inv(c["maps"][k, 2]),
                                  data.apply_homography(c["maps"][k, 1], np.stack([x, y], -1)[..., None, :]))[..., 0, :]
    np.testing.assert_allclose(flow, moved - np.stack([x, y], -1), atol=1e-4)


def test_lucas_kanade_follows_a_translating_texture():
    pytest.importorskip("cv2", reason="opencv-python-headless is a benchmark dependency (requirements-bench.txt)")
    from experiments.bench.tracking import lucas_kanade

    texture = data.photographs("val")[0]
    frames = np.stack([texture[40:104, 60 + 2 * t:124 + 2 * t] for t in range(6)])[None]  # content moves 2 px left
    queries = np.array([[[0, 30.0, 30.0], [2, 20.0, 40.0]]], np.float32)
    tracks, visible = lucas_kanade(frames, queries, win=15, levels=2, threshold=1.0)
    t = np.arange(6)
    np.testing.assert_allclose(tracks[0, :, 0, 0], 30 - 2 * t, atol=0.2)
    np.testing.assert_allclose(tracks[0, 2:, 1, 0], 20 - 2 * t[:4], atol=0.2)
    np.testing.assert_array_equal(visible[0, :2, 1], [False, False])
    assert visible[0, :, 0].all() and visible[0, 2:, 1].all()
