"""Flax linen networks: noise embeddings, conditioning, UNet, DiT and MLP.

Every network maps ``(x, c_noise, labels=None, *, train=False) -> same shape
as x``; ``labels`` index ``num_classes + 1`` rows, the last being the null
label used for ``labels=None`` and classifier-free guidance.
"""

from jaxdiff.nn.conditioning import NoiseLabelEmbedding, check_inputs
from jaxdiff.nn.dit import DiT, DiTBlock, FinalLayer, sincos_pos_embed_2d
from jaxdiff.nn.embeddings import FourierEmbedding, PositionalEmbedding
from jaxdiff.nn.mlp import MLP, MLPBlock
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
    "check_inputs",
    "check_unet_image_size",
    "group_norm",
    "sincos_pos_embed_2d",
]
