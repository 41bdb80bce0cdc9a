"""KL autoencoder: shapes for several downsampling factors, the loss, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jaxdiff.latent import KLAutoencoder, check_latent_size, make_autoencoder_loss

KEY = jax.random.key(0)


@pytest.mark.parametrize("num_down", [0, 1, 2, 3])
def test_shapes_for_several_f(num_down):
    f = 2**num_down
    ae = KLAutoencoder(latent_channels=3, num_down=num_down, channels=8, out_channels=2)
    x = jnp.zeros((2, 16, 8, 2))
    variables = jax.eval_shape(ae.init, KEY, x, KEY)
    x_hat, mean, log_var = jax.eval_shape(lambda v: ae.apply(v, x, KEY), variables)
    assert x_hat.shape == x.shape
    assert mean.shape == log_var.shape == (2, 16 // f, 8 // f, 3)
    z = jnp.zeros((5, 16 // f, 8 // f, 3))
    assert jax.eval_shape(lambda v: ae.apply(v, z, method=KLAutoencoder.decode), variables).shape == (5, 16, 8, 2)
    assert check_latent_size((16, 8), num_down) == (16 // f, 8 // f)


def test_loss_terms():
    ae = KLAutoencoder(latent_channels=2, num_down=1, channels=8)
    x = jax.random.uniform(KEY, (4, 8, 8, 1), minval=-1, maxval=1)
    loss_fn = make_autoencoder_loss(ae, kl_weight=0.5)
    loss, terms = jax.jit(lambda x: loss_fn(ae.init(KEY, x, KEY)["params"], {"image": x}, KEY))(x)
    assert jnp.isfinite(loss) and terms["kl"] >= 0
    assert float(loss) == pytest.approx(64 * float(terms["mse"]) + 0.5 * float(terms["kl"]), rel=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="must divide the image size 12x12"):
        check_latent_size((12, 12), 3)
    with pytest.raises(ValueError, match="num_down"):
        check_latent_size((8, 8), -1)
    ae = KLAutoencoder(latent_channels=2, num_down=2, channels=8)
    with pytest.raises(ValueError, match="divide"):
        jax.eval_shape(ae.init, KEY, jnp.zeros((1, 6, 6, 1)), KEY)
    with pytest.raises(ValueError, match="x must"):
        jax.eval_shape(ae.init, KEY, jnp.zeros((1, 8, 8)), KEY)
    variables = jax.eval_shape(ae.init, KEY, jnp.zeros((1, 8, 8, 1)), KEY)
    with pytest.raises(ValueError, match="latent_channels=2"):
        jax.eval_shape(lambda v: ae.apply(v, jnp.zeros((1, 2, 2, 3)), method=KLAutoencoder.decode), variables)
    with pytest.raises(ValueError, match="kl_weight"):
        make_autoencoder_loss(ae, kl_weight=-1.0)
