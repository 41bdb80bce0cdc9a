"""Synthetic videos: shapes, determinism, the query-first protocol, and ground truth that is exact.

With linear-ramp textures, an affine camera and no noise or gain change, every layer's colour is
an affine function of the frame pixel, which bilinear interpolation reproduces exactly: a visible
point's neighbourhood in frame t must then equal, to float precision, its neighbourhood in its
query frame mapped through the layer's motion, and a hidden point must show another colour.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.tracking import data

SIZE = (48, 64)  # H, W


def ramps(count: int = 6, side: int = 1024) -> list[np.ndarray]:
    """Textures whose colour is an affine function of (u, v) in [0, 255], different for each texture."""
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:side, 0:side].astype(np.float64)
    out = []
    for _ in range(count):
        a, b = rng.uniform(0.02, 0.12, (2, 3))
        c = rng.uniform(0, 255 - (a + b) * (side - 1), 3)
        out.append(a * u[..., None] + b * v[..., None] + c)
    return out


@pytest.fixture(scope="module")
def exact():
    rng = np.random.default_rng(1)
    return [data.clip(rng, ramps(), SIZE, 12, 200, noise=0.0, photometric=0.0, perspective=0.0) for _ in range(3)]


def bilinear(video: np.ndarray, label: np.ndarray, t: np.ndarray, xy: np.ndarray):
    """Colours (..., 3) of frames ``t`` (...) of ``video`` (T, H, W, 3) at ``xy`` (..., 2); whether all four taps
    lie in the frame and show one layer; that layer (...)."""
    h, w = video.shape[1:3]
    x0, y0 = np.floor(xy[..., 0]).astype(int), np.floor(xy[..., 1]).astype(int)
    ok = (x0 >= 0) & (y0 >= 0) & (x0 + 1 <= w - 1) & (y0 + 1 <= h - 1)
    x0, y0 = np.clip(x0, 0, w - 2), np.clip(y0, 0, h - 2)
    fx, fy = (xy[..., 0] - x0)[..., None], (xy[..., 1] - y0)[..., None]
    colour = ((1 - fx) * (1 - fy) * video[t, y0, x0] + fx * (1 - fy) * video[t, y0, x0 + 1]
              + (1 - fx) * fy * video[t, y0 + 1, x0] + fx * fy * video[t, y0 + 1, x0 + 1])
    taps = np.stack([label[t, y0, x0], label[t, y0, x0 + 1], label[t, y0 + 1, x0], label[t, y0 + 1, x0 + 1]])
    return colour, ok & np.all(taps == taps[0], 0), taps[0]


def test_shapes_dtypes_and_determinism():
    d = data.make_videos("train", 2, SIZE, 10, 16, seed=3)
    assert d["video"].shape == (2, 10, *SIZE, 3) and d["video"].dtype == np.float32
    assert d["queries"].shape == (2, 16, 3) and d["tracks"].shape == (2, 10, 16, 2)
    assert d["visible"].shape == (2, 10, 16) and d["visible"].dtype == bool and d["layer"].shape == (2, 16)
    assert 0 <= d["video"].min() and d["video"].max() <= 255 and d["video"].std() > 10
    again = data.make_videos("train", 2, SIZE, 10, 16, seed=3)
    for key in d:
        np.testing.assert_array_equal(d[key], again[key])
    one = data.VideoSource("train", 100, SIZE, 10, 16, seed=3).get(np.array([1]))
    np.testing.assert_array_equal(one["tracks"][0], d["tracks"][1])  # a clip is rebuilt from its index alone
    assert not np.array_equal(data.make_videos("train", 1, SIZE, 10, 16, seed=4)["video"][0], d["video"][0])


def test_queries_are_first_visible_frames():
    d = data.make_videos("val", 4, SIZE, 12, 64, seed=0)
    t = d["queries"][..., 0].astype(int)
    b, n = np.indices(t.shape)
    assert d["visible"][b, t, n].all()
    np.testing.assert_array_equal(d["queries"][..., 1:], d["tracks"][b, t, n])
    before = np.arange(12)[None, :, None] < t[:, None, :]
    assert not (d["visible"] & before).any()
    assert (t > 0).any() and (t == 0).any() and (t <= 10).all()
    assert (d["layer"] > 0).mean() > 0.3  # about half the points lie on sprites


def test_points_outside_the_frame_are_invisible():
    d = data.make_videos("train", 6, SIZE, 24, 64, seed=2)
    x, y = d["tracks"][..., 0], d["tracks"][..., 1]
    outside = (x < 0) | (x > SIZE[1] - 1) | (y < 0) | (y > SIZE[0] - 1)
    assert outside.any()
    assert not (d["visible"] & outside).any()
    after = np.arange(24)[None, :, None] > d["queries"][:, None, :, 0]
    hidden = ~d["visible"] & ~outside & after
    assert hidden.any()  # sprites occlude points


def test_visible_neighbourhoods_match_the_query_frame_exactly(exact):
    """Frame t at a visible point's track plus d equals its query frame at the query point plus J d, where J is
    the linear part of the layer's motion M_k(t_q)^-1 M_k(t) (affine here), for offsets d in {-1, 0, 1}²."""
    d = np.stack(np.meshgrid([-1.0, 0, 1], [-1.0, 0, 1]), -1).reshape(-1, 2)
    checked = 0
    for c in exact:
        t, p = np.nonzero(c["visible"] & (np.arange(len(c["video"]))[:, None] > c["queries"][:, 0]))
        k, tq = c["layer"][p], c["queries"][p, 0].astype(int)
        here = c["tracks"][t, p][:, None] + d  # (P, 9, 2)
        jacobian = (np.linalg.inv(c["maps"][k, tq]) @ c["maps"][k, t])[:, :2, :2]
        there = c["tracks"][tq, p][:, None] + d @ np.swapaxes(jacobian, 1, 2)
        a, ok_a, la = bilinear(c["video"], c["label"], t[:, None], here)
        b, ok_b, lb = bilinear(c["video"], c["label"], tq[:, None], there)
        use = ok_a & ok_b & (la == k[:, None]) & (lb == k[:, None])
        np.testing.assert_allclose(a[use], b[use], atol=2e-3)
        checked += use.sum()
    assert checked > 5000


def test_visibility_agrees_with_the_layering(exact):
    """Where the four pixels around a point show one layer: visible points show their own layer, points inside
    the frame but flagged hidden a layer in front of theirs."""
    own = front = 0
    for c in exact:
        t = np.arange(len(c["video"]))[:, None]
        _, ok, shown = bilinear(c["video"], c["label"], t, c["tracks"])
        vis, hid = c["visible"] & ok, ~c["visible"] & ok
        layer = np.broadcast_to(c["layer"], shown.shape)
        assert np.all(shown[vis] == layer[vis]) and np.all(shown[hid] > layer[hid])
        own, front = own + vis.sum(), front + hid.sum()
    assert own > 1000 and front > 50


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="split"):
        data.make_videos("test", 1)
    with pytest.raises(ValueError, match="num_videos"):
        data.make_videos("train", 0)
    with pytest.raises(ValueError, match="size"):
        data.make_videos("train", 1, (8, 64))
    with pytest.raises(ValueError, match="num_frames"):
        data.make_videos("train", 1, SIZE, 1)
    with pytest.raises(ValueError, match="unknown options"):
        data.make_videos("train", 1, SIZE, 4, 4, blur=1.0)


def test_train_and_validation_clips_use_disjoint_photographs(monkeypatch):
    from jaxdiff.flow import data as flow_data

    assert not set(flow_data.TRAIN_IMAGES) & set(flow_data.VAL_IMAGES)
    train, val = flow_data.photographs("train"), flow_data.photographs("val")
    assert not any(a.shape == b.shape and np.array_equal(a, b) for a in train for b in val)
    used = set()
    texture = flow_data._texture

    def spy(name):
        used.add(name)
        return texture(name)

    monkeypatch.setattr(flow_data, "_texture", spy)
    data.make_videos("val", 2, SIZE, 4, 4, seed=0)
    assert used == set(flow_data.VAL_IMAGES)
    used.clear()
    data.VideoSource("train", 10, SIZE, 4, 4).get(np.arange(2))
    assert used == set(flow_data.TRAIN_IMAGES)
