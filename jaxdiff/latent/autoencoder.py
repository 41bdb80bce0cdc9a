"""KL-regularised convolutional autoencoder for latent diffusion (LDM), downsampling f = 2^m.

x (B, H, W, C) -> q(z|x) = N(mean, exp(log_var)) with z (B, H/f, W/f, latent_channels)
-> x_hat (B, H, W, C). A small KL weight keeps the latent near N(0, I) in scale
without forcing it to be a good VAE prior.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.latent.vae import gaussian_kl, reparameterize


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
        h = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(num_groups=min(8, x.shape[-1]))(x)))
        h = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(num_groups=min(8, self.channels))(h)))
        skip = x if x.shape[-1] == self.channels else nn.Conv(self.channels, (1, 1))(x)
        return skip + h


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
        if self.num_down < 0:
            raise ValueError(f"num_down must be >= 0, got {self.num_down}")
        self.enc_in = nn.Conv(self.channels, (3, 3))
        self.enc_blocks = [_ResBlock(self.channels) for _ in range(self.num_down + 1)]
        self.enc_down = [nn.Conv(self.channels, (3, 3), strides=2) for _ in range(self.num_down)]
        self.enc_out = nn.Conv(2 * self.latent_channels, (1, 1))
        self.dec_in = nn.Conv(self.channels, (3, 3))
        self.dec_blocks = [_ResBlock(self.channels) for _ in range(self.num_down + 1)]
        self.dec_up = [nn.Conv(self.channels, (3, 3)) for _ in range(self.num_down)]
        self.dec_out = nn.Conv(self.out_channels, (3, 3))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, H, W, C), got {x.shape}")
        check_latent_size(x.shape[1:3], self.num_down)
        h = self.enc_in(x)
        for i in range(self.num_down):
            h = self.enc_down[i](self.enc_blocks[i](h))
        h = self.enc_out(nn.silu(self.enc_blocks[-1](h)))
        mean, log_var = jnp.split(h, 2, axis=-1)
        return mean, jnp.clip(log_var, -30.0, 20.0)

    def decode(self, z: jax.Array) -> jax.Array:
        if z.ndim != 4 or z.shape[-1] != self.latent_channels:
            raise ValueError(f"z must have shape (B, h, w, latent_channels={self.latent_channels}), got {z.shape}")
        h = self.dec_in(z)
        for i in range(self.num_down):
            h = self.dec_blocks[i](h)
            b, height, width, c = h.shape
            h = self.dec_up[i](jax.image.resize(h, (b, 2 * height, 2 * width, c), "nearest"))
        return self.dec_out(nn.silu(self.dec_blocks[-1](h)))

    def __call__(self, x: jax.Array, key: jax.Array):
        mean, log_var = self.encode(x)
        return self.decode(reparameterize(key, mean, log_var)), mean, log_var


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
