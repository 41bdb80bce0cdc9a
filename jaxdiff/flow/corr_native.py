"""The C++ correlation kernels of ``jaxdiff.flow.corr`` (``jaxdiff/csrc/corr_cpu.cc``), CPU only.

Built on first use and registered as XLA FFI targets by ``jaxdiff._native``. They read each window
straight from the volume, or compute its (2r+2)² taps as dot products, on XLA's intra-op threads;
their gradients are C++ kernels too. Products are float32, as in RAFT's PyTorch ``CorrBlock``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _native

Array = jax.Array
_FFI_TARGETS = tuple(
    (f"jaxdiff_corr_{name}", f"JaxdiffCorr{symbol}")
    for name, symbol in (("lookup", "Lookup"), ("lookup_grad", "LookupGrad"), ("windows", "Windows"),
                         ("windows_grad", "WindowsGrad"))
)


def available() -> bool:
    """Whether the kernels are built and registered (once per process; False after one warning if not)."""
    return _native.load("corr_cpu", _FFI_TARGETS)


def _with_grad(forward: Callable, backward: Callable) -> Callable:
    """``forward(*args, xy)`` whose vector-Jacobian product in ``args`` is ``backward(*args, xy, g)``
    (a tuple); the coordinates ``xy`` get none."""

    @jax.custom_vjp
    def f(*args):
        return forward(*args)

    f.defvjp(lambda *args: (forward(*args), args), lambda args, g: backward(*args, g) + (jnp.zeros_like(args[-1]),))
    return f


# ----------------------------------------------------------------------------- all pairs


def _lookup(pyramid: tuple[Array, ...], xy: Array, radius: int) -> Array:
    shape = jax.ShapeDtypeStruct((xy.shape[0], len(pyramid) * (2 * radius + 1) ** 2), xy.dtype)
    call = jax.ffi.ffi_call("jaxdiff_corr_lookup", shape, vmap_method="sequential")
    return call(xy, *pyramid, radius=np.int64(radius))


def _lookup_grad(pyramid: tuple[Array, ...], xy: Array, g: Array, radius: int) -> tuple[tuple[Array, ...]]:
    """(dpyramid,) of ``_lookup`` for the output cotangent ``g`` (Q, L (2r+1)²)."""
    shapes = tuple(jax.ShapeDtypeStruct(v.shape, v.dtype) for v in pyramid)
    call = jax.ffi.ffi_call("jaxdiff_corr_lookup_grad", shapes, vmap_method="sequential")
    return (tuple(call(xy, g, radius=np.int64(radius))),)


def lookup(pyramid: tuple[Array, ...], xy: Array, radius: int) -> Array:
    """Windows (Q, L (2r+1)²) of level-0 coords ``xy`` (Q, 2) in levels (Q, h_l, w_l); ``xy`` gets no gradient."""
    kernel = _with_grad(functools.partial(_lookup, radius=radius), functools.partial(_lookup_grad, radius=radius))
    return kernel(pyramid, xy)


# ----------------------------------------------------------------------------- on the fly


def _on_the_fly(f1: Array, pyramid: tuple[Array, ...], xy: Array, r: int) -> Array:
    b, h, w, d = f1.shape
    shape = jax.ShapeDtypeStruct((b, h * w, len(pyramid) * (2 * r + 1) ** 2), f1.dtype)
    call = jax.ffi.ffi_call("jaxdiff_corr_windows", shape, vmap_method="sequential")
    out = call(f1, xy, *pyramid, radius=np.int64(r), scale=1 / math.sqrt(d))
    return out.reshape(b, h, w, -1)


def _on_the_fly_grad(f1: Array, pyramid: tuple[Array, ...], xy: Array, g: Array, r: int):
    """(df1, dpyramid) of ``_on_the_fly`` for the output cotangent ``g`` (B, H, W, L (2r+1)²)."""
    shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (f1, *pyramid))
    call = jax.ffi.ffi_call("jaxdiff_corr_windows_grad", shapes, vmap_method="sequential")
    grads = call(f1, xy, g, *pyramid, radius=np.int64(r), scale=1 / math.sqrt(f1.shape[-1]))
    return grads[0], tuple(grads[1:])


def on_the_fly(f1: Array, pyramid: tuple[Array, ...], xy: Array, r: int) -> Array:
    """Windows (B, H, W, L (2r+1)²) of ``f1`` (B, H, W, D) at level-0 coords ``xy`` (B, H, W, 2) in the
    feature ``pyramid`` (levels (B, h_l, w_l, D)), each query's taps as dot products; a level-(l+1) tap is
    the mean of the four level-l taps below it where the kernel has already computed them."""
    kernel = _with_grad(functools.partial(_on_the_fly, r=r), functools.partial(_on_the_fly_grad, r=r))
    return kernel(f1, pyramid, xy)
