"""2-D convolutions whose kernel gradient is fast on the CPU, for flax's ``nn.Conv``.

XLA's CPU backend differentiates a convolution with respect to its kernel as another convolution,
whose kernel is the output gradient (a window as large as the image); on 32x32 feature maps the
gradient took 8 to 20 times the forward pass (``experiments/bench/conv_grad.py``).
``conv_general_dilated`` computes the same convolution with lax's kernel, but its derivative with
respect to the kernel w (kh, kw, C, D) as a sum over the kh kw taps of matrix products: for a
kernel tangent dw, ``sum_ij x_ij @ dw[i, j]`` with x_ij the input window of tap (i, j)
(B Ho Wo, C), whose transpose gives the gradient ``dw[i, j] = x_ij^T g``. The input's derivative
stays lax's. Only plain convolutions on large maps take this path (NHWC / HWIO, no dilation, one
group, on the CPU, outputs of at least ``MIN_PIXELS`` pixels a map and inputs of at least
``MIN_CHANNELS`` channels); on smaller ones lax's gradient is as fast or faster, and any other
convolution goes to ``lax.conv_general_dilated`` unchanged.

``Conv`` is ``nn.Conv`` with this function: the same parameters (names and shapes), so checkpoints
of either load in the other.
"""

from __future__ import annotations

import contextlib
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

MIN_PIXELS, MIN_CHANNELS = 1024, 16  # Ho Wo and C from which the shifted products pay (bench conv_grad)
PATHS = ("auto", "lax", "shifted")
_state = {"path": "auto"}


@contextlib.contextmanager
def kernel_gradients(path: str):
    """Trace the convolutions inside the block with one kernel gradient: "auto" (the shifted products where
    ``MIN_PIXELS`` and ``MIN_CHANNELS`` allow), "lax" or "shifted" (on every plain convolution)."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    before, _state["path"] = _state["path"], path
    try:
        yield
    finally:
        _state["path"] = before


def pays(pixels: int, channels: int) -> bool:
    """Whether "auto" takes the shifted products for outputs of ``pixels`` per map from ``channels`` inputs."""
    return pixels >= MIN_PIXELS and channels >= MIN_CHANNELS


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
    """``lax.conv_general_dilated``, with the kernel gradient of the module docstring where it applies."""
    args = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
            batch_group_count, precision, preferred_element_type)
    plain = (_state["path"] != "lax" and jax.default_backend() == "cpu" and lhs.ndim == 4 and rhs.ndim == 4
             and all(d in (None, 1) or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
             and feature_group_count == 1 and batch_group_count == 1 and preferred_element_type is None
             and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")))
    if not plain:
        return lax.conv_general_dilated(*args)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    out = [(n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in zip(lhs.shape[1:3], pads, rhs.shape[:2], window_strides)]
    if min(min(p) for p in pads) < 0 or (_state["path"] == "auto" and not pays(out[0] * out[1], rhs.shape[2])):
        return lax.conv_general_dilated(*args)
    return _conv(tuple(int(s) for s in window_strides), pads, precision, lhs, rhs)


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
Conv.__doc__ = "``flax.linen.Conv`` whose kernel gradient is ``conv_general_dilated``'s."


def _lax(strides, pads, precision, x, w):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=precision)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _conv(strides, pads, precision, x, w):
    """x (B, H, W, C) conv w (kh, kw, C, D) -> (B, Ho, Wo, D)."""
    return _lax(strides, pads, precision, x, w)


@functools.partial(_conv.defjvp, symbolic_zeros=True)
def _conv_jvp(strides, pads, precision, primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = _lax(strides, pads, precision, x, w)
    dy = jnp.zeros_like(y)
    if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
        dy = dy + _lax(strides, pads, precision, dx, w)
    if not isinstance(dw, jax.custom_derivatives.SymbolicZero):
        dy = dy + _taps(strides, pads, precision, x, dw.astype(w.dtype), y.shape)
    return y, dy


@functools.partial(jax.checkpoint, static_argnums=(0, 1, 2, 5))
def _taps(strides, pads, precision, x, dw, shape):
    """sum over taps (i, j) of x_ij @ dw[i, j] (linear in dw): the convolution, as matrix products whose
    transpose is the kernel gradient; rematerialised, so its backward pass keeps x, not the kh kw windows."""
    b, ho, wo, _ = shape
    kh, kw, c, _ = dw.shape
    (sh, sw), ((pt, pb), (pl, pr)) = strides, pads
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            window = lax.slice(xp, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
            out = out + jnp.dot(window.reshape(-1, c), dw[i, j], precision=precision)
    return out.reshape(shape)
