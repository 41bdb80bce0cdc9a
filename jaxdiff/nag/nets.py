"""Networks over operator-type matrices: the score network and the noisy-cell property predictor.

Both read ``x`` ``(B, 8, 7)`` (``jaxdiff.nag.encoding``), one token per node in topological order,
with a fixed sinusoidal encoding of the node's position added to its embedding, and noise-level
conditioning by adaptive layer norm. Attention follows the DAG: node i attends to itself, its
ancestors and its descendants (``encoding.attention_mask``), as in DiffusionNAG's score network.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxdiff.nag.encoding import NUM_NODES, NUM_TYPES, attention_mask
from jaxdiff.nn.dit import FinalLayer
from jaxdiff.nn.embeddings import PositionalEmbedding

__all__ = ["CellBlock", "CellTransformer", "PropertyPredictor", "node_positions"]


def node_positions(dim: int) -> np.ndarray:
    """Sinusoidal encoding of the topological order, ``(8, dim)`` float32."""
    half = dim // 2
    freqs = 1.0 / 100.0 ** (np.arange(half) / half)
    angles = np.arange(NUM_NODES)[:, None] * freqs[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], 1).astype(np.float32)


def _check_x(x) -> None:
    if x.ndim != 3 or x.shape[1:] != (NUM_NODES, NUM_TYPES):
        raise ValueError(f"x must have shape (B, {NUM_NODES}, {NUM_TYPES}) (operator-type matrices), got {x.shape}")


class CellBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero and a fixed ``(T, T)`` attention mask:
    ``x`` (B, T, D), ``c`` (B, D) -> (B, T, D); the identity at initialisation."""

    num_heads: int
    mask: tuple | None = None  # (T, T) nested tuples of bools (hashable), None: full attention

    @nn.compact
    def __call__(self, x, c):
        d = x.shape[-1]
        mod = nn.Dense(6 * d, kernel_init=nn.initializers.zeros, name="adaLN_modulation")(nn.silu(c))
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod[:, None], 6, axis=-1)
        mask = None if self.mask is None else jnp.asarray(self.mask)[None, None]
        h = nn.LayerNorm(use_scale=False, use_bias=False)(x) * (1 + scale1) + shift1
        h = nn.MultiHeadDotProductAttention(self.num_heads, name="attn")(h, mask=mask)
        x = x + gate1 * h
        h = nn.LayerNorm(use_scale=False, use_bias=False)(x) * (1 + scale2) + shift2
        h = nn.Dense(d, name="fc2")(nn.gelu(nn.Dense(4 * d, name="fc1")(h)))
        return x + gate2 * h


class _Trunk(nn.Module):
    hidden: int
    depth: int
    num_heads: int
    dag_attention: bool

    @nn.compact
    def __call__(self, x, c_noise):
        _check_x(x)
        c = PositionalEmbedding(self.hidden)(c_noise)
        c = nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(c)))
        h = nn.Dense(self.hidden, name="embed")(x) + jnp.asarray(node_positions(self.hidden))
        mask = tuple(map(tuple, attention_mask().tolist())) if self.dag_attention else None
        for i in range(self.depth):
            h = CellBlock(self.num_heads, mask, name=f"block{i}")(h, c)
        return h, c


class CellTransformer(nn.Module):
    """Score network ``F(x, c_noise)``: ``x`` (B, 8, 7), ``c_noise`` (B,) -> (B, 8, 7), for
    ``jaxdiff.precond`` through ``jaxdiff.nn.as_net``.

    Attributes:
        hidden: token width (even).
        depth: transformer blocks.
        num_heads: attention heads.
        dag_attention: mask attention by reachability (False: every node sees every node).
    """

    hidden: int = 64
    depth: int = 3
    num_heads: int = 4
    dag_attention: bool = True

    @nn.compact
    def __call__(self, x, c_noise):
        h, c = _Trunk(self.hidden, self.depth, self.num_heads, self.dag_attention)(x, c_noise)
        return FinalLayer(NUM_TYPES)(h, c)


class PropertyPredictor(nn.Module):
    """``f(x, c_noise)``: a property of the cell from its noisy matrix, ``x`` (B, 8, 7),
    ``c_noise`` (B,) -> (B,). The trunk of ``CellTransformer``, mean-pooled, then a two-layer head.

    Attributes:
        hidden: token width (even).
        depth: transformer blocks.
        num_heads: attention heads.
        dag_attention: mask attention by reachability.
    """

    hidden: int = 32
    depth: int = 2
    num_heads: int = 2
    dag_attention: bool = True

    @nn.compact
    def __call__(self, x, c_noise):
        h, c = _Trunk(self.hidden, self.depth, self.num_heads, self.dag_attention)(x, c_noise)
        h = nn.LayerNorm()(h.mean(1)) + c
        return nn.Dense(1)(nn.gelu(nn.Dense(self.hidden)(h)))[:, 0]

