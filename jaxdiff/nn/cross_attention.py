"""Cross-attention conditioning (latent diffusion): queries from the image, keys and values from tau(y)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def attention_weights(q: jax.Array, k: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(d)) over keys: q (B, N, H, d), k (B, M, H, d) -> (B, H, N, M)."""
    logits = jnp.einsum("bnhd,bmhd->bhnm", q, k) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
    return jax.nn.softmax(logits, axis=-1)


def attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(d)) v: q (B, N, H, d), k and v (B, M, H, d) -> (B, N, H, d)."""
    return jnp.einsum("bhnm,bmhd->bnhd", attention_weights(q, k), v)


class CrossAttention(nn.Module):
    """x (B, N, C) or (B, H, W, C), context (B, M, context_dim) -> same shape as x.

    Q = x W_q, K = context W_k, V = context W_v split into ``num_heads`` heads
    of ``head_dim``; the heads' outputs are concatenated and projected back to C.
    With ``residual`` the block returns x + out(LayerNorm(x)) and its output
    projection starts at zero (an identity block at init).
    """

    context_dim: int
    num_heads: int = 4
    head_dim: int = 32
    residual: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        if x.ndim not in (3, 4):
            raise ValueError(f"x must have shape (B, N, C) or (B, H, W, C), got {x.shape}")
        if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must have shape (B, M, context_dim) = ({x.shape[0]}, M, {self.context_dim}), "
                f"got {context.shape}"
            )
        tokens = x.reshape(x.shape[0], -1, x.shape[-1])
        h = nn.LayerNorm(name="norm")(tokens) if self.residual else tokens
        heads = (self.num_heads, self.head_dim)
        q = nn.DenseGeneral(heads, name="query")(h)
        k = nn.DenseGeneral(heads, name="key")(context)
        v = nn.DenseGeneral(heads, name="value")(context)
        out_init = nn.initializers.zeros if self.residual else nn.initializers.lecun_normal()
        out = nn.DenseGeneral(x.shape[-1], axis=(-2, -1), kernel_init=out_init, name="out")(attention(q, k, v))
        if self.residual:
            out = tokens + out
        return out.reshape(x.shape)


class LabelContext(nn.Module):
    """tau(y): labels (B,) int -> context (B, num_tokens, context_dim).

    The table has num_classes + 1 rows; row ``num_classes`` is the null label
    (classifier-free guidance), used for every row when labels is None (give ``batch``).
    """

    num_classes: int
    context_dim: int
    num_tokens: int = 1

    @nn.compact
    def __call__(self, labels: jax.Array | None, batch: int | None = None) -> jax.Array:
        if labels is None:
            if batch is None:
                raise ValueError("batch must be given when labels is None")
            labels = jnp.full((batch,), self.num_classes, jnp.int32)
        labels = jnp.asarray(labels)
        if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"labels must be an integer array of shape (B,), got {labels.dtype} {labels.shape}")
        table = nn.Embed(self.num_classes + 1, self.num_tokens * self.context_dim, name="table")
        emb = table(labels).reshape(labels.shape[0], self.num_tokens, self.context_dim)
        return nn.LayerNorm(name="norm")(emb)
