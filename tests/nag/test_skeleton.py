"""The digits skeleton behind the property table: operators, parameter counts, batching of cells."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nag import skeleton as sk

NONE, SKIP, CONV1, CONV3, POOL = range(5)


def test_unrolled_convolution_equals_lax_conv():
    k = jax.random.normal(jax.random.key(0), (9, 3, 5))
    h = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
    ref = jax.lax.conv_general_dilated(h, k.reshape(3, 3, 3, 5), (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       precision=jax.lax.Precision.HIGHEST)
    got = jnp.dot(h.reshape(2, 48), sk._unrolled(k, 4), precision=jax.lax.Precision.HIGHEST).reshape(2, 4, 4, 5)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    pool = sk._pool(4)  # 3x3 average, padding not counted: a corner averages 4 pixels
    assert pool[0].sum() == pytest.approx(1) and np.count_nonzero(pool[0]) == 4 and np.count_nonzero(pool[5]) == 9


def test_parameter_count_matches_the_parameters_used():
    c = 4
    p = sk.init_params(jax.random.key(0), c)
    size = lambda tree: sum(np.size(x) for x in jax.tree.leaves(tree))
    fixed = size(p) - size(p["cell1"]) - size(p["cell2"])
    assert sk.count_params([[NONE] * 6], c) == fixed
    per_conv3 = (p["cell1"]["w3"][0].size + 2 * c) + (p["cell2"]["w3"][0].size + 4 * c)
    per_conv1 = (p["cell1"]["w1"][0].size + 2 * c) + (p["cell2"]["w1"][0].size + 4 * c)
    assert sk.count_params([[CONV3, CONV1, SKIP, POOL, CONV3, NONE]], c) == fixed + 2 * per_conv3 + per_conv1
    assert sk.count_flops([[CONV3] * 6], c) > sk.count_flops([[CONV1] * 6], c) > sk.count_flops([[POOL] * 6], c)


def test_a_cell_cut_from_its_output_ignores_the_image():
    """No edge into node 3 carries anything: the logits do not depend on the image."""
    p = sk.init_params(jax.random.key(0), 4)
    x = sk._patches(jax.random.normal(jax.random.key(1), (6, 8, 8)))
    gates = jax.nn.one_hot(jnp.array([CONV3, CONV3, CONV3, NONE, NONE, NONE]), 5)
    apply = jax.jit(lambda g: sk.apply(p, g, x)[0])
    logits = apply(gates)
    np.testing.assert_allclose(logits, jnp.broadcast_to(logits[:1], logits.shape), atol=1e-5)
    live = apply(jax.nn.one_hot(jnp.array([CONV3, CONV3, CONV3, SKIP, NONE, NONE]), 5))
    assert jnp.abs(live - live[:1]).max() > 1e-3



def test_bad_input():
    with pytest.raises(ValueError, match="channels must be >= 1"):
        sk.Skeleton(channels=0)
    with pytest.raises(ValueError, match=r"keys must have shape \(2,\)"):
        sk.train_and_evaluate(np.zeros((2, 6), int), [1], 0, {"train": None})
