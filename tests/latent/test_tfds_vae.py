"""MNIST through TFDS (``tfds.testing.mock_data``, no download) into the MLP VAE and the f = 4 KL autoencoder."""

from __future__ import annotations

import jax
import numpy as np

from jaxdiff.data.tfds import TFDSImageSource
from jaxdiff.latent import VAE, Bernoulli, KLAutoencoder, MLPDecoder, MLPEncoder, make_autoencoder_loss, make_vae_loss
from jaxdiff.train import OptimConfig, create_train_state, make_optimizer, make_train_step

KEY = jax.random.key(0)


def _train_two_steps(model, loss_fn, x) -> list[dict]:
    """Two jitted train steps on the batch x; returns their metrics."""
    opt = make_optimizer(OptimConfig(learning_rate=1e-3))
    state = create_train_state(jax.jit(model.init)(KEY, x[:2], KEY)["params"], opt, KEY)
    step = jax.jit(make_train_step(loss_fn, opt, batch_size=len(x), ema_halflife_nimg=100))
    out = []
    for _ in range(2):
        state, metrics = step(state, {"image": x})
        out.append(metrics)
    return out


def test_mnist_vae_and_autoencoder_through_mock_tfds():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=16):
        batch = TFDSImageSource("mnist", "train").get(np.arange(8))
    x = batch["image"]
    assert x.shape == (8, 28, 28, 1) and x.min() >= -1 and x.max() <= 1 and batch["label"].shape == (8,)
    lik = Bernoulli()
    vae = VAE(MLPEncoder(4, (32,)), MLPDecoder((28, 28, 1), lik.num_params, (32,)))
    for m in _train_two_steps(vae, make_vae_loss(vae, lik), x):
        assert m["nonfinite"] == 0 and np.isfinite(m["elbo"])
    ae = KLAutoencoder(latent_channels=2, num_down=2, channels=8)  # f = 4: 28x28 -> 7x7 latents
    mean, _ = jax.eval_shape(lambda: ae.apply(ae.init(KEY, x, KEY), x, method=KLAutoencoder.encode))
    assert mean.shape == (8, 7, 7, 2)
    for m in _train_two_steps(ae, make_autoencoder_loss(ae), x):
        assert m["nonfinite"] == 0 and np.isfinite(m["mse"])
