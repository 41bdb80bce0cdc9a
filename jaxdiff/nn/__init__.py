"""Flax linen building blocks shared across domains: noise embeddings, conditioning, UNet, DiT, MLP
and ``as_net``, the one module -> ``net(params, x, c_noise, *, key=None, **cond)`` adapter.

Shared blocks only: a domain's own networks live in its package (``jaxdiff.graphs``,
``jaxdiff.flow``, ``jaxdiff.latent``, ...); nothing here knows of samplers, training or bridges.

Every network maps ``(x, c_noise, labels=None, *, train=False) -> same shape
as x``; ``labels`` index ``num_classes + 1`` rows, the last being the null
label used for ``labels=None`` and classifier-free guidance.
"""

from jaxdiff.nn.conditioning import NoiseLabelEmbedding, check_inputs
from jaxdiff.nn.dit import DiT, DiTBlock, FinalLayer, sincos_pos_embed_2d
from jaxdiff.nn.embeddings import FourierEmbedding, PositionalEmbedding
from jaxdiff.nn.mlp import MLP, MLPBlock
from jaxdiff.nn.net import as_net
from jaxdiff.nn.unet import SelfAttention, UNet, UNetBlock, check_unet_image_size, group_norm

__all__ = [
    "DiT",
    "DiTBlock",
    "FinalLayer",
    "FourierEmbedding",
    "MLP",
    "MLPBlock",
    "NoiseLabelEmbedding",
    "PositionalEmbedding",
    "SelfAttention",
    "UNet",
    "UNetBlock",
    "as_net",
    "check_inputs",
    "check_unet_image_size",
    "group_norm",
    "sincos_pos_embed_2d",
]
