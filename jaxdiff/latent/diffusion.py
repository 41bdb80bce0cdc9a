"""Class-conditional latent diffusion with cross-attention conditioning (LDM, Rombach et al. 2022).

[`CrossAttentionDiT`][] denoises an autoencoder's latent grid (B, h, w, c): every
grid cell is a token; each block is an adaLN-Zero DiT block (self-attention + MLP,
modulated by the noise level only) followed by cross-attention whose keys and values
come from tau_theta(y) ([`LabelContext`][jaxdiff.nn.cross_attention.LabelContext], or any
``context`` (B, M, context_dim)). Label ``num_classes`` is the null label, so training
with ``jaxdiff.losses.denoising_loss(..., label_dropout=p, num_classes=K)`` and
sampling with [`sample_cfg`][] give classifier-free guidance.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff import samplers, schedules
from jaxdiff.nn.conditioning import XAVIER, NoiseLabelEmbedding, check_inputs
from jaxdiff.nn.cross_attention import CrossAttention, LabelContext
from jaxdiff.nn.dit import DiTBlock, FinalLayer, sincos_pos_embed_2d


class CrossAttentionDiT(nn.Module):
    """x (B,h,w,c), c_noise () or (B,), labels (B,) int or None | context (B,M,context_dim) -> (B,h,w,c).

    Give ``labels`` (tau_theta(y) = LabelContext, ``context_tokens`` tokens; None means
    the null label) or a ready ``context``, not both. The output is exactly zero at init.
    """

    num_classes: int
    hidden_size: int = 64
    depth: int = 2
    num_heads: int = 4
    context_dim: int = 64
    context_tokens: int = 1
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        c_noise: jax.Array,
        labels: jax.Array | None = None,
        *,
        context: jax.Array | None = None,
        train: bool = False,
    ) -> jax.Array:
        del train  # no dropout
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.hidden_size % 4 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be a multiple of 4 and of num_heads={self.num_heads}")
        c_noise, labels = check_inputs(x, c_noise, labels, "(B, H, W, C)")
        if labels is not None and context is not None:
            raise ValueError("give labels or context, not both")
        b, height, width, channels = x.shape
        if context is None:
            context = LabelContext(self.num_classes, self.context_dim, self.context_tokens, name="tau")(labels, b)
        d = self.hidden_size
        h = nn.Dense(d, kernel_init=XAVIER, name="embed_tokens")(x.reshape(b, height * width, channels))
        h = h + sincos_pos_embed_2d(d, height, width)
        emb = NoiseLabelEmbedding(d, d, name="embed_noise")(c_noise)
        for i in range(self.depth):
            h = DiTBlock(self.num_heads, self.mlp_ratio, name=f"block{i}")(h, emb)
            h = CrossAttention(self.context_dim, self.num_heads, d // self.num_heads, residual=True,
                               name=f"cross{i}")(h, context)
        return FinalLayer(channels, name="final")(h, emb).reshape(x.shape)


def sample_cfg(
    denoiser: Callable,
    labels: jax.Array,
    latent_shape: tuple[int, ...],
    key: jax.Array,
    *,
    cfg_scale: float,
    null_label: int,
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
) -> jax.Array:
    """Heun (Karras grid, 2 num_steps - 1 NFE) with classifier-free guidance: labels (B,) -> latents (B, *latent_shape).

    ``denoiser(x, sigma, labels=...)``; scale 0 is unconditional (the null label), 1
    conditional (one denoiser call per step), > 1 guided ([`cfg_denoiser`][jaxdiff.samplers.guidance.cfg_denoiser]).
    """
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {labels.shape}")
    if cfg_scale < 0:
        raise ValueError(f"cfg_scale must be >= 0, got {cfg_scale}")
    guided = denoiser if cfg_scale == 1 else samplers.cfg_denoiser(denoiser, cfg_scale, {"labels": null_label})
    sigmas = schedules.karras(num_steps, sigma_min, sigma_max)
    x = sigmas[0] * jax.random.normal(key, (labels.shape[0],) + tuple(latent_shape))
    return samplers.heun(guided, x, sigmas, labels=labels)
