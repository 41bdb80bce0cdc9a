"""DDPM++-style U-Net (Song et al., 2021; EDM's SongUNet) for NHWC images."""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.nn.conditioning import XAVIER, NoiseLabelEmbedding, check_inputs
from jaxdiff.nn.conv import Conv

SKIP_SCALE = math.sqrt(0.5)


def check_unet_image_size(image_size: int, channel_mult: Sequence[int]) -> None:
    """Raises ValueError unless image_size is divisible by 2 ** (len(channel_mult) - 1)."""
    downs = len(channel_mult) - 1
    if image_size % 2**downs:
        raise ValueError(
            f"image_size={image_size} cannot be downsampled {downs} times by "
            f"channel_mult={tuple(channel_mult)}: needs a multiple of {2**downs}"
        )


def group_norm(channels: int, num_groups: int = 32, dtype: Any = None) -> nn.GroupNorm:
    """GroupNorm with at most num_groups groups of at least 4 channels that divide channels.

    ``dtype`` is the output's (None: the input's promoted with the float32 scale and bias);
    the statistics are float32 whatever it is.
    """
    groups = max(1, min(num_groups, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(num_groups=groups, epsilon=1e-6, dtype=dtype)


def _conv(features: int, kernel: int, zero: bool = False, dtype: Any = jnp.float32) -> nn.Conv:
    init = nn.initializers.zeros if zero else XAVIER
    return Conv(features, (kernel, kernel), padding="SAME", kernel_init=init, dtype=dtype)


def _resample(x: jax.Array, resample: str | None) -> jax.Array:
    """(B,H,W,C) -> 2x2 average pool ("down"), nearest 2x upsample ("up") or identity."""
    if resample == "down":
        return nn.avg_pool(x, (2, 2), strides=(2, 2))
    if resample == "up":
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return x


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions: (B,H,W,C) -> (B,H,W,C), zero at init.

    Products run in ``dtype``; the attention logits and softmax in float32.
    """

    num_heads: int = 1
    num_groups: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide the channel count {c}")
        normed = group_norm(c, self.num_groups, self.dtype)(x)
        qkv = nn.Dense(3 * c, kernel_init=XAVIER, dtype=self.dtype, name="qkv")(normed)
        qkv = qkv.reshape(b, h * w, 3 * self.num_heads, c // self.num_heads)
        q, k, v = jnp.split(qkv, 3, axis=2)
        a = jax.nn.dot_product_attention(q, k, v).reshape(b, h, w, c)
        return nn.Dense(c, kernel_init=nn.initializers.zeros, dtype=self.dtype, name="proj")(a)


class UNetBlock(nn.Module):
    """Residual block (B,H,W,Cin), emb (B,E) -> (B,H',W',out_channels).

    GroupNorm-SiLU-(resample)-conv, adaptive scale/shift from emb, SiLU,
    dropout, zero-initialised conv; skip (resampled, 1x1 projected when the
    shape changes) summed and scaled by 1/sqrt(2); then optional self-attention.
    Runs in ``dtype`` (activations and products; GroupNorm statistics stay float32).
    """

    out_channels: int
    resample: str | None = None
    attention: bool = False
    num_heads: int = 1
    dropout: float = 0.0
    num_groups: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, *, train: bool = False) -> jax.Array:
        c, dtype = self.out_channels, self.dtype
        h = nn.silu(group_norm(x.shape[-1], self.num_groups, dtype)(x))
        h = _conv(c, 3, dtype=dtype)(_resample(h, self.resample))
        affine = nn.Dense(2 * c, kernel_init=XAVIER, dtype=dtype, name="affine")(emb)
        scale, shift = jnp.split(affine, 2, axis=-1)
        h = group_norm(c, self.num_groups, dtype)(h) * (1 + scale[:, None, None]) + shift[:, None, None]
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = _conv(c, 3, zero=True, dtype=dtype)(h)
        skip = _resample(x.astype(dtype), self.resample)
        if self.resample or x.shape[-1] != c:
            skip = _conv(c, 1, dtype=dtype)(skip)
        x = (h + skip) * SKIP_SCALE
        if self.attention:
            x = (x + SelfAttention(self.num_heads, self.num_groups, dtype)(x)) * SKIP_SCALE
        return x


class UNet(nn.Module):
    """DDPM++ U-Net: x (B,H,W,C), c_noise () or (B,), labels (B,) int or None -> (B,H,W,C).

    Level i works at resolution H / 2**i with channels * channel_mult[i]
    channels; attention follows the blocks at heights listed in
    attn_resolutions and (as in DDPM++) the first bottleneck block. The output
    conv is zero-initialised, so the network outputs exactly zero at init.
    Dropout draws from the 'dropout' RNG stream only when train=True. ``dtype`` is the
    compute dtype of the input conv and the blocks (e.g. bfloat16, mixed precision): the
    parameters, the noise embedding, the output head (GroupNorm, SiLU, conv) and the output
    stay float32 (the [precision policy][precision-policy]).
    """

    channels: int = 64
    channel_mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = ()
    dropout: float = 0.1
    num_classes: int = 0
    embedding: str = "positional"
    num_groups: int = 32
    num_heads: int = 1
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
        height, width = x.shape[1:3]
        check_unet_image_size(height, self.channel_mult)
        check_unet_image_size(width, self.channel_mult)
        embed = NoiseLabelEmbedding(
            4 * self.channels, self.channels, self.num_classes, self.embedding, name="embed"
        )
        emb = embed(c_noise, labels)
        block = functools.partial(
            UNetBlock, num_heads=self.num_heads, dropout=self.dropout, num_groups=self.num_groups,
            dtype=self.dtype,
        )
        top = len(self.channel_mult) - 1

        h = _conv(self.channels, 3, dtype=self.dtype)(x)
        skips = [h]
        for level, mult in enumerate(self.channel_mult):
            res = height >> level
            if level:
                down = block(h.shape[-1], resample="down", name=f"enc_{res}_down")
                h = down(h, emb, train=train)
                skips.append(h)
            for idx in range(self.num_res_blocks):
                attn = res in self.attn_resolutions
                h = block(self.channels * mult, attention=attn, name=f"enc_{res}_block{idx}")(
                    h, emb, train=train
                )
                skips.append(h)

        for level, mult in reversed(list(enumerate(self.channel_mult))):
            res = height >> level
            if level == top:
                h = block(h.shape[-1], attention=True, name=f"dec_{res}_in0")(h, emb, train=train)
                h = block(h.shape[-1], name=f"dec_{res}_in1")(h, emb, train=train)
            else:
                h = block(h.shape[-1], resample="up", name=f"dec_{res}_up")(h, emb, train=train)
            for idx in range(self.num_res_blocks + 1):
                attn = idx == self.num_res_blocks and res in self.attn_resolutions
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = block(self.channels * mult, attention=attn, name=f"dec_{res}_block{idx}")(
                    h, emb, train=train
                )

        h = nn.silu(group_norm(h.shape[-1], self.num_groups)(h.astype(jnp.float32)))
        return _conv(x.shape[-1], 3, zero=True)(h)
