"""``jaxdiff.nn.conv``: the same convolution as ``nn.Conv``, the same derivatives to float32 rounding,
whichever path the kernel gradient takes."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nn.conv import (
    MIN_CHANNELS,
    MIN_PIXELS,
    Conv,
    conv_general_dilated,
    kernel_gradients,
)

CASES = [  # (input shape, features, kernel, stride, padding)
    ((2, 9, 7, 3), 4, (3, 3), 1, "SAME"),
    ((2, 9, 7, 3), 4, (3, 3), 2, "SAME"),
    ((2, 8, 8, 3), 5, (4, 4), 2, ((1, 1), (1, 1))),
    ((2, 6, 10, 2), 3, (2, 3), 1, "VALID"),
    ((3, 5, 5, 4), 2, (1, 1), 1, 0),
    ((2, 7, 6, 3), 4, (3, 1), (2, 1), ((2, 0), (0, 1))),
]


def _sine(apply, params, x):
    return jnp.sum(jnp.sin(apply(params, x)))


def _grads(apply, params, x, path="auto"):
    """Gradients of ``_sine`` in (params, x), traced with the ``path`` kernel gradient."""
    with kernel_gradients(path):
        return jax.jit(jax.grad(functools.partial(_sine, apply), (0, 1)))(params, x)


def _relative(a, b) -> float:
    return max(float(np.max(np.abs(u - v)) / np.max(np.abs(u))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("shape, features, kernel, stride, padding", CASES)
def test_shifted_path_matches_lax(shape, features, kernel, stride, padding):
    x = jax.random.normal(jax.random.key(0), shape)
    reference, conv = nn.Conv(features, kernel, stride, padding), Conv(features, kernel, stride, padding)
    params = reference.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, conv.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_array_equal(conv.apply(params, x), reference.apply(params, x))
    assert _relative(_grads(reference.apply, params, x), _grads(conv.apply, params, x, "shifted")) < 1e-5
    tangents = (jax.tree.map(jnp.cos, params), jnp.cos(x))
    for apply, path in ((reference.apply, "lax"), (conv.apply, "shifted")):
        with kernel_gradients(path):
            out = jax.jit(lambda p, x, tp, tx: jax.jvp(apply, (p, x), (tp, tx))[1])(params, x, *tangents)  # noqa: B023
        if path == "lax":
            expected = out
    assert _relative(expected, out) < 1e-5


def test_second_derivatives_match_lax():
    """The gradient of a function of the kernel gradient (as a gradient penalty takes)."""
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    reference, conv = nn.Conv(4, (3, 3)), Conv(4, (3, 3))
    params = reference.init(jax.random.key(1), x)

    def penalty(apply, x):
        kernel_grad = lambda x: jax.grad(functools.partial(_sine, apply))(params, x)["params"]["kernel"]
        return jax.grad(lambda x: jnp.sum(kernel_grad(x) ** 2))(x)

    with kernel_gradients("shifted"):
        shifted = jax.jit(functools.partial(penalty, conv.apply))(x)
    assert _relative(jax.jit(functools.partial(penalty, reference.apply))(x), shifted) < 1e-5


def test_auto_takes_the_shifted_path_on_large_maps():
    """"auto" differentiates through the shifted products on maps of ``MIN_PIXELS`` pixels and inputs
    of ``MIN_CHANNELS`` channels, through lax's gradient otherwise: bit for bit lax's on the smaller map
    or with fewer channels, equal only to rounding on the large one."""
    side = int(np.ceil(np.sqrt(MIN_PIXELS)))
    for size, channels in ((side, MIN_CHANNELS), (side // 2, MIN_CHANNELS), (side, MIN_CHANNELS // 2)):
        conv = Conv(2, (3, 3))
        x = jax.random.normal(jax.random.key(0), (1, size, size, channels))
        params = conv.init(jax.random.key(1), x)
        reference, auto = _grads(conv.apply, params, x, "lax")[0], _grads(conv.apply, params, x)[0]
        same = np.array_equal(reference["params"]["kernel"], auto["params"]["kernel"])
        assert same == (size < side or channels < MIN_CHANNELS) and _relative(reference, auto) < 1e-5


def test_other_convolutions_go_to_lax():
    """Grouped and dilated convolutions are lax's, derivatives included."""
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    for kwargs in ({"feature_group_count": 2}, {"kernel_dilation": 2}):
        reference, conv = nn.Conv(4, (3, 3), **kwargs), Conv(4, (3, 3), **kwargs)
        params = reference.init(jax.random.key(1), x)
        expected, grads = _grads(reference.apply, params, x), _grads(conv.apply, params, x, "shifted")
        np.testing.assert_array_equal(expected[0]["params"]["kernel"], grads[0]["params"]["kernel"])


def test_bad_path_is_named():
    with pytest.raises(ValueError, match="path must be one of"), kernel_gradients("fast"):
        pass
    x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))
    out = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=jax.lax.conv_dimension_numbers(
        x.shape, w.shape, ("NHWC", "HWIO", "NHWC")))
    assert out[0, 1, 1, 0] == 9 and out[0, 0, 0, 0] == 4
