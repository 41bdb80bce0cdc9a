"""RAFT optical flow (Teed & Deng, arXiv 2003.12039), large and small, Flax linen, NHWC.

Layer shapes follow the reference (princeton-vl/RAFT), so parameter counts match it:
5,257,536 (large) and 990,162 (small). Images are (B, H, W, 3) in [0, 255], H and W
multiples of 8 (``pad_to_multiple`` / ``unpad`` otherwise). Flow is (x, y) in pixels,
frame 1 -> frame 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from jaxdiff.flow.corr import correlation_pyramid, lookup
from jaxdiff.nn.conv import Conv

Array = jax.Array

# PyTorch's defaults: kaiming-normal fan-out in the encoders, kaiming-uniform(a=sqrt 5) elsewhere.
_ENCODER_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_TORCH_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def _conv(features: int, kernel, stride: int = 1, init=_TORCH_INIT) -> nn.Conv:
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    padding = [(k // 2, k // 2) for k in kernel]
    return Conv(features, kernel, strides=stride, padding=padding, kernel_init=init)


# ----------------------------------------------------------------------------- padding


def pad_to_multiple(image: Array, multiple: int = 8) -> tuple[Array, tuple[int, int, int, int]]:
    """Edge-pad (B, H, W, C) symmetrically to multiples of ``multiple``; returns (padded, pads).

    ``pads`` is (top, bottom, left, right), as ``unpad`` takes it.
    """
    if image.ndim != 4:
        raise ValueError(f"image must have shape (B, H, W, C), got {image.shape}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    h, w = image.shape[1:3]
    ph, pw = -h % multiple, -w % multiple
    pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    padded = jnp.pad(image, ((0, 0), pads[:2], pads[2:], (0, 0)), mode="edge")
    return padded, pads


def unpad(x: Array, pads: tuple[int, int, int, int]) -> Array:
    """Crop (..., H, W, C) padded by ``pad_to_multiple`` back to its original size."""
    top, bottom, left, right = pads
    h, w = x.shape[-3:-1]
    return x[..., top : h - bottom, left : w - right, :]


# ----------------------------------------------------------------------------- upsampling


def coords_grid(batch: int, height: int, width: int, dtype=jnp.float32) -> Array:
    """Pixel coordinates (B, H, W, 2) in (x, y)."""
    y, x = jnp.meshgrid(jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype), indexing="ij")
    return jnp.broadcast_to(jnp.stack([x, y], -1), (batch, height, width, 2))


def _align_corners_matrix(n: int, factor: int) -> np.ndarray:
    """(factor n, n) linear interpolation weights with corners aligned (float64)."""
    src = np.arange(factor * n) * ((n - 1) / max(factor * n - 1, 1))
    return np.maximum(0, 1 - np.abs(src[:, None] - np.arange(n)[None]))


def upsample_bilinear(flow: Array, factor: int = 8) -> Array:
    """RAFT's ``upflow8``: (B, h, w, 2) -> (B, 8h, 8w, 2), bilinear, corners aligned, values x8."""
    ah = jnp.asarray(_align_corners_matrix(flow.shape[1], factor), flow.dtype)
    aw = jnp.asarray(_align_corners_matrix(flow.shape[2], factor), flow.dtype)
    return factor * jnp.einsum("Yy,byxc,Xx->bYXc", ah, flow, aw, precision=lax.Precision.HIGHEST)


def upsample_convex(flow: Array, mask: Array, factor: int = 8) -> Array:
    """Convex upsampling: flow (B, h, w, 2), mask logits (B, h, w, 9 f²) -> (B, f h, f w, 2).

    Each fine pixel is a softmax-weighted mean of 8x the flow at the 3x3 coarse
    neighbours (zeros outside the map, as the reference). Mask channel
    ``k f² + i f + j``: neighbour k (row-major 3x3), sub-pixel row i, column j.
    """
    b, h, w, _ = flow.shape
    if mask.shape != (b, h, w, 9 * factor**2):
        raise ValueError(f"mask must have shape {(b, h, w, 9 * factor**2)}, got {mask.shape}")
    weights = jax.nn.softmax(mask.reshape(b, h, w, 9, factor, factor), axis=3)
    padded = jnp.pad(factor * flow, ((0, 0), (1, 1), (1, 1), (0, 0)))
    neighbours = jnp.stack([padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], 3)
    up = jnp.einsum("bhwkij,bhwkc->bhiwjc", weights, neighbours, precision=lax.Precision.HIGHEST)
    return up.reshape(b, factor * h, factor * w, 2)


# ----------------------------------------------------------------------------- encoders


def _norm(kind: str, train: bool, name: str):
    if kind == "instance":
        return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, name=name)
    if kind == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)
    return lambda x: x


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a (strided 1x1) shortcut."""

    planes: int
    norm: str
    stride: int = 1

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        y = nn.relu(_norm(self.norm, train, "norm1")(_conv(self.planes, 3, self.stride, _ENCODER_INIT)(x)))
        y = nn.relu(_norm(self.norm, train, "norm2")(_conv(self.planes, 3, 1, _ENCODER_INIT)(y)))
        if self.stride != 1:
            x = _norm(self.norm, train, "norm3")(_conv(self.planes, 1, self.stride, _ENCODER_INIT)(x))
        return nn.relu(x + y)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 at a quarter of the channels, with a shortcut."""

    planes: int
    norm: str
    stride: int = 1

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        q = self.planes // 4
        y = nn.relu(_norm(self.norm, train, "norm1")(_conv(q, 1, 1, _ENCODER_INIT)(x)))
        y = nn.relu(_norm(self.norm, train, "norm2")(_conv(q, 3, self.stride, _ENCODER_INIT)(y)))
        y = nn.relu(_norm(self.norm, train, "norm3")(_conv(self.planes, 1, 1, _ENCODER_INIT)(y)))
        if self.stride != 1:
            x = _norm(self.norm, train, "norm4")(_conv(self.planes, 1, self.stride, _ENCODER_INIT)(x))
        return nn.relu(x + y)


class Encoder(nn.Module):
    """RAFT's BasicEncoder (large) / SmallEncoder: (B, H, W, 3) -> (B, H/8, W/8, output_dim).

    ``norm``: "instance", "batch" or "none".
    """

    output_dim: int
    norm: str
    small: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        widths = (32, 64, 96) if self.small else (64, 96, 128)
        block = BottleneckBlock if self.small else ResidualBlock
        x = _conv(widths[0], 7, 2, _ENCODER_INIT)(x)
        x = nn.relu(_norm(self.norm, train, "norm1")(x))
        for width, stride in zip(widths, (1, 2, 2)):
            x = block(width, self.norm, stride)(x, train)
            x = block(width, self.norm, 1)(x, train)
        return _conv(self.output_dim, 1, 1, _ENCODER_INIT)(x)


# ----------------------------------------------------------------------------- update block


class MotionEncoder(nn.Module):
    """Correlation (B, h, w, C) and flow (B, h, w, 2) -> motion features (B, h, w, 82 | 128)."""

    small: bool = False

    @nn.compact
    def __call__(self, flow: Array, corr: Array) -> Array:
        if self.small:
            cor = nn.relu(_conv(96, 1)(corr))
            flo = nn.relu(_conv(32, 3)(nn.relu(_conv(64, 7)(flow))))
            out = nn.relu(_conv(80, 3)(jnp.concatenate([cor, flo], -1)))
        else:
            cor = nn.relu(_conv(192, 3)(nn.relu(_conv(256, 1)(corr))))
            flo = nn.relu(_conv(64, 3)(nn.relu(_conv(128, 7)(flow))))
            out = nn.relu(_conv(126, 3)(jnp.concatenate([cor, flo], -1)))
        return jnp.concatenate([out, flow], -1)


class ConvGRU(nn.Module):
    """Convolutional GRU; ``kernels`` (kh, kw) per pass: one 3x3 pass, or (1, 5) then (5, 1) (separable)."""

    hidden_dim: int
    kernels: tuple[tuple[int, int], ...] = ((3, 3),)

    @nn.compact
    def __call__(self, h: Array, x: Array) -> Array:
        for kernel in self.kernels:
            hx = jnp.concatenate([h, x], -1)
            z = nn.sigmoid(_conv(self.hidden_dim, kernel)(hx))
            r = nn.sigmoid(_conv(self.hidden_dim, kernel)(hx))
            q = jnp.tanh(_conv(self.hidden_dim, kernel)(jnp.concatenate([r * h, x], -1)))
            h = (1 - z) * h + z * q
        return h


class UpdateBlock(nn.Module):
    """One refinement: (net, inp, corr, flow) -> (net, upsampling mask logits or None, delta flow);
    ``mask=False`` skips the mask head (returns None for it)."""

    hidden_dim: int
    small: bool = False

    @nn.compact
    def __call__(self, net: Array, inp: Array, corr: Array, flow: Array, mask: bool = True):
        motion = MotionEncoder(self.small)(flow, corr)
        kernels = ((3, 3),) if self.small else ((1, 5), (5, 1))
        net = ConvGRU(self.hidden_dim, kernels)(net, jnp.concatenate([inp, motion], -1))
        head = 128 if self.small else 256
        delta = _conv(2, 3)(nn.relu(_conv(head, 3)(net)))
        if self.small or not mask:
            return net, None, delta
        logits = 0.25 * _conv(64 * 9, 1)(nn.relu(_conv(256, 3)(net)))  # scaled to balance gradients
        return net, logits, delta


class _Refine(nn.Module):
    """Scan body: carry (net, coords1) -> (carry, full-resolution flow (B, H, W, 2))."""

    hidden_dim: int
    small: bool
    radius: int
    corr_kernel: str

    @nn.compact
    def __call__(self, carry, inp, pyramid, coords0, upsample: bool = True):
        net, coords1 = carry
        coords1 = jax.lax.stop_gradient(coords1)
        corr = lookup(pyramid, coords1, self.radius, kernel=self.corr_kernel)
        net, mask, delta = UpdateBlock(self.hidden_dim, self.small, name="update_block")(
            net, inp, corr, coords1 - coords0, upsample
        )
        coords1 = coords1 + delta
        if not upsample:
            return (net, coords1), None
        flow = coords1 - coords0
        flow_up = upsample_bilinear(flow) if mask is None else upsample_convex(flow, mask)
        return (net, coords1), flow_up


class RAFT(nn.Module):
    """RAFT; ``small`` selects RAFT-small (hidden 96, context 64, radius 3, no context norm,
    bilinear upsampling), else RAFT (hidden/context 128, radius 4, batch-norm context,
    convex upsampling). ``freeze_bn`` keeps the context batch norm in inference mode
    in training too (the reference does after its first stage).

    ``__call__(image1, image2, iters, flow_init=None, train=False, final_only=False)``: images
    (B, H, W, 3) in [0, 255], H and W multiples of 8; ``flow_init`` (B, H/8, W/8, 2). Returns the
    flow after every iteration, (iters, B, H, W, 2); with ``final_only`` the last one alone,
    (1, B, H, W, 2), the earlier iterations neither upsampled nor given a mask (the same values,
    less work: inference). Batch-norm statistics live in the
    ``batch_stats`` collection (large model), mutable when ``train`` and not ``freeze_bn``.

    ``unroll`` is ``lax.scan``'s over the refinements; ``None`` (the default) unrolls them all
    on the CPU backend and keeps them rolled elsewhere: XLA:CPU runs the convolutions of a
    rolled loop ~1.6x slower forward and ~15x slower backward (BENCHMARKS.md), at the price
    of a compile that grows with ``iters``. ``corr_kernel`` is the correlation lookup's
    ``kernel`` (``jaxdiff.flow.corr.lookup``).
    """

    small: bool = False
    freeze_bn: bool = False
    corr_levels: int = 4
    unroll: int | bool | None = None
    corr_kernel: str = "auto"

    @property
    def scan_unroll(self) -> int | bool:
        """``unroll`` with ``None`` resolved for the current backend."""
        if self.unroll is None:
            return True if jax.default_backend() == "cpu" else 1
        return self.unroll

    @property
    def hidden_dim(self) -> int:
        return 96 if self.small else 128

    @property
    def context_dim(self) -> int:
        return 64 if self.small else 128

    @property
    def radius(self) -> int:
        return 3 if self.small else 4

    @nn.compact
    def __call__(self, image1: Array, image2: Array, iters: int = 12, flow_init: Array | None = None,
                 train: bool = False, final_only: bool = False) -> Array:
        _check_images(image1, image2)
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        b, h, w, _ = image1.shape
        if min(h, w) < 8 << (self.corr_levels - 1):
            raise ValueError(f"image1 must be at least 8 * 2**(corr_levels - 1) = {8 << (self.corr_levels - 1)} "
                             f"pixels a side, got {h}x{w}")
        if flow_init is not None and flow_init.shape != (b, h // 8, w // 8, 2):
            raise ValueError(f"flow_init must have shape {(b, h // 8, w // 8, 2)}, got {flow_init.shape}")
        image1 = 2 * (image1 / 255.0) - 1
        image2 = 2 * (image2 / 255.0) - 1

        fdim = 128 if self.small else 256
        fmaps = Encoder(fdim, "instance", self.small, name="fnet")(jnp.concatenate([image1, image2]), train)
        pyramid = correlation_pyramid(fmaps[:b], fmaps[b:], self.corr_levels)
        context = Encoder(self.hidden_dim + self.context_dim, "none" if self.small else "batch", self.small,
                          name="cnet")(image1, train and not self.freeze_bn)
        net = jnp.tanh(context[..., : self.hidden_dim])
        inp = nn.relu(context[..., self.hidden_dim :])

        coords0 = coords_grid(b, h // 8, w // 8, fmaps.dtype)
        coords1 = coords0 if flow_init is None else coords0 + flow_init
        if final_only:  # a Python loop over one module: the parameters of the scanned body, shared
            refine = _Refine(self.hidden_dim, self.small, self.radius, self.corr_kernel, name="refine")
            carry = (net, coords1)
            for i in range(iters):
                carry, flow_up = refine(carry, inp, pyramid, coords0, upsample=i == iters - 1)
            return flow_up[None]
        scan = nn.scan(
            _Refine,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
            length=iters,
            unroll=self.scan_unroll,
        )
        refine = scan(self.hidden_dim, self.small, self.radius, self.corr_kernel, name="refine")
        _, flows = refine((net, coords1), inp, pyramid, coords0)
        return flows


def _check_images(image1: Array, image2: Array, multiple_of_8: bool = True) -> None:
    for name, image in (("image1", image1), ("image2", image2)):
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f"{name} must have shape (B, H, W, 3), got {image.shape}")
    if image1.shape != image2.shape:
        raise ValueError(f"image1 and image2 must have the same shape, got {image1.shape} and {image2.shape}")
    h, w = image1.shape[1:3]
    if multiple_of_8 and (h % 8 or w % 8):
        raise ValueError(f"image1 height and width must be multiples of 8 (use pad_to_multiple), got {h}x{w}")


def estimate_flow(model: RAFT, variables, image1: Array, image2: Array, iters: int = 12) -> Array:
    """Final flow (B, H, W, 2) for images (B, H, W, 3) of any size: pads to multiples of 8, runs, unpads."""
    _check_images(image1, image2, multiple_of_8=False)
    padded1, pads = pad_to_multiple(image1, 8)
    padded2, _ = pad_to_multiple(image2, 8)
    return unpad(model.apply(variables, padded1, padded2, iters, final_only=True)[0], pads)


# ----------------------------------------------------------------------------- loss and metrics


def sequence_loss(flows: Array, flow_gt: Array, valid: Array, gamma: float = 0.8, max_flow: float = 400.0):
    """RAFT's loss: sum_i gamma^(N-i-1) mean(valid |flow_i - gt|_1) over (N, B, H, W, 2) predictions.

    Pixels with invalid GT or |gt| >= ``max_flow`` are masked (the mean still runs over all
    pixels, as the reference). Returns (loss, metrics of the last prediction).
    """
    if flows.ndim != 5 or flows.shape[1:] != flow_gt.shape:
        raise ValueError(f"flows must have shape (N,) + flow_gt.shape = (N, {flow_gt.shape}), got {flows.shape}")
    if valid.shape != flow_gt.shape[:-1]:
        raise ValueError(f"valid must have shape {flow_gt.shape[:-1]}, got {valid.shape}")
    mask = (valid >= 0.5) & (jnp.linalg.norm(flow_gt, axis=-1) < max_flow)
    n = flows.shape[0]
    weights = gamma ** jnp.arange(n - 1, -1, -1, dtype=flows.dtype)
    per_iter = jnp.mean(mask[None, ..., None] * jnp.abs(flows - flow_gt), axis=(1, 2, 3, 4))
    return jnp.sum(weights * per_iter), flow_metrics(flows[-1], flow_gt, mask)


def flow_metrics(flow: Array, flow_gt: Array, valid: Array | None = None) -> dict[str, Array]:
    """EPE, 1/3/5 px accuracies and KITTI F1-all (%, error > 3 px and > 5% of |gt|) over valid pixels.

    flow, flow_gt (..., 2); valid (...) or None (all pixels).
    """
    if flow.shape != flow_gt.shape or flow.shape[-1] != 2:
        raise ValueError(f"flow must have the shape of flow_gt (..., 2), got {flow.shape} and {flow_gt.shape}")
    epe = jnp.linalg.norm(flow - flow_gt, axis=-1)
    mag = jnp.linalg.norm(flow_gt, axis=-1)
    if valid is None:
        valid = jnp.ones(epe.shape, bool)
    elif valid.shape != epe.shape:
        raise ValueError(f"valid must have shape {epe.shape}, got {valid.shape}")
    weight = valid.astype(flow.dtype)
    count = jnp.maximum(weight.sum(), 1)

    def mean(x):
        return jnp.sum(weight * x) / count

    outlier = (epe > 3.0) & (epe > 0.05 * mag)
    return {
        "epe": mean(epe),
        "1px": mean(epe < 1),
        "3px": mean(epe < 3),
        "5px": mean(epe < 5),
        "f1": 100 * mean(outlier),
    }
