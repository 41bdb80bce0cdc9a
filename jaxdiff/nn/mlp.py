"""Residual MLP score network for low-dimensional data."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.nn.conditioning import XAVIER, NoiseLabelEmbedding, check_inputs


class MLPBlock(nn.Module):
    """Pre-norm residual block with FiLM from emb: x (B,W), emb (B,E) -> (B,W)."""

    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, *, train: bool = False) -> jax.Array:
        width = x.shape[-1]
        film = nn.Dense(2 * width, kernel_init=XAVIER, name="film")(emb)
        scale, shift = jnp.split(film, 2, axis=-1)
        h = nn.silu(nn.LayerNorm()(x) * (1 + scale) + shift)
        h = nn.silu(nn.Dense(width, kernel_init=XAVIER)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return x + nn.Dense(width, kernel_init=XAVIER)(h)


class MLP(nn.Module):
    """Score MLP: x (B,D), c_noise () or (B,), labels (B,) int or None -> (B,D).

    Dense lift to width, depth FiLM residual blocks, LayerNorm-SiLU and a
    zero-initialised Dense back to D (output exactly zero at init).
    """

    width: int = 128
    depth: int = 3
    num_classes: int = 0
    embedding: str = "positional"
    dropout: float = 0.0

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        c_noise: jax.Array,
        labels: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> jax.Array:
        c_noise, labels = check_inputs(x, c_noise, labels, "(B, D)")
        embed = NoiseLabelEmbedding(
            self.width, self.width, self.num_classes, self.embedding, name="embed"
        )
        emb = embed(c_noise, labels)
        h = nn.Dense(self.width, kernel_init=XAVIER, name="lift")(x)
        for i in range(self.depth):
            h = MLPBlock(self.dropout, name=f"block{i}")(h, emb, train=train)
        h = nn.silu(nn.LayerNorm()(h))
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros, name="out")(h)
