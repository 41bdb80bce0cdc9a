"""Latent-variable models: the VAE (AEVB) and the KL autoencoder for latent diffusion."""

from jaxdiff.latent.autoencoder import KLAutoencoder, check_latent_size, make_autoencoder_loss
from jaxdiff.latent.vae import (
    VAE,
    Bernoulli,
    ConvDecoder,
    ConvEncoder,
    DiscretizedLogistic,
    Gaussian,
    MLPDecoder,
    MLPEncoder,
    bits_per_dim,
    elbo,
    gaussian_kl,
    gaussian_log_prob,
    iwae_bound,
    kl_warmup,
    make_vae_loss,
    reparameterize,
)

__all__ = [
    "VAE", "Bernoulli", "ConvDecoder", "ConvEncoder", "DiscretizedLogistic", "Gaussian", "KLAutoencoder",
    "MLPDecoder", "MLPEncoder", "bits_per_dim", "check_latent_size", "elbo", "gaussian_kl", "gaussian_log_prob",
    "iwae_bound", "kl_warmup", "make_autoencoder_loss", "make_vae_loss", "reparameterize",
]
