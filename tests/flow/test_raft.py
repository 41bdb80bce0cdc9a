"""RAFT: parameter counts, shapes, padding, upsampling, loss and metrics, overfitting, bad input."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.flow import raft
from jaxdiff.flow.data import make_dataset
from jaxdiff.flow.viz import flow_to_colour

X64 = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)


def _abstract_variables(model, image=X64):
    return jax.eval_shape(lambda a, b: model.init(jax.random.key(0), a, b, 1), image, image)


def _count(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("small, expected", [(False, 5_257_536), (True, 990_162)])
def test_parameter_count_matches_reference(small, expected):
    variables = _abstract_variables(raft.RAFT(small=small))
    assert _count(variables["params"]) == expected
    assert ("batch_stats" in variables) == (not small)  # statistics are not parameters


@pytest.mark.parametrize("small", [False, True])
def test_output_shapes(small):
    model = raft.RAFT(small=small)
    variables = _abstract_variables(model)
    image = jax.ShapeDtypeStruct((2, 64, 80, 3), jnp.float32)
    out = jax.eval_shape(lambda v, a, b: model.apply(v, a, b, 3), variables, image, image)
    chex.assert_shape(out, (3, 2, 64, 80, 2))
    init = jax.ShapeDtypeStruct((2, 8, 10, 2), jnp.float32)
    out = jax.eval_shape(lambda v, a, b, f: model.apply(v, a, b, 2, flow_init=f), variables, image, image, init)
    chex.assert_shape(out, (2, 2, 64, 80, 2))


def test_batch_norm_is_mutable_in_training_unless_frozen():
    variables = _abstract_variables(raft.RAFT())
    _, updates = jax.eval_shape(
        lambda v, x: raft.RAFT().apply(v, x, x, 1, train=True, mutable=["batch_stats"]), variables, X64
    )
    assert _count(updates["batch_stats"]) == 2880
    frozen = jax.eval_shape(lambda v, x: raft.RAFT(freeze_bn=True).apply(v, x, x, 1, train=True), variables, X64)
    chex.assert_shape(frozen, (1, 1, 64, 64, 2))


def test_estimate_flow_pads_and_unpads():
    model = raft.RAFT(small=True)
    variables = _abstract_variables(model)
    image = jax.ShapeDtypeStruct((1, 61, 70, 3), jnp.float32)
    out = jax.eval_shape(lambda v, a, b: raft.estimate_flow(model, v, a, b, 2), variables, image, image)
    chex.assert_shape(out, (1, 61, 70, 2))


def test_pad_unpad_round_trip():
    x = jax.random.normal(jax.random.key(0), (2, 37, 50, 3))
    padded, pads = raft.pad_to_multiple(x, 8)
    assert padded.shape == (2, 40, 56, 3) and pads == (1, 2, 3, 3)
    np.testing.assert_array_equal(raft.unpad(padded, pads), x)
    np.testing.assert_array_equal(padded[:, 0], padded[:, 1])  # edge padding
    same, none = raft.pad_to_multiple(padded, 8)
    assert none == (0, 0, 0, 0) and same.shape == padded.shape


# ----------------------------------------------------------------------------- upsampling


def test_convex_upsampling_of_constant_flow_is_exact():
    flow = jnp.broadcast_to(jnp.array([1.5, -2.25]), (2, 5, 6, 2))
    mask = 3 * jax.random.normal(jax.random.key(1), (2, 5, 6, 576))
    up = raft.upsample_convex(flow, mask)
    chex.assert_shape(up, (2, 40, 48, 2))
    # Interior: every neighbour holds the flow; the border sees the reference's zero padding.
    np.testing.assert_allclose(up[:, 8:-8, 8:-8], np.broadcast_to([12.0, -18.0], (2, 24, 32, 2)), atol=1e-5)
    peaked = jnp.zeros((2, 5, 6, 9, 64)).at[:, :, :, 4].set(50.0).reshape(2, 5, 6, 576)
    np.testing.assert_allclose(raft.upsample_convex(flow, peaked), np.broadcast_to([12.0, -18.0], up.shape),
                               atol=1e-5)
    np.testing.assert_allclose(raft.upsample_bilinear(flow), np.broadcast_to([12.0, -18.0], up.shape), atol=1e-5)


def test_convex_upsampling_matches_reference_layout():
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    rng = np.random.default_rng(0)
    flow = rng.standard_normal((1, 3, 4, 2)).astype(np.float32)
    mask = rng.standard_normal((1, 3, 4, 576)).astype(np.float32)
    # RAFT's upsample_flow, NCHW.
    m = torch.softmax(torch.from_numpy(mask).permute(0, 3, 1, 2).reshape(1, 1, 9, 8, 8, 3, 4), dim=2)
    unfolded = f.unfold(8 * torch.from_numpy(flow).permute(0, 3, 1, 2), [3, 3], padding=1).view(1, 2, 9, 1, 1, 3, 4)
    ref = torch.sum(m * unfolded, dim=2).permute(0, 1, 4, 2, 5, 3).reshape(1, 2, 24, 32).permute(0, 2, 3, 1)
    np.testing.assert_allclose(raft.upsample_convex(jnp.asarray(flow), jnp.asarray(mask)), ref.numpy(), atol=1e-5)
    ref8 = 8 * f.interpolate(torch.from_numpy(flow).permute(0, 3, 1, 2), size=(24, 32), mode="bilinear",
                             align_corners=True)
    np.testing.assert_allclose(raft.upsample_bilinear(jnp.asarray(flow)), ref8.permute(0, 2, 3, 1).numpy(),
                               atol=1e-5)


# ----------------------------------------------------------------------------- loss and metrics


def test_sequence_loss_weights_and_max_flow_mask():
    gt = jnp.zeros((1, 2, 2, 2)).at[0, 1, 1].set(jnp.array([500.0, 0.0]))  # one pixel beyond max_flow
    valid = jnp.array([[[True, False], [True, True]]])
    errors = jnp.array([1.0, 2.0, 4.0])
    flows = gt[None] + errors[:, None, None, None, None] * jnp.array([1.0, 0.0])
    loss, metrics = raft.sequence_loss(flows, gt, valid, gamma=0.8)
    # Two of four pixels count; |error|_1 = e on the x channel, 0 on y; mean over 8 entries.
    expected = sum(0.8 ** (2 - i) * e * 2 / 8 for i, e in enumerate([1.0, 2.0, 4.0]))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["epe"], 4.0, rtol=1e-6)
    loss_big, _ = raft.sequence_loss(flows, gt, valid, max_flow=1000.0)
    assert loss_big > loss


def test_flow_metrics_hand_case():
    gt = jnp.array([[100.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    pred = jnp.array([[104.0, 0.0], [1.0, 3.5], [0.5, 0.0], [50.0, 50.0]])
    valid = jnp.array([True, True, True, False])
    m = raft.flow_metrics(pred, gt, valid)
    # Errors 4 (4% of |gt|: not an outlier), 3.5 (outlier), 0.5; the fourth pixel is invalid.
    np.testing.assert_allclose(m["epe"], 8 / 3, rtol=1e-6)
    np.testing.assert_allclose([m["1px"], m["3px"], m["5px"]], [1 / 3, 1 / 3, 1.0], rtol=1e-6)
    np.testing.assert_allclose(m["f1"], 100 / 3, rtol=1e-5)
    np.testing.assert_allclose(raft.flow_metrics(gt, gt)["epe"], 0.0)


# ----------------------------------------------------------------------------- training


def test_overfitting_one_pair_drives_epe_down():
    # A smooth field: RAFT-small's bilinear 8x upsampling cannot draw sharp motion boundaries.
    model = raft.RAFT(small=True, corr_levels=3, unroll=1)  # rolled: compiles faster at this size
    d = make_dataset("train", 1, (32, 32), "smooth", seed=1)
    zero_epe = float(raft.flow_metrics(np.zeros_like(d["flow"]), d["flow"], d["valid"])["epe"])
    params = model.init(jax.random.key(0), d["image1"], d["image2"], 1)["params"]
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(4e-4))

    def loss(p):
        return raft.sequence_loss(model.apply({"params": p}, d["image1"], d["image2"], 3), d["flow"], d["valid"])

    @jax.jit
    def step(p, s):
        (_, m), g = jax.value_and_grad(loss, has_aux=True)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, m["epe"]

    state = opt.init(params)
    epes = []
    for _ in range(40):
        params, state, epe = step(params, state)
        epes.append(float(epe))
    chex.assert_tree_all_finite(epes)
    assert min(epes[-5:]) < 0.3 * zero_epe and min(epes[-5:]) < 0.5 * epes[0], (zero_epe, epes)


def test_correlation_kernels_give_the_same_flow():
    d = make_dataset("train", 1, (32, 32), "chairs", seed=2)
    models = {k: raft.RAFT(small=True, corr_levels=2, corr_kernel=k) for k in ("xla", "native")}
    variables = models["xla"].init(jax.random.key(1), d["image1"], d["image2"], 1)
    flows = {k: np.asarray(m.apply(variables, d["image1"], d["image2"], 3)) for k, m in models.items()}
    np.testing.assert_allclose(flows["native"], flows["xla"], rtol=1e-4, atol=1e-4)


def test_final_only_gives_the_last_scanned_flow():
    """``final_only`` (a Python loop over the scanned body's parameters, no mask head before the last
    iteration) gives the rolled scan's last flow; the default unrolls on CPU only."""
    d = make_dataset("train", 1, (32, 32), "chairs", seed=3)
    default, rolled = raft.RAFT(corr_levels=2), raft.RAFT(corr_levels=2, unroll=1)
    assert default.scan_unroll is (True if jax.default_backend() == "cpu" else 1) and rolled.scan_unroll == 1
    variables = rolled.init(jax.random.key(2), d["image1"], d["image2"], 1)
    scanned = jax.jit(lambda v: rolled.apply(v, d["image1"], d["image2"], 3))(variables)
    final = jax.jit(lambda v: default.apply(v, d["image1"], d["image2"], 3, final_only=True))(variables)
    assert final.shape == (1, *scanned.shape[1:])
    np.testing.assert_allclose(final[0], scanned[-1], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- bad input


def _apply(model, a, b, iters=1, **kw):
    variables = _abstract_variables(model)
    return jax.eval_shape(lambda v, a, b: model.apply(v, a, b, iters, **kw), variables, a, b)


def test_bad_images_raise():
    model = raft.RAFT(small=True)
    grey = jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32)
    with pytest.raises(ValueError, match="image1"):
        _apply(model, grey, grey)
    with pytest.raises(ValueError, match="image2"):
        _apply(model, X64, grey)
    odd = jax.ShapeDtypeStruct((1, 64, 60, 3), jnp.float32)
    with pytest.raises(ValueError, match="multiples of 8"):
        _apply(model, odd, odd)
    wide = jax.ShapeDtypeStruct((1, 64, 72, 3), jnp.float32)
    with pytest.raises(ValueError, match="same shape"):
        _apply(model, X64, wide)
    tiny = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    with pytest.raises(ValueError, match="corr_levels"):
        _apply(model, tiny, tiny)
    with pytest.raises(ValueError, match="flow_init"):
        _apply(model, X64, X64, flow_init=jnp.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="iters"):
        _apply(model, X64, X64, iters=0)


def test_bad_loss_and_metric_arguments_raise():
    gt = jnp.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="flows"):
        raft.sequence_loss(gt, gt, jnp.ones((1, 4, 4)))
    with pytest.raises(ValueError, match="valid"):
        raft.sequence_loss(gt[None], gt, jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="flow"):
        raft.flow_metrics(gt[..., :1], gt[..., :1])
    with pytest.raises(ValueError, match="mask"):
        raft.upsample_convex(gt, jnp.zeros((1, 4, 4, 9)))
    with pytest.raises(ValueError, match="multiple"):
        raft.pad_to_multiple(jnp.zeros((1, 4, 4, 3)), 0)


# ----------------------------------------------------------------------------- colour coding


def test_flow_to_colour():
    flow = np.zeros((2, 3, 2))
    flow[0, 0] = (1.0, 0.0)
    image = flow_to_colour(flow)
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[1, 1], [255, 255, 255])  # zero flow is white
    assert len({tuple(flow_to_colour(np.array([[[np.cos(a), np.sin(a)]]]))[0, 0]) for a in np.linspace(0, 6, 8)}) == 8
    with pytest.raises(ValueError, match="flow"):
        flow_to_colour(np.zeros((3, 3)))
