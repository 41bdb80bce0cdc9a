"""Vector quantiser: nearest entry, straight-through gradient, losses on a hand case, usage; VQ autoencoder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.latent import (VQAutoencoder, VectorQuantizer, codebook_usage, make_vq_autoencoder_loss, nearest_code,
                            quantize)

KEY = jax.random.key(0)
CODEBOOK = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
Z = jnp.array([[0.2, 0.1], [0.9, -0.3], [0.1, 1.5], [0.6, 0.0]])  # nearest: 0, 1, 2, 1


def test_nearest_entry_and_hand_losses():
    np.testing.assert_array_equal(nearest_code(Z, CODEBOOK), [0, 1, 2, 1])
    z_q, t = quantize(Z, CODEBOOK, beta=0.5)
    np.testing.assert_allclose(z_q, CODEBOOK[jnp.array([0, 1, 2, 1])], atol=1e-7)
    # squared distances to the chosen codes: 0.05, 0.10, 0.26, 0.16 -> mean 0.1425
    assert float(t["commitment_loss"]) == pytest.approx(0.1425, rel=1e-6)
    assert float(t["codebook_loss"]) == pytest.approx(0.1425, rel=1e-6)
    assert float(t["vq_loss"]) == pytest.approx(1.5 * 0.1425, rel=1e-6)
    assert float(t["usage"]) == 1.0
    # histogram (1/4, 1/2, 1/4): perplexity exp(1.5 log 2) = 2 sqrt 2
    assert float(t["perplexity"]) == pytest.approx(2 * np.sqrt(2), rel=1e-6)


def test_straight_through_and_loss_gradients():
    w = jnp.arange(8.0).reshape(4, 2)
    g_z = jax.grad(lambda z: jnp.sum(w * quantize(z, CODEBOOK)[0]))(Z)
    np.testing.assert_allclose(g_z, w)  # identity through the quantiser
    idx = jnp.array([0, 1, 2, 1])
    g_commit = jax.grad(lambda z: quantize(z, CODEBOOK)[1]["commitment_loss"])(Z)
    np.testing.assert_allclose(g_commit, 2 * (Z - CODEBOOK[idx]) / 4, rtol=1e-6)
    g_code_z = jax.grad(lambda z: quantize(z, CODEBOOK)[1]["codebook_loss"])(Z)
    np.testing.assert_allclose(g_code_z, 0.0)  # the codebook loss moves only the codes
    g_cb = jax.grad(lambda c: quantize(Z, c)[1]["codebook_loss"])(CODEBOOK)
    np.testing.assert_allclose(g_cb[0], 2 * (CODEBOOK[0] - Z[0]) / 4, rtol=1e-6)
    np.testing.assert_allclose(g_cb[1], 2 * (2 * CODEBOOK[1] - Z[1] - Z[3]) / 4, rtol=1e-6)


def test_usage_counts_unused_codes():
    usage, perplexity = codebook_usage(jnp.array([[3, 3], [3, 3]]), 8)
    assert float(usage) == 1 / 8 and float(perplexity) == pytest.approx(1.0)


@pytest.mark.parametrize("num_down", [1, 2])
def test_vq_autoencoder_shapes_and_loss(num_down):
    f = 2**num_down
    ae = VQAutoencoder(latent_channels=3, num_down=num_down, channels=8, num_codes=16)
    x = jax.random.uniform(KEY, (2, 8, 8, 1), minval=-1, maxval=1)
    variables = jax.eval_shape(ae.init, KEY, x)
    x_hat, z_e, t = jax.eval_shape(lambda v: ae.apply(v, x), variables)
    assert x_hat.shape == x.shape and z_e.shape == (2, 8 // f, 8 // f, 3)
    assert variables["params"]["quantizer"]["codebook"].shape == (16, 3)
    assert t["indices"].shape == (2, 8 // f, 8 // f)
    z = jnp.zeros((5, 8 // f, 8 // f, 3))
    assert jax.eval_shape(lambda v: ae.apply(v, z, method=VQAutoencoder.decode), variables).shape == (5, 8, 8, 1)
    if num_down == 1:
        loss_fn = make_vq_autoencoder_loss(ae)
        loss, terms = jax.jit(lambda x: loss_fn(ae.init(KEY, x)["params"], {"image": x}, KEY))(x)
        per_image_vq = 16 * (terms["codebook_loss"] + 0.25 * terms["commitment_loss"])
        assert float(loss) == pytest.approx(64 * float(terms["mse"]) + float(per_image_vq), rel=1e-5)
        assert 0 < float(terms["usage"]) <= 1


def test_bad_input():
    with pytest.raises(ValueError, match="codebook must have shape"):
        nearest_code(Z, jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match="beta"):
        quantize(Z, CODEBOOK, beta=-1.0)
    with pytest.raises(ValueError, match="num_codes"):
        jax.eval_shape(VectorQuantizer(0).init, KEY, Z)
    ae = VQAutoencoder(latent_channels=2, num_down=1, channels=8)
    variables = jax.eval_shape(ae.init, KEY, jnp.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="latent_channels=2"):
        jax.eval_shape(lambda v: ae.apply(v, jnp.zeros((1, 4, 4, 3)), method=VQAutoencoder.decode), variables)
    with pytest.raises(ValueError, match="latent_channels"):
        jax.eval_shape(VQAutoencoder(latent_channels=0).init, KEY, jnp.zeros((1, 8, 8, 1)))
