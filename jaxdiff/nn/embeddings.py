"""Noise-level embeddings of EDM (Karras et al., 2022): c_noise (B,) -> (B, num_channels)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def _check_even(num_channels: int) -> None:
    if num_channels < 2 or num_channels % 2:
        raise ValueError(f"num_channels must be even and >= 2, got {num_channels}")


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of DDPM++/ADM, parameter-free: (B,) -> (B, num_channels).

    ``[cos(x f), sin(x f)]`` with ``f_i = max_positions ** (-i / (n - endpoint))``,
    ``i = 0..n-1``, ``n = num_channels // 2``.
    """

    num_channels: int
    max_positions: int = 10000
    endpoint: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_even(self.num_channels)
        half = self.num_channels // 2
        if self.endpoint and half < 2:
            raise ValueError(f"endpoint=True needs num_channels >= 4, got {self.num_channels}")
        freqs = jnp.arange(half, dtype=jnp.float32) / (half - int(self.endpoint))
        freqs = (1.0 / self.max_positions) ** freqs
        x = jnp.outer(x.astype(jnp.float32), freqs)
        return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of NCSN++: (B,) -> (B, num_channels).

    ``[cos(2 pi x f), sin(2 pi x f)]`` with ``f ~ N(0, scale^2)`` of shape
    (num_channels // 2,), stored as the param ``freqs`` and never trained: it is
    read through ``stop_gradient``, so its gradient is exactly zero.
    """

    num_channels: int
    scale: float = 16.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_even(self.num_channels)
        freqs = self.param("freqs", nn.initializers.normal(self.scale), (self.num_channels // 2,))
        x = jnp.outer(x.astype(jnp.float32), 2 * math.pi * jax.lax.stop_gradient(freqs))
        return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)
