"""KL- and VQ-regularised convolutional autoencoders for latent diffusion (LDM), downsampling f = 2^m.

KL: x (B, H, W, C) -> q(z|x) = N(mean, exp(log_var)) with z (B, H/f, W/f, latent_channels)
-> x_hat (B, H, W, C). A small KL weight keeps the latent near N(0, I) in scale
without forcing it to be a good VAE prior. VQ: the encoder output is snapped to the
nearest codebook vector before decoding (van den Oord et al. 2017; Rombach et al. 2022).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.latent.vae import gaussian_kl, reparameterize
from jaxdiff.latent.vq import VectorQuantizer
from jaxdiff.nn.conv import Conv


def check_latent_size(image_shape: tuple[int, ...], num_down: int) -> tuple[int, int]:
    """(H, W, ...) and m -> latent (H / 2^m, W / 2^m); ValueError if 2^m does not divide H and W."""
    if num_down < 0:
        raise ValueError(f"num_down must be >= 0, got {num_down}")
    f = 2**num_down
    height, width = image_shape[0], image_shape[1]
    if height % f or width % f:
        raise ValueError(
            f"downsampling factor f = 2^{num_down} = {f} must divide the image size {height}x{width}"
        )
    return height // f, width // f


class _ResBlock(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(num_groups=min(8, x.shape[-1]))(x)))
        h = Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(num_groups=min(8, self.channels))(h)))
        skip = x if x.shape[-1] == self.channels else Conv(self.channels, (1, 1))(x)
        return skip + h


class _Encoder(nn.Module):
    """x (B, H, W, C) -> (B, H/f, W/f, out_channels): conv, ``num_down`` (res block, stride-2 conv), res block."""

    channels: int
    num_down: int
    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, H, W, C), got {x.shape}")
        check_latent_size(x.shape[1:3], self.num_down)
        h = Conv(self.channels, (3, 3), name="conv_in")(x)
        for i in range(self.num_down):
            h = Conv(self.channels, (3, 3), strides=2, name=f"down{i}")(_ResBlock(self.channels, name=f"res{i}")(h))
        h = _ResBlock(self.channels, name=f"res{self.num_down}")(h)
        return Conv(self.out_channels, (1, 1), name="conv_out")(nn.silu(h))


class _Decoder(nn.Module):
    """z (B, h, w, c) -> (B, h f, w f, out_channels): conv, ``num_down`` (res block, 2x nearest + conv), res block."""

    channels: int
    num_down: int
    out_channels: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = Conv(self.channels, (3, 3), name="conv_in")(z)
        for i in range(self.num_down):
            h = _ResBlock(self.channels, name=f"res{i}")(h)
            b, height, width, c = h.shape
            h = Conv(self.channels, (3, 3), name=f"up{i}")(
                jax.image.resize(h, (b, 2 * height, 2 * width, c), "nearest"))
        h = _ResBlock(self.channels, name=f"res{self.num_down}")(h)
        return Conv(self.out_channels, (3, 3), name="conv_out")(nn.silu(h))


def _check_config(num_down: int, latent_channels: int) -> None:
    if num_down < 0:
        raise ValueError(f"num_down must be >= 0, got {num_down}")
    if latent_channels < 1:
        raise ValueError(f"latent_channels must be >= 1, got {latent_channels}")


def _check_z(z: jax.Array, latent_channels: int) -> None:
    if z.ndim != 4 or z.shape[-1] != latent_channels:
        raise ValueError(f"z must have shape (B, h, w, latent_channels={latent_channels}), got {z.shape}")


class KLAutoencoder(nn.Module):
    """Conv autoencoder with ``num_down`` stride-2 stages (f = 2^num_down) and a diagonal-Gaussian latent.

    ``encode(x (B,H,W,C)) -> mean, log_var (B, H/f, W/f, latent_channels)``;
    ``decode(z) -> x_hat (B, H, W, out_channels)``; ``__call__(x, key)`` returns
    (x_hat, mean, log_var) with z drawn by the reparameterisation trick.
    """

    latent_channels: int = 4
    num_down: int = 1
    channels: int = 32
    out_channels: int = 1

    def setup(self):
        _check_config(self.num_down, self.latent_channels)
        self.encoder = _Encoder(self.channels, self.num_down, 2 * self.latent_channels)
        self.decoder = _Decoder(self.channels, self.num_down, self.out_channels)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_var = jnp.split(self.encoder(x), 2, axis=-1)
        return mean, jnp.clip(log_var, -30.0, 20.0)

    def decode(self, z: jax.Array) -> jax.Array:
        _check_z(z, self.latent_channels)
        return self.decoder(z)

    def __call__(self, x: jax.Array, key: jax.Array):
        mean, log_var = self.encode(x)
        return self.decode(reparameterize(key, mean, log_var)), mean, log_var


class VQAutoencoder(nn.Module):
    """Conv autoencoder (f = 2^num_down) with a vector-quantised latent (VQ-regularised LDM autoencoder).

    ``encode(x (B,H,W,C)) -> z_e (B, H/f, W/f, latent_channels)`` (continuous, what
    latent diffusion models); ``decode(z)`` quantises z to the codebook (straight-through)
    and decodes to (B, H, W, out_channels); ``__call__(x)`` returns (x_hat, z_e, terms)
    with the [`VectorQuantizer`][] terms.
    """

    latent_channels: int = 4
    num_down: int = 1
    channels: int = 32
    out_channels: int = 1
    num_codes: int = 64
    beta: float = 0.25

    def setup(self):
        _check_config(self.num_down, self.latent_channels)
        self.encoder = _Encoder(self.channels, self.num_down, self.latent_channels)
        self.quantizer = VectorQuantizer(self.num_codes, self.beta)
        self.decoder = _Decoder(self.channels, self.num_down, self.out_channels)

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def quantize(self, z: jax.Array) -> tuple[jax.Array, dict]:
        _check_z(z, self.latent_channels)
        return self.quantizer(z)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(self.quantize(z)[0])

    def __call__(self, x: jax.Array):
        z_e = self.encode(x)
        z_q, terms = self.quantize(z_e)
        return self.decoder(z_q), z_e, terms


def make_autoencoder_loss(ae: KLAutoencoder, *, kl_weight: float = 1e-3, data_key: str = "image"):
    """``loss_fn(params, batch, key) -> (loss, terms)``: mean squared error per image + kl_weight * KL.

    Both terms are sums over pixels / latent entries, averaged over the batch.
    Terms: ``loss``, ``mse`` (per pixel), ``kl`` (nats per image).
    """
    if kl_weight < 0:
        raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")

    def loss_fn(params, batch, key):
        x = batch[data_key]
        x_hat, mean, log_var = ae.apply({"params": params}, x, key)
        sq = ((x_hat - x) ** 2).reshape(x.shape[0], -1)
        kl = gaussian_kl(mean, log_var).reshape(x.shape[0], -1).sum(-1).mean()
        loss = sq.sum(-1).mean() + kl_weight * kl
        return loss, dict(loss=loss, mse=sq.mean(), kl=kl)

    return loss_fn


def make_vq_autoencoder_loss(ae: VQAutoencoder, *, data_key: str = "image"):
    """``loss_fn(params, batch, key) -> (loss, terms)`` for a [`VQAutoencoder`][] (the key is unused).

    loss = squared error summed per image + h w (codebook_loss + beta commitment_loss), the
    VQ terms being per latent vector, so both parts are per image; averaged over the batch.
    Terms: ``loss``, ``mse`` (per pixel), ``codebook_loss``, ``commitment_loss``, ``usage``, ``perplexity``.
    """

    def loss_fn(params, batch, key):
        del key
        x = batch[data_key]
        x_hat, z_e, t = ae.apply({"params": params}, x)
        sq = ((x_hat - x) ** 2).reshape(x.shape[0], -1)
        loss = sq.sum(-1).mean() + z_e.shape[1] * z_e.shape[2] * t["vq_loss"]
        return loss, dict(loss=loss, mse=sq.mean(), **{k: t[k] for k in
                                                       ("codebook_loss", "commitment_loss", "usage", "perplexity")})

    return loss_fn
