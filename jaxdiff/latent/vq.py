"""Vector quantisation (VQ-VAE, van den Oord et al. 2017): nearest codebook entry, straight-through gradient.

For encoder outputs z (..., D) and a codebook e (K, D): k = argmin_j ||z - e_j||^2,
z_q = e_k; the forward value is z_q and the gradient w.r.t. z is the identity
(z + stop_gradient(z_q - z)). Losses, each the mean over vectors of a squared
distance summed over D: codebook ||sg(z) - e_k||^2 (moves the codes) and commitment
||z - sg(e_k)||^2 (keeps the encoder near its code), weighted by beta.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def nearest_code(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """z (..., D), codebook (K, D) -> int32 indices (...,) of the nearest entry in squared distance."""
    if codebook.ndim != 2 or z.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"codebook must have shape (K, D) with D = z.shape[-1] = {z.shape[-1]}, got {codebook.shape}")
    d2 = (z**2).sum(-1, keepdims=True) - 2.0 * z @ codebook.T + (codebook**2).sum(-1)
    return jnp.argmin(d2, axis=-1).astype(jnp.int32)


def quantize(z: jax.Array, codebook: jax.Array, beta: float = 0.25) -> tuple[jax.Array, dict]:
    """z (..., D), codebook (K, D) -> (z_q straight-through (..., D), terms).

    Terms: ``indices`` (...,), ``codebook_loss``, ``commitment_loss``,
    ``vq_loss`` = codebook_loss + beta * commitment_loss, ``usage`` (fraction of the K
    codes used here) and ``perplexity`` (exp of the entropy of the code histogram).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    idx = nearest_code(z, codebook)
    z_q = codebook[idx]
    codebook_loss = ((jax.lax.stop_gradient(z) - z_q) ** 2).sum(-1).mean()
    commitment_loss = ((z - jax.lax.stop_gradient(z_q)) ** 2).sum(-1).mean()
    usage, perplexity = codebook_usage(idx, codebook.shape[0])
    terms = dict(indices=idx, codebook_loss=codebook_loss, commitment_loss=commitment_loss,
                 vq_loss=codebook_loss + beta * commitment_loss, usage=usage, perplexity=perplexity)
    return z + jax.lax.stop_gradient(z_q - z), terms


def codebook_usage(indices: jax.Array, num_codes: int) -> tuple[jax.Array, jax.Array]:
    """Code indices (any shape) -> (fraction of the ``num_codes`` codes used, perplexity in [1, num_codes])."""
    p = jnp.bincount(indices.ravel(), length=num_codes) / indices.size
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return (p > 0).mean(), jnp.exp(entropy)


class VectorQuantizer(nn.Module):
    """Learned codebook ``codebook`` (num_codes, D): z (..., D) -> (z_q straight-through, [`quantize`][] terms)."""

    num_codes: int = 64
    beta: float = 0.25

    @nn.compact
    def __call__(self, z: jax.Array) -> tuple[jax.Array, dict]:
        if self.num_codes < 1:
            raise ValueError(f"num_codes must be >= 1, got {self.num_codes}")
        codebook = self.param("codebook", nn.initializers.normal(1.0), (self.num_codes, z.shape[-1]))
        return quantize(z, codebook, self.beta)
