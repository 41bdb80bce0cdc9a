"""Tests for jaxdiff.nn: shapes, init-time identities, conditioning, dropout, embeddings."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nn import (
    MLP,
    DiT,
    DiTBlock,
    FourierEmbedding,
    NoiseLabelEmbedding,
    PositionalEmbedding,
    UNet,
    check_unet_image_size,
)

NUM_CLASSES = 3
B = 2
DEFAULT = object()


def _key(seed):
    """An rbg PRNG key: compiles about twice as fast as threefry on CPU."""
    return jax.random.key(seed, impl="rbg")


def _perturb(params, seed, scale=0.1):
    """Adds N(0, scale^2) to every param, on the host, so zero-initialised heads become generic."""
    rng = np.random.default_rng(seed)
    noise = lambda p: np.asarray(p) + np.float32(scale) * rng.standard_normal(p.shape, np.float32)
    return jax.tree.map(noise, params)


class Net:
    """A model, its init and perturbed params, and one jitted apply shared by all tests."""

    def __init__(self, model, x):
        self.model, self.x = model, x
        self.c = jnp.array([-0.5, 1.2])
        self.labels = jnp.array([0, 2], jnp.int32)
        self.params = jax.jit(model.init)(_key(0), x, self.c, self.labels)["params"]
        self.perturbed = _perturb(self.params, 1)

        @functools.partial(jax.jit, static_argnames="train")
        def apply(params, labels, key, train):
            rngs = {"dropout": key}
            return model.apply({"params": params}, x, self.c, labels, train=train, rngs=rngs)

        self._apply = apply

    def __call__(self, params, labels=DEFAULT, *, train=False, key=0):
        labels = self.labels if labels is DEFAULT else labels
        return self._apply(params, labels, _key(key), train)


@pytest.fixture(scope="module")
def images():
    return jax.random.normal(jax.random.key(2), (B, 8, 8, 1))


@pytest.fixture(scope="module")
def unet(images):
    model = UNet(
        channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(4,),
        dropout=0.1,
        num_classes=NUM_CLASSES,
    )
    return Net(model, images)


@pytest.fixture(scope="module")
def dit(images):
    model = DiT(patch_size=2, hidden_size=32, depth=2, num_heads=2, num_classes=NUM_CLASSES)
    return Net(model, images)


@pytest.fixture(scope="module")
def mlp():
    x = jax.random.normal(jax.random.key(3), (B, 2))
    return Net(MLP(width=32, depth=2, num_classes=NUM_CLASSES, dropout=0.1), x)


@pytest.fixture(scope="module", params=["unet", "dit", "mlp"])
def net(request):
    return request.getfixturevalue(request.param)


def test_output_shape_with_and_without_labels(net):
    for labels in (net.labels, None):
        out = net(net.perturbed, labels)
        assert out.shape == net.x.shape and out.dtype == jnp.float32
        assert np.all(np.isfinite(out))


def test_output_is_exactly_zero_at_init(net):
    np.testing.assert_array_equal(net(net.params), np.zeros(net.x.shape))


def test_params_are_float32(net):
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(net.params))


def test_labels_none_is_the_null_label(net):
    null = jnp.full((B,), NUM_CLASSES, jnp.int32)
    np.testing.assert_allclose(net(net.perturbed, None), net(net.perturbed, null), atol=1e-6)


def test_different_labels_give_different_outputs(net):
    out0 = net(net.perturbed, jnp.zeros((B,), jnp.int32))
    out1 = net(net.perturbed, jnp.ones((B,), jnp.int32))
    assert np.abs(out0 - out1).max() > 1e-4


def test_any_batch_size_and_scalar_c_noise(net):
    x = jnp.zeros((3,) + net.x.shape[1:])
    labels = jnp.zeros((3,), jnp.int32)
    apply = lambda p: net.model.apply({"params": p}, x, jnp.ones(()), labels)
    assert jax.eval_shape(apply, net.params).shape == x.shape


@pytest.mark.parametrize("name", ["unet", "mlp"])
def test_dropout_only_in_train_mode(request, name):
    net = request.getfixturevalue(name)
    train0 = net(net.perturbed, train=True, key=0)
    train1 = net(net.perturbed, train=True, key=1)
    assert np.abs(train0 - train1).max() > 1e-4
    np.testing.assert_array_equal(net(net.perturbed, key=0), net(net.perturbed, key=1))


def test_eval_needs_no_dropout_rng(mlp):
    out = mlp.model.apply({"params": mlp.perturbed}, mlp.x, mlp.c, mlp.labels)
    np.testing.assert_allclose(out, mlp(mlp.perturbed), atol=1e-5)


def test_dit_block_is_identity_at_init():
    block = DiTBlock(num_heads=2)
    x = jax.random.normal(jax.random.key(4), (B, 16, 32))
    c = jax.random.normal(jax.random.key(5), (B, 24))
    params = jax.jit(block.init)(_key(6), x, c)
    np.testing.assert_array_equal(jax.jit(block.apply)(params, x, c), x)


def _init_shapes(model, x, c_noise, labels=None):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, c_noise, labels))


def test_labels_without_classes_raise():
    labels = jnp.zeros(B, jnp.int32)
    with pytest.raises(ValueError, match="num_classes"):
        _init_shapes(MLP(width=8, depth=1), jnp.zeros((B, 2)), jnp.zeros(B), labels)


def test_label_table_has_a_null_row_and_is_absent_when_unconditional():
    x, c = jnp.zeros((B, 2)), jnp.zeros(B)
    params = _init_shapes(MLP(width=8, depth=1, num_classes=NUM_CLASSES), x, c)["params"]
    assert params["embed"]["map_label"]["embedding"].shape == (NUM_CLASSES + 1, 8)
    params = _init_shapes(MLP(width=8, depth=1), x, c)["params"]
    assert "map_label" not in params["embed"]


@pytest.mark.parametrize(
    "x, c_noise, labels, match",
    [
        (jnp.zeros((B, 2, 1)), jnp.zeros(B), None, "x must have shape"),
        (jnp.zeros((B, 2)), jnp.zeros((B, 1)), None, "c_noise"),
        (jnp.zeros((B, 2)), jnp.zeros(B), jnp.zeros(B), "labels"),
        (jnp.zeros((B, 2)), jnp.zeros(B), jnp.zeros(B + 1, jnp.int32), "labels"),
    ],
)
def test_bad_inputs_raise(x, c_noise, labels, match):
    with pytest.raises(ValueError, match=match):
        _init_shapes(MLP(width=8, depth=1, num_classes=NUM_CLASSES), x, c_noise, labels)


def test_check_unet_image_size():
    check_unet_image_size(16, (1, 2, 2, 2, 2))
    expected = r"image_size=8 .*4 times.*channel_mult=\(1, 2, 2, 2, 2\).*multiple of 16"
    with pytest.raises(ValueError, match=expected):
        check_unet_image_size(8, (1, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="channel_mult"):
        _init_shapes(UNet(channels=16), jnp.zeros((1, 6, 6, 1)), jnp.zeros(1))


def test_dit_patch_size_must_divide_image():
    with pytest.raises(ValueError, match="patch_size"):
        _init_shapes(DiT(patch_size=3), jnp.zeros((1, 8, 8, 1)), jnp.zeros(1))


def test_bad_embedding_name_raises():
    model = NoiseLabelEmbedding(8, 8, embedding="rope")
    with pytest.raises(ValueError, match="embedding"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(1)))


def test_fourier_frequencies_get_zero_gradient():
    model = NoiseLabelEmbedding(16, 8, embedding="fourier")
    c = jnp.array([-1.0, 0.3, 2.0])
    params = model.init(jax.random.key(0), c)["params"]
    assert params["map_noise"]["freqs"].shape == (4,)
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, c) ** 2))(params)
    np.testing.assert_array_equal(grads["map_noise"]["freqs"], np.zeros(4))
    assert np.abs(grads["map_layer0"]["kernel"]).max() > 0


def test_fourier_embedding_formula():
    c = np.array([-1.0, 0.3, 2.0], np.float32)
    model = FourierEmbedding(8)
    variables = model.init(jax.random.key(0), c)
    freqs = np.asarray(variables["params"]["freqs"], np.float64)
    assert freqs.std() > 4.0
    arg = np.outer(c, 2 * np.pi * freqs)
    expected = np.concatenate([np.cos(arg), np.sin(arg)], axis=1)
    np.testing.assert_allclose(model.apply(variables, c), expected, atol=1e-4)


@pytest.mark.parametrize("endpoint", [False, True])
def test_positional_embedding_matches_edm(endpoint):
    c = np.array([0.0, 0.25, -3.0, 999.0], np.float32)
    n, max_positions = 12, 10000
    freqs = np.arange(n // 2) / (n // 2 - (1 if endpoint else 0))
    arg = np.outer(c.astype(np.float64), (1 / max_positions) ** freqs)
    expected = np.concatenate([np.cos(arg), np.sin(arg)], axis=1)
    out = PositionalEmbedding(n, max_positions, endpoint).apply({}, c)
    assert out.shape == (4, n)
    np.testing.assert_allclose(out, expected, atol=2e-4)
