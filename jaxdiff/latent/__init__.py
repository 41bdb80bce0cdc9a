"""Latent-variable models: the VAE (AEVB), KL / VQ autoencoders and cross-attention latent diffusion."""

from jaxdiff.latent.autoencoder import (
    KLAutoencoder,
    VQAutoencoder,
    check_latent_size,
    make_autoencoder_loss,
    make_vq_autoencoder_loss,
)
from jaxdiff.latent.diffusion import CrossAttentionDiT, sample_cfg
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
from jaxdiff.latent.vq import VectorQuantizer, codebook_usage, nearest_code, quantize

__all__ = [
    "VAE", "Bernoulli", "ConvDecoder", "ConvEncoder", "CrossAttentionDiT", "DiscretizedLogistic", "Gaussian",
    "KLAutoencoder", "MLPDecoder", "MLPEncoder", "VQAutoencoder", "VectorQuantizer", "bits_per_dim",
    "check_latent_size", "codebook_usage", "elbo", "gaussian_kl", "gaussian_log_prob", "iwae_bound", "kl_warmup",
    "make_autoencoder_loss", "make_vae_loss", "make_vq_autoencoder_loss", "nearest_code", "quantize",
    "reparameterize", "sample_cfg",
]
