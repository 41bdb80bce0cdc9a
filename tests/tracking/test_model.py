"""The tracker: correlation paths, shapes and masks, sliding windows, translation equivariance, joint vs
alone, overfitting one clip, bad input. A tiny model on 32x32 clips; compiled functions are shared."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.tracking import correlation, data
from jaxdiff.tracking.model import CoTracker, support_grid, to_features, to_pixels

TINY = CoTracker(window=4, iters=2, levels=2, dim=16, width=8, hidden=16, heads=2, depth=1, virtual=4)
MATCH = CoTracker(**{**TINY.__dict__, "initial": "match"})
SIZE = (32, 32)


@pytest.fixture(scope="module")
def clip():
    d = data.make_videos("train", 1, SIZE, 8, 6, seed=0)
    d["queries"][0, :2] = [[7, 10, 12], [3, 20, 8]]  # a point queried in the last frame, one mid-window
    return d


@pytest.fixture(scope="module")
def params():
    p = TINY.init(jax.random.key(0))
    # larger position and visibility heads than at initialisation, so updates are not ~0
    head = p["updater"]["position_head"]
    head["kernel"] = jax.random.normal(jax.random.key(1), head["kernel"].shape) * 0.05
    p["updater"]["visibility_head"]["kernel"] = jnp.ones_like(p["updater"]["visibility_head"]["kernel"]) * 0.1
    return p


@pytest.fixture(scope="module")
def forward():
    return jax.jit(TINY.forward)


def test_correlation_all_pairs_equals_on_the_fly():
    k = jax.random.split(jax.random.key(0), 3)
    fmaps = jax.random.normal(k[0], (2, 3, 12, 10, 8))
    levels = correlation.pyramid(fmaps, 3)
    features = jax.random.normal(k[1], (2, 5, 8))
    coords = jax.random.uniform(k[2], (2, 3, 5, 2), minval=-2, maxval=13)  # some windows leave the map
    a = correlation.windows_all_pairs(correlation.volumes(features, levels), coords, 2)
    b = correlation.windows_on_the_fly(features, levels, coords, 2)
    chex.assert_shape(a, (2, 3, 5, 3 * 25))
    np.testing.assert_allclose(a, b, atol=1e-5)
    # channel l (2r+1)² + (dx + r)(2r+1) + (dy + r) at an integer position is the pooled feature there
    c = jnp.full((2, 3, 5, 2), 4.0)
    window = correlation.windows_all_pairs(correlation.volumes(features, levels), c, 2)
    np.testing.assert_allclose(window[0, 1, 2, 25 + 3 * 5 + 1], features[0, 2] @ levels[1][0, 1, 1, 3], rtol=1e-5)


@pytest.mark.parametrize("stride", [4, 2])
def test_feature_pixel_centres(stride):
    """Feature pixel j is centred on image pixel s j + (s - 1) / 2: the encoder with its kernels mirrored
    maps a mirrored frame to the mirrored features, so the centres c_j of a W-pixel frame's w = W / s
    feature pixels satisfy c_j + c_(w-1-j) = W - 1, and the grid's step is s."""
    encoder = CoTracker(**{**TINY.__dict__, "stride": stride}).encoder
    frame = jax.random.uniform(jax.random.key(2), (1, 16, 24, 3), minval=-1, maxval=1)
    params = encoder.init(jax.random.key(0), frame)
    mirrored = jax.tree.map(lambda x: x[:, ::-1] if x.ndim == 4 else x, params)  # kernels (kh, kw, in, out)
    out = encoder.apply(params, frame)
    chex.assert_shape(out, (1, 16 // stride, 24 // stride, 16))
    np.testing.assert_allclose(encoder.apply(mirrored, frame[:, :, ::-1])[:, :, ::-1], out, atol=1e-5)
    w = out.shape[2]
    centres = to_pixels(jnp.arange(w, dtype=jnp.float32), stride)
    np.testing.assert_allclose(centres + centres[::-1], 24 - 1)
    np.testing.assert_allclose(to_features(centres, stride), np.arange(w))


def test_best_match_argmax_soft_argmax_and_chunks():
    """A correlation bump centred between pixels, symmetric about (4.5, 3) on a 10 x 7 map: a radius-0
    window gives the argmax pixel, one covering the map the bump's centre; chunks change nothing."""
    xs, ys = np.arange(10), np.arange(7)
    bump = np.exp(-((xs[None] - 4.5) ** 2 + (ys[:, None] - 3) ** 2) / 4)
    fmaps = jnp.asarray(np.stack([bump, 1 - bump], -1), jnp.float32)[None, None].repeat(3, 1)  # (1, 3, 7, 10, 2)
    features = jnp.array([[[1.0, 0.0]]])
    np.testing.assert_array_equal(correlation.best_match(features, fmaps, 5.0, 0), np.full((1, 3, 1, 2), [4, 3]))
    centre = correlation.best_match(features, fmaps, 5.0, 10)
    np.testing.assert_allclose(centre, np.full((1, 3, 1, 2), [4.5, 3]), atol=1e-5)
    np.testing.assert_array_equal(correlation.best_match(features, fmaps, 5.0, 10, chunk=2), centre)


def test_match_loss_is_the_cross_entropy_at_the_true_position():
    """Point 0 sits on feature pixels, point 1 half-way between two in frame 2 (weights 1/2 each) and is
    hidden in frame 1; the query frame is not scored."""
    k = jax.random.split(jax.random.key(3), 2)
    fmaps = jax.random.normal(k[0], (1, 3, 5, 6, 4))
    queries = jnp.array([[[0, to_pixels(2.0, 4), to_pixels(1.0, 4)], [0, to_pixels(3.0, 4), to_pixels(0.0, 4)]]])
    cells = np.array([[[2, 1], [2, 1]], [[0, 4], [3, 2]], [[5, 3], [3.5, 4]]])  # (T, N, (x, y)) feature pixels
    tracks, visible = to_pixels(jnp.asarray(cells, jnp.float32), 4)[None], jnp.array([[[1, 1], [1, 0], [1, 1]]])
    logp = jax.nn.log_softmax(correlation.match_logits(MATCH.track_features(fmaps, queries), fmaps, 20.0)
                              .reshape(1, 3, 2, -1), -1).reshape(3, 2, 5, 6)
    expected = -np.mean([logp[1, 0, 4, 0], logp[2, 0, 3, 5], 0.5 * (logp[2, 1, 4, 3] + logp[2, 1, 4, 4])])
    np.testing.assert_allclose(MATCH.match_loss(fmaps, queries, tracks, visible), expected, rtol=1e-5)


def test_match_initialisation(clip):
    """With a zero position head nothing moves: every frame stays at the track's best match, the query
    frame at the query point, through the sliding windows (copied halves included)."""
    params = MATCH.init(jax.random.key(0))
    params["updater"]["position_head"]["kernel"] = jnp.zeros_like(params["updater"]["position_head"]["kernel"])
    video, queries = jnp.asarray(clip["video"]), jnp.asarray(clip["queries"])
    coords, _, _ = jax.jit(MATCH.forward)(params, video, queries)
    fmaps = MATCH.features(params, video)
    best = correlation.best_match(MATCH.track_features(fmaps, queries), fmaps, MATCH.match_temperature,
                                  MATCH.match_radius)
    query = np.arange(8)[None, :, None] == np.asarray(queries[..., 0])[:, None]
    expected = np.where(query[..., None], to_features(queries[:, None, :, 1:], 4), best)
    np.testing.assert_allclose(coords[:, :8], expected, atol=1e-4)
    assert float(jnp.abs(best - to_features(queries[:, None, :, 1:], 4)).max()) > 1  # matches, not zero motion


def test_shapes_initial_tracks_and_frames_before_the_query(clip):
    params = TINY.init(jax.random.key(0))
    tracks, vis = TINY.track(params, clip["video"], clip["queries"])
    chex.assert_shape([tracks, vis], [(1, 8, 6, 2), (1, 8, 6)])
    query = clip["queries"][:, None, :, 1:]
    assert float(jnp.abs(tracks - query).max()) < 0.5  # the position head starts near 0: about zero motion
    before = np.arange(8)[None, :, None] < clip["queries"][:, None, :, 0]
    assert before.any()
    np.testing.assert_array_equal(np.asarray(tracks)[before], np.broadcast_to(query, tracks.shape)[before])
    assert np.all(np.asarray(vis)[before] == 0) and np.all((0 <= np.asarray(vis)) & (np.asarray(vis) <= 1))


def test_a_window_alone_equals_the_window_inside_the_clip(clip, params, forward):
    video, queries = jnp.asarray(clip["video"]), jnp.asarray(clip["queries"])
    coords, vis, (cs, vs) = forward(params, video, queries)
    count, padded = TINY.windows(8)
    assert cs.shape == (count, TINY.iters, 1, 4, 6, 2) and coords.shape == (1, padded, 6, 2)
    fmaps = jax.jit(TINY.features)(params, video)
    levels = [level[:, 2:6] for level in correlation.pyramid(fmaps, TINY.levels)]  # window 1: frames 2..5
    frames = queries[..., 0].astype(int) - 2
    copy = (frames < 2)[:, None, :]
    prev, prev_vis = cs[0, -1][:, 2:4], vs[0, -1][:, 2:4]  # window 0's estimates of frames 2, 3
    init = jnp.where(copy[..., None], jnp.concatenate([prev, prev[:, -1:], prev[:, -1:]], 1),
                     to_features(queries[:, None, :, 1:], 4))
    vis0 = jnp.where(copy, jnp.concatenate([prev_vis, prev_vis[:, -1:], prev_vis[:, -1:]], 1), 0.0)
    alone = jax.jit(TINY.refine_window)(params, levels, TINY.track_features(fmaps, queries), frames, init, vis0)
    np.testing.assert_allclose(alone[0], cs[1], atol=1e-5)
    np.testing.assert_allclose(alone[1], vs[1], atol=1e-5)
    # end to end: the first window alone (the clip's first 4 frames) gives the clip's first 2 frames
    first = queries.at[..., 0].min(3).at[..., 1:].set(queries[..., 1:])
    tracks, visibility = TINY.track(params, video, first)
    short, short_vis = TINY.track(params, video[:, :4], first)
    np.testing.assert_allclose(short[:, :2], tracks[:, :2], atol=1e-5)
    np.testing.assert_allclose(short_vis[:, :2], visibility[:, :2], atol=1e-6)


def test_all_pairs_and_on_the_fly_trackers_agree(clip, params):
    tracks, vis = TINY.track(params, clip["video"], clip["queries"])
    fly = CoTracker(**{**TINY.__dict__, "corr": "on_the_fly"})
    tracks2, vis2 = fly.track(params, clip["video"], clip["queries"])
    np.testing.assert_allclose(tracks, tracks2, atol=1e-4)
    np.testing.assert_allclose(vis, vis2, atol=1e-5)
    assert TINY.corr_mode(1, 1024, 270, 480) == "on_the_fly" and TINY.corr_mode(1, 64, 16, 16) == "all_pairs"


@pytest.mark.parametrize("stride", [4, 2])
def test_translation_equivariance(clip, params, stride):
    """The clip on a black canvas, placed one stride of the coarsest level further right and down (8 px at
    stride 4, 4 px at 2): the tracks move with it and nothing else changes, as long as no computation
    reaches the canvas border."""
    model = CoTracker(**{**TINY.__dict__, "stride": stride})
    if stride != TINY.stride:
        params = {"encoder": model.init(jax.random.key(0))["encoder"], "updater": params["updater"]}
    shift = model.min_size()

    def place(offset):
        canvas = np.zeros((1, 8, 160, 160, 3), np.float32)
        canvas[:, :, offset:offset + 32, offset:offset + 32] = clip["video"]
        return canvas, clip["queries"] + [0, offset, offset]

    a, va = model.track(params, *place(56))
    b, vb = model.track(params, *place(56 + shift))
    np.testing.assert_allclose(np.asarray(b) - shift, a, atol=1e-4)
    np.testing.assert_allclose(vb, va, atol=1e-5)
    assert float(np.abs(np.asarray(a) - clip["queries"][:, None, :, 1:] - 56).max()) > 0.1  # the tracks move


def test_masks_and_joint_tracking(clip, params, forward):
    """A point not yet queried in a window is invisible to the others there; an active point changes the
    others' estimates through space attention, unless points are tracked alone (virtual=0)."""
    video, queries = jnp.asarray(clip["video"]), jnp.asarray(clip["queries"]).at[:, 1:, 0].set(0)

    def others(forward, params, frame, xy):  # the estimates of points 1.. with point 0 queried at (frame, xy)
        q = queries.at[0, 0].set(jnp.array([frame, *xy], jnp.float32))
        return forward(params, video, q)[2][0][..., 1:, :]

    late_a, late_b = others(forward, params, 7, (5, 5)), others(forward, params, 7, (25, 20))
    np.testing.assert_array_equal(late_a[:2], late_b[:2])  # windows 0, 1: point 0 is inactive
    assert float(jnp.abs(late_a[2] - late_b[2]).max()) > 1e-3  # window 2: it is read
    early_a, early_b = others(forward, params, 0, (5, 5)), others(forward, params, 0, (25, 20))
    assert float(jnp.abs(early_a[0] - early_b[0]).max()) > 1e-3
    alone = CoTracker(**{**TINY.__dict__, "virtual": 0})
    p = alone.init(jax.random.key(0))
    p["updater"]["position_head"] = params["updater"]["position_head"]
    single = jax.jit(alone.forward)
    np.testing.assert_array_equal(others(single, p, 0, (5, 5)), others(single, p, 0, (25, 20)))


def test_support_grid(clip, params):
    """The support points are tiles' centres, dropped from the outputs; they change the queries' tracks
    through space attention, and nothing when every point is tracked alone."""
    grid = support_grid(3, 32, 48)
    np.testing.assert_allclose(grid[:3], [[0, 7.5, 32 / 6 - 0.5], [0, 23.5, 32 / 6 - 0.5], [0, 39.5, 32 / 6 - 0.5]])
    np.testing.assert_allclose(grid[:, 1:] + grid[::-1, 1:], np.broadcast_to([47, 31], (9, 2)), atol=1e-5)  # mirrored
    video, queries = clip["video"], clip["queries"]
    tracks, vis = TINY.track(params, video, queries)
    with_grid, with_grid_vis = TINY.track(params, video, queries, support=3)
    chex.assert_equal_shape([tracks, with_grid])
    chex.assert_equal_shape([vis, with_grid_vis])
    assert float(jnp.abs(with_grid - tracks).max()) > 1e-3
    alone = CoTracker(**{**TINY.__dict__, "virtual": 0})
    p = alone.init(jax.random.key(0))
    p["updater"]["position_head"] = params["updater"]["position_head"]
    np.testing.assert_allclose(alone.track(p, video, queries, support=3)[0], alone.track(p, video, queries)[0],
                               atol=1e-5)
    with pytest.raises(ValueError, match="support"):
        TINY.track(params, video, queries, support=-1)


def test_overfits_one_clip():
    d = data.make_videos("train", 1, SIZE, 8, 6, seed=5)
    batch = {k: jnp.asarray(v) for k, v in d.items()}
    params = TINY.init(jax.random.key(0))
    opt = optax.adam(3e-3)

    @jax.jit
    def step(p, s):
        (loss, terms), g = jax.value_and_grad(TINY.loss, has_aux=True)(p, batch)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, terms

    state = opt.init(params)
    _, _, first = step(params, state)
    for _ in range(150):
        params, state, terms = step(params, state)
    assert float(terms["loss"]) < 0.3 * float(first["loss"])
    assert float(terms["epe"]) < 0.3 * float(first["epe"])


@pytest.mark.parametrize("change, match", [
    (lambda v, q: (v[:, :3], q.at[..., 0].set(0)), "fewer than one window"),
    (lambda v, q: (v, q.at[0, 0, 0].set(8)), "query frames"),
    (lambda v, q: (v, q.at[0, 0, 0].set(1.5)), "query frames"),
    (lambda v, q: (v, q.at[0, 0, 1].set(31.5)), "points"),
    (lambda v, q: (v, q.at[0, 0, 2].set(-0.1)), "points"),
    (lambda v, q: (v.at[0, 1, 2, 3, 0].set(jnp.nan), q), "video must be finite"),
    (lambda v, q: (v.at[0, 1, 2, 3, 0].set(jnp.inf), q), "video must be finite"),
    (lambda v, q: (v, q.at[0, 0, 1].set(jnp.nan)), "queries must be finite"),
    (lambda v, q: (v[..., :2], q), "video must have shape"),
    (lambda v, q: (v, q[..., :2]), "queries must have shape"),
    (lambda v, q: (v[:, :, :7], q), "at least 8 pixels"),
])
def test_bad_input_names_the_argument(clip, change, match):
    video, queries = change(jnp.asarray(clip["video"]), jnp.asarray(clip["queries"]).at[..., 0].set(0))
    with pytest.raises(ValueError, match=match):
        TINY.track(None, video, queries)


def test_bad_settings():
    for kwargs, match in [(dict(window=5), "window"), (dict(hidden=30, heads=4), "hidden"),
                          (dict(corr="dense"), "corr"), (dict(virtual=-1), "virtual"),
                          (dict(initial="zero"), "initial"), (dict(stride=8), "stride")]:
        with pytest.raises(ValueError, match=match):
            CoTracker(**kwargs)
