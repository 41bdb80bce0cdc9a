"""Synthetic flow data: determinism, shapes, the valid mask, warping consistency, disjoint splits."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.flow import data
from jaxdiff.flow.corr import bilinear_sample

SIZE = (48, 64)


@pytest.fixture(scope="module", params=data.KINDS)
def clean(request):
    return request.param, data.make_dataset("train", 4, SIZE, request.param, seed=3, noise=0.0)


def _grid(n):
    y, x = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    return np.broadcast_to(np.stack([x, y], -1), (n,) + SIZE + (2,)).astype(np.float32)


def _warp(image2, flow):
    """frame2 sampled at x + flow(x): frame 1 wherever the flow is right."""
    return np.asarray(bilinear_sample(jnp.asarray(image2), jnp.asarray(_grid(len(flow)) + flow)))


def test_shapes_dtypes_ranges(clean):
    _, d = clean
    chex.assert_shape([d["image1"], d["image2"], d["flow"], d["valid"]],
                      [(4, *SIZE, 3), (4, *SIZE, 3), (4, *SIZE, 2), (4, *SIZE)])
    assert d["image1"].dtype == d["image2"].dtype == d["flow"].dtype == np.float32 and d["valid"].dtype == bool
    for key in ("image1", "image2"):
        assert 0 <= d[key].min() and d[key].max() <= 255 and d[key].std() > 10
    magnitude = np.linalg.norm(d["flow"], axis=-1)
    assert 1 < magnitude.mean() < 20
    assert 0.3 < d["valid"].mean() <= 1


def test_deterministic_in_seed():
    a = data.make_dataset("val", 2, SIZE, "chairs", seed=5)
    b = data.make_dataset("val", 2, SIZE, "chairs", seed=5)
    c = data.make_dataset("val", 2, SIZE, "chairs", seed=6)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a["flow"], c["flow"])


def test_frame2_warped_by_flow_reconstructs_frame1(clean):
    _, d = clean
    valid = d["valid"]
    err = np.abs(_warp(d["image2"], d["flow"]) - d["image1"]).mean(-1)
    reverse = np.abs(_warp(d["image2"], -d["flow"]) - d["image1"]).mean(-1)
    assert err[valid].mean() < 1.5, err[valid].mean()  # bilinear resampling twice
    assert np.median(err[valid]) < 0.5
    assert err[valid].mean() < 0.1 * reverse[valid].mean()  # the direction matters


def test_noise_is_photometric_only():
    d = data.make_dataset("train", 2, SIZE, "smooth", seed=3, noise=2.0)
    clean = data.make_dataset("train", 2, SIZE, "smooth", seed=3, noise=0.0)
    chex.assert_trees_all_equal((d["flow"], d["valid"]), (clean["flow"], clean["valid"]))
    err = np.abs(_warp(d["image2"], d["flow"]) - d["image1"]).mean(-1)
    assert 1 < err[d["valid"]].mean() < 4  # noise std 2 per frame


def test_valid_mask_semantics(clean):
    kind, d = clean
    target = _grid(4) + d["flow"]
    h, w = SIZE
    inside = (target[..., 0] >= 0) & (target[..., 0] <= w - 1) & (target[..., 1] >= 0) & (target[..., 1] <= h - 1)
    assert not (d["valid"] & ~inside).any()  # valid targets lie in frame 2
    if kind == "smooth":
        np.testing.assert_array_equal(d["valid"], inside)  # one layer: nothing is occluded
    else:
        assert (inside & ~d["valid"]).any()  # occlusions behind the moving objects
        jump = np.abs(np.diff(d["flow"], axis=2)).max()
        assert jump > 2  # motion boundaries


def test_train_and_val_photographs_are_disjoint(monkeypatch):
    assert not set(data.TRAIN_IMAGES) & set(data.VAL_IMAGES)
    used = set()
    texture = data._texture

    def spy(name):
        used.add(name)
        return texture(name)

    monkeypatch.setattr(data, "_texture", spy)
    data.make_dataset("val", 6, SIZE, "chairs", seed=0)
    assert used and used <= set(data.VAL_IMAGES)
    used.clear()
    data.make_dataset("train", 6, SIZE, "chairs", seed=0)
    assert used and used <= set(data.TRAIN_IMAGES)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(split="test"), "split"),
        (dict(kind="sintel"), "kind"),
        (dict(num_pairs=0), "num_pairs"),
        (dict(size=(4, 64)), "size"),
        (dict(noise=-1.0), "noise"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    args = dict(split="train", num_pairs=1, size=SIZE, kind="smooth", seed=0) | kwargs
    with pytest.raises(ValueError, match=name):
        data.make_dataset(**args)
