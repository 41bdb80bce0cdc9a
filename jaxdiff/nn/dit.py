"""Diffusion Transformer with adaLN-Zero conditioning (Peebles & Xie, 2023) for NHWC images."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.nn.conditioning import XAVIER, NoiseLabelEmbedding, check_inputs

ZEROS = nn.initializers.zeros


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sin-cos positional embedding, (grid_h * grid_w, dim), row-major tokens.

    The first dim/2 channels encode the row, the last dim/2 the column, each as
    ``[sin(p w), cos(p w)]`` with ``w_i = 10000 ** (-i / (dim/4))``.
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))

    def embed_1d(pos: np.ndarray) -> np.ndarray:
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    return np.concatenate([embed_1d(rows), embed_1d(cols)], axis=1).astype(np.float32)


def _layer_norm() -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False)


def _modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    return x * (1 + scale[:, None]) + shift[:, None]


def _attention(query: jax.Array, key: jax.Array, value: jax.Array, mask: jax.Array | None = None, **_) -> jax.Array:
    """The attention of ``MultiHeadDotProductAttention`` (its dropout unused): q (B,T,N,H), k and v (B,S,N,H),
    mask broadcasting to (B,N,T,S) -> (B,T,N,H); float32 logits and softmax, products in the inputs' dtype."""
    return jax.nn.dot_product_attention(query, key, value, mask=mask)


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero: x (B,T,D), c (B,E) -> (B,T,D).

    The modulation Dense (shift/scale/gate for attention and MLP) is
    zero-initialised, so the block is exactly the identity at init. Attention
    and MLP matmuls run in ``dtype`` (e.g. bfloat16); the residual stream, the
    normalisations, the modulation and the attention logits and softmax stay in float32.
    ``mask`` (B,T) bool, if given, hides the False tokens as attention keys.
    """

    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, c: jax.Array, *, mask: jax.Array | None = None, train: bool = False
    ) -> jax.Array:
        d = x.shape[-1]
        mod = nn.Dense(6 * d, kernel_init=ZEROS, bias_init=ZEROS, name="adaLN_modulation")(c)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = jnp.split(mod, 6, axis=-1)
        drop = nn.Dropout(self.dropout, deterministic=not train)

        h = _modulate(_layer_norm()(x), shift_msa, scale_msa)
        attention = nn.MultiHeadDotProductAttention(
            self.num_heads, dtype=self.dtype, kernel_init=XAVIER, attention_fn=_attention, name="attn"
        )
        h = attention(h, mask=None if mask is None else mask[:, None, None, :])
        x = x + gate_msa[:, None] * drop(h).astype(x.dtype)

        h = _modulate(_layer_norm()(x), shift_mlp, scale_mlp)
        h = nn.gelu(nn.Dense(int(d * self.mlp_ratio), dtype=self.dtype, kernel_init=XAVIER, name="fc1")(h))
        h = nn.Dense(d, dtype=self.dtype, kernel_init=XAVIER, name="fc2")(drop(h))
        return x + gate_mlp[:, None] * h.astype(x.dtype)


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm, zero-initialised Dense: x (B,T,D), c (B,E) -> (B,T,out_dim)."""

    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        d = x.shape[-1]
        mod = nn.Dense(2 * d, kernel_init=ZEROS, bias_init=ZEROS, name="adaLN_modulation")(c)
        shift, scale = jnp.split(mod, 2, axis=-1)
        x = _modulate(_layer_norm()(x), shift, scale)
        return nn.Dense(self.out_dim, kernel_init=ZEROS, name="linear")(x)


class DiT(nn.Module):
    """DiT: x (B,H,W,C), c_noise () or (B,), labels (B,) int or None -> (B,H,W,C).

    Non-overlapping patch_size patches become tokens with fixed 2-D sin-cos
    positions; depth adaLN-Zero blocks; the zero-initialised final layer makes
    the output exactly zero at init. Dropout (attention output and MLP hidden)
    draws from the 'dropout' RNG stream only when train=True. ``dtype`` is the
    compute dtype of the transformer blocks (e.g. bfloat16, mixed precision): the
    parameters, the patch and noise embeddings, the final layer and the output stay
    float32 (the [precision policy][precision-policy]).
    """

    patch_size: int = 2
    hidden_size: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 0
    embedding: str = "positional"
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        c_noise: jax.Array,
        labels: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> jax.Array:
        c_noise, labels = check_inputs(x, c_noise, labels, "(B, H, W, C)")
        b, height, width, channels = x.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"patch_size={p} must divide the image size, got H={height}, W={width}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must divide hidden_size={self.hidden_size}"
            )
        d, gh, gw = self.hidden_size, height // p, width // p

        patch_embed = nn.Conv(
            d, (p, p), strides=(p, p), padding="VALID", kernel_init=XAVIER, name="patch_embed"
        )
        h = patch_embed(x).reshape(b, gh * gw, d) + sincos_pos_embed_2d(d, gh, gw)
        embed = NoiseLabelEmbedding(d, d, self.num_classes, self.embedding, name="embed")
        c = embed(c_noise, labels)
        for i in range(self.depth):
            block = DiTBlock(self.num_heads, self.mlp_ratio, self.dropout, self.dtype, name=f"block{i}")
            h = block(h, c, train=train)
        h = FinalLayer(p * p * channels, name="final")(h, c)
        h = h.reshape(b, gh, gw, p, p, channels).transpose(0, 1, 3, 2, 4, 5)
        return h.reshape(b, height, width, channels)
