"""Noise-and-label conditioning shared by UNet, DiT and MLP."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.nn.embeddings import FourierEmbedding, PositionalEmbedding

XAVIER = nn.initializers.xavier_uniform()


def check_inputs(
    x: jax.Array, c_noise: jax.Array, labels: jax.Array | None, x_shape: str
) -> tuple[jax.Array, jax.Array | None]:
    """Validates a network's inputs; returns c_noise as float32 (B,) and labels.

    x must have the rank of ``x_shape`` (e.g. "(B, H, W, C)"); c_noise has shape
    () or (B,); labels is None or an integer array of shape (B,).
    """
    rank = x_shape.count(",") + 1
    if x.ndim != rank:
        raise ValueError(f"x must have shape {x_shape}, got {x.shape}")
    batch = x.shape[0]
    c_noise = jnp.asarray(c_noise, jnp.float32)
    if c_noise.shape not in ((), (batch,)):
        raise ValueError(f"c_noise must have shape () or (B,) = ({batch},), got {c_noise.shape}")
    if labels is not None:
        labels = jnp.asarray(labels)
        if labels.shape != (batch,) or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(
                f"labels must be an integer array of shape (B,) = ({batch},), "
                f"got {labels.dtype} {labels.shape}"
            )
    return jnp.broadcast_to(c_noise, (batch,)), labels


class NoiseLabelEmbedding(nn.Module):
    """(c_noise (B,), labels (B,) int or None) -> SiLU-activated embedding (B, emb_dim).

    The noise embedding (noise_dim channels, "positional" or "fourier") plus a
    learned label embedding goes through two Dense+SiLU layers. The label table
    has num_classes + 1 rows: row ``num_classes`` is the null label, used when
    labels is None and for classifier-free guidance (label dropout).
    """

    emb_dim: int
    noise_dim: int
    num_classes: int = 0
    embedding: str = "positional"

    @nn.compact
    def __call__(self, c_noise: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        if self.embedding == "positional":
            emb = PositionalEmbedding(self.noise_dim, endpoint=True, name="map_noise")(c_noise)
        elif self.embedding == "fourier":
            emb = FourierEmbedding(self.noise_dim, name="map_noise")(c_noise)
        else:
            raise ValueError(
                f"embedding must be 'positional' or 'fourier', got {self.embedding!r}"
            )
        if self.num_classes:
            if labels is None:
                labels = jnp.full(c_noise.shape, self.num_classes, jnp.int32)
            table = nn.Embed(
                self.num_classes + 1,
                self.noise_dim,
                embedding_init=nn.initializers.normal(1.0),
                name="map_label",
            )
            emb = emb + table(labels)
        elif labels is not None:
            raise ValueError("labels were given but num_classes=0; set num_classes > 0")
        emb = nn.silu(nn.Dense(self.emb_dim, kernel_init=XAVIER, name="map_layer0")(emb))
        return nn.silu(nn.Dense(self.emb_dim, kernel_init=XAVIER, name="map_layer1")(emb))
