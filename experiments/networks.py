"""The image/point networks of ``config.model`` (UNet, DiT, MLP), shared by the diffusion and bridge tasks.

``model.<arch>.dtype`` is the compute dtype (``bfloat16``: mixed precision, float32 parameters and
output); ``model.matmul_precision`` the precision the network's float32 products ask for, in training
and sampling alike: ``default`` leaves XLA's (TF32 on recent NVIDIA GPUs, one bfloat16 pass on TPUs),
``high`` and ``highest`` ask for more (``highest``: float32). See docs/design/precision.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.checks import choose, fail
from jaxdiff import nn

ARCHS = ("unet", "dit", "mlp")
DTYPES = ("float32", "bfloat16", "float16")
MATMUL_PRECISIONS = ("default", "high", "highest")


def check(config) -> None:
    """The checks that need no data shape."""
    cfg = config.model
    choose("model.arch", cfg.arch, ARCHS)
    if cfg.num_classes < 0:
        fail("model.num_classes", f"must be >= 0, got {cfg.num_classes}")
    dtype = cfg.get(cfg.arch, {}).get("dtype", "float32")
    choose(f"model.{cfg.arch}.dtype", dtype, DTYPES)
    choose("model.matmul_precision", cfg.get("matmul_precision", "default"), MATMUL_PRECISIONS)


def network(config, shape: tuple):
    """``(module, net)`` for examples of ``shape`` ((H, W, C) images or (D,) points), with
    ``net(params, x, c_noise, *, key=None, **cond)`` from ``jaxdiff.nn.as_net``, tracing its
    products at ``model.matmul_precision``."""
    check(config)
    cfg = config.model
    kwargs = dict(cfg.get(cfg.arch, {}))
    if "dtype" in kwargs:
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    if cfg.arch == "mlp":
        if len(shape) != 1:
            fail("model.arch", f"mlp needs flat (D,) examples, the data has shape {shape}")
        module = nn.MLP(num_classes=cfg.num_classes, **kwargs)
    elif len(shape) != 3:
        fail("model.arch", f"{cfg.arch} needs (H, W, C) images, the data has shape {shape}")
    elif cfg.arch == "unet":
        try:
            nn.check_unet_image_size(shape[0], tuple(kwargs.get("channel_mult", nn.UNet.channel_mult)))
        except ValueError as e:
            fail("model.unet.channel_mult", str(e))
        module = nn.UNet(num_classes=cfg.num_classes, **kwargs)
    else:
        p = kwargs.get("patch_size", nn.DiT.patch_size)
        if shape[0] % p or shape[1] % p:
            fail("model.dit.patch_size", f"patch_size={p} must divide the image size {shape[:2]}")
        module = nn.DiT(num_classes=cfg.num_classes, **kwargs)
    return module, with_matmul_precision(nn.as_net(module), cfg.get("matmul_precision", "default"))


def with_matmul_precision(net, precision: str):
    """``net`` whose products without a precision of their own ask for ``precision`` ("default": as is)."""
    if precision == "default":
        return net

    def precise(*args, **kwargs):
        with jax.default_matmul_precision(precision):
            return net(*args, **kwargs)

    return precise


def init_params(module, shape: tuple, key):
    """Parameters of ``module`` for examples of ``shape``, initialised under ``jit``."""
    x = jnp.zeros((1, *shape), jnp.float32)
    return jax.jit(lambda k: module.init(k, x, jnp.ones((1,)))["params"])(key)
