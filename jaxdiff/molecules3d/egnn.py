"""E(n)-equivariant graph network (Satorras et al., 2021) in the form Hoogeboom et al. (2022) use for
molecule diffusion, on dense padded point clouds.

Every pair of real atoms (i != j) exchanges messages built from invariant node features ``h`` and the
squared distances (current and at the input), or their sinusoidal embeddings (``sin_embedding``); positions move along normalised differences
``(x_i - x_j) / (|x_i - x_j| + norm_constant)`` by a bounded amount ``tanh(phi) · coords_range``
(float32 stable: the step no longer grows with the distance). So, for any rotation or reflection R,
translation t and permutation P of the real atoms, ``EGNN(P h, P x R + t) = (P h', P x' R + t)``.
Padding slots receive and send nothing and come out zero.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.molecules3d.com import check_point_cloud, remove_mean


def _pairs(x, norm_constant: float) -> tuple[jax.Array, jax.Array]:
    """x (B, n, d) -> squared distances (B, n, n, 1), normalised differences x_i - x_j (B, n, n, d)."""
    diff = x[:, :, None, :] - x[:, None, :, :]
    radial = jnp.sum(jnp.square(diff), axis=-1, keepdims=True)
    return radial, diff / (jnp.sqrt(radial + 1e-8) + norm_constant)


def sin_embedding(radial, max_res: float = 15.0, min_res: float = 15.0 / 2000, div_factor: float = 4.0) -> jax.Array:
    """(..., 2K): sin then cos of ``2π · div_factor**k / max_res · sqrt(radial + 1e-8)``, k = 0..K-1, with
    K = floor(log_div_factor(max_res / min_res)) + 1 (Hoogeboom et al.'s distance embedding; K = 6 with
    its defaults, periods 15 Å down to 15/4**5 Å).

    Args:
        radial: (..., 1) squared distances.
        max_res: the longest period, in the units of the distance.
        min_res: the shortest period is the smallest max_res / div_factor**k not below it.
        div_factor: the ratio of consecutive periods, > 1.
    """
    if not 0 < min_res <= max_res or div_factor <= 1:
        raise ValueError(f"need 0 < min_res <= max_res and div_factor > 1, got min_res={min_res}, "
                         f"max_res={max_res}, div_factor={div_factor}")
    radial = jnp.asarray(radial)
    if radial.ndim < 1 or radial.shape[-1] != 1:
        raise ValueError(f"radial must have shape (..., 1), got {radial.shape}")
    k = int(math.log(max_res / min_res, div_factor)) + 1
    freqs = 2 * math.pi * div_factor ** jnp.arange(k, dtype=radial.dtype) / max_res
    angle = jnp.sqrt(radial + 1e-8) * freqs
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def _edge_input(h, edge_attr) -> jax.Array:
    """(B, n, n, 2F + E): h_i, h_j and the edge attributes of every pair."""
    n = h.shape[1]
    hi = jnp.broadcast_to(h[:, :, None, :], h.shape[:2] + (n, h.shape[-1]))
    hj = jnp.broadcast_to(h[:, None, :, :], hi.shape)
    return jnp.concatenate([hi, hj, edge_attr], axis=-1)


class GCL(nn.Module):
    """Invariant message passing: h_i += MLP(h_i, sum_j m_ij / normalization_factor)."""

    hidden: int
    normalization_factor: float
    attention: bool

    @nn.compact
    def __call__(self, h, edge_attr, edge_mask, node_mask):
        m = nn.silu(nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(_edge_input(h, edge_attr)))))
        if self.attention:
            m = m * nn.sigmoid(nn.Dense(1)(m))
        agg = jnp.sum(m * edge_mask, axis=2) / self.normalization_factor
        out = nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(jnp.concatenate([h, agg], axis=-1))))
        return (h + out) * node_mask


class CoordinateUpdate(nn.Module):
    """Equivariant step: x_i += sum_j diff_ij · tanh(phi_ij) · coords_range / normalization_factor."""

    hidden: int
    normalization_factor: float
    coords_range: float
    tanh: bool

    @nn.compact
    def __call__(self, h, x, diff, edge_attr, edge_mask, node_mask):
        last = nn.Dense(1, use_bias=False, kernel_init=nn.initializers.variance_scaling(1e-6, "fan_avg", "uniform"))
        phi = last(nn.silu(nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(_edge_input(h, edge_attr))))))
        if self.tanh:
            phi = jnp.tanh(phi) * self.coords_range
        step = jnp.sum(diff * phi * edge_mask, axis=2) / self.normalization_factor
        return (x + step) * node_mask


class EGNN(nn.Module):
    """``(h, x, mask) -> (h', x')``: h (B, n, F) invariant features, x (B, n, d) positions, mask (B, n).

    Returns h' (B, n, out_features) invariant and x' (B, n, d) equivariant, both zero on padding.
    Defaults follow Hoogeboom et al.'s QM9 model (9 blocks of width 256, one invariant sub-layer each,
    attention, tanh-bounded updates with coords_range 15 in every block, norm_constant 1, sum
    aggregation divided by 1, raw squared distances as edge features).

    Attributes:
        out_features: F' of h'.
        hidden: width of every MLP.
        num_blocks: equivariant blocks (each: ``sublayers`` invariant layers, then a coordinate update).
        sublayers: invariant message-passing layers per block.
        attention: gate each message by a sigmoid of itself.
        tanh: bound the coordinate step by ``tanh(phi) · coords_range``; else unbounded ``phi``.
        coords_range: the bound of a block's coordinate step per message.
        norm_constant: added to |x_i - x_j| when normalising differences.
        normalization_factor: sums over neighbours are divided by it.
        sin_embedding: edge features are ``sin_embedding`` of the current and input squared distances
            (2 × 12 channels) instead of the squared distances themselves (2 channels).
    """

    out_features: int
    hidden: int = 256
    num_blocks: int = 9
    sublayers: int = 1
    attention: bool = True
    tanh: bool = True
    coords_range: float = 15.0
    norm_constant: float = 1.0
    normalization_factor: float = 1.0
    sin_embedding: bool = False

    @nn.compact
    def __call__(self, h, x, mask):
        x, m = check_point_cloud(x, mask)
        h = jnp.asarray(h, x.dtype)
        if h.ndim != 3 or h.shape[:2] != x.shape[:2]:
            raise ValueError(f"h must have shape (B, n, F) with (B, n) = {x.shape[:2]}, got {h.shape}")
        node_mask = m[..., None]
        eye = jnp.eye(x.shape[1], dtype=x.dtype)
        edge_mask = (m[:, :, None] * m[:, None, :] * (1 - eye))[..., None]
        x = x * node_mask
        h = nn.Dense(self.hidden)(h * node_mask) * node_mask
        embed = sin_embedding if self.sin_embedding else (lambda r: r)
        radial0 = embed(_pairs(x, self.norm_constant)[0])
        for _ in range(self.num_blocks):
            radial, diff = _pairs(x, self.norm_constant)
            edge_attr = jnp.concatenate([embed(radial), radial0], axis=-1)
            for _ in range(self.sublayers):
                h = GCL(self.hidden, self.normalization_factor, self.attention)(h, edge_attr, edge_mask, node_mask)
            x = CoordinateUpdate(self.hidden, self.normalization_factor, self.coords_range, self.tanh)(
                h, x, diff, edge_attr, edge_mask, node_mask)
        return nn.Dense(self.out_features)(h) * node_mask, x


class EGNNDynamics(nn.Module):
    """The network of equivariant diffusion: ``(xh, c_noise, mask, context=None) -> out``, all (B, n, dims + F).

    ``xh`` holds positions (first ``dims`` channels) and invariant features (the rest); ``c_noise`` (B,)
    or () enters every atom as an extra invariant feature, and so does each channel of ``context``
    (B, C), e.g. normalised molecular properties (``jaxdiff.molecules3d.context``). ``out`` holds the
    position displacement ``x' - x`` of the ``EGNN``, projected onto the zero-centre-of-mass subspace
    (translation invariant, rotation equivariant), next to the new features h' (invariant); padding is
    zero.

    Attributes:
        dims: spatial dimension d.
        hidden: width of the EGNN.
        num_blocks: EGNN blocks.
        sublayers: invariant layers per block.
        attention: attention-gated messages.
        tanh: tanh-bounded coordinate steps.
        coords_range: bound of a coordinate step.
        norm_constant: normaliser of coordinate differences.
        normalization_factor: divisor of neighbour sums.
        sin_embedding: sinusoidal distance features (``EGNN.sin_embedding``).
    """

    dims: int = 3
    hidden: int = 256
    num_blocks: int = 9
    sublayers: int = 1
    attention: bool = True
    tanh: bool = True
    coords_range: float = 15.0
    norm_constant: float = 1.0
    normalization_factor: float = 1.0
    sin_embedding: bool = False

    @nn.compact
    def __call__(self, xh, c_noise, mask, context=None):
        xh = jnp.asarray(xh)
        if xh.ndim != 3 or xh.shape[-1] <= self.dims:
            raise ValueError(f"xh must have shape (B, n, dims + F) with dims={self.dims}, F >= 1, got {xh.shape}")
        c_noise = jnp.asarray(c_noise, xh.dtype)
        if c_noise.shape not in ((), xh.shape[:1]):
            raise ValueError(f"c_noise must have shape () or (B,) = ({xh.shape[0]},), got {c_noise.shape}")
        x, h = xh[..., :self.dims], xh[..., self.dims:]
        node_inputs = [h, jnp.broadcast_to(jnp.reshape(c_noise, (-1, 1, 1)), h.shape[:2] + (1,))]
        if context is not None:
            context = jnp.asarray(context, xh.dtype)
            if context.ndim != 2 or context.shape[0] != xh.shape[0]:
                raise ValueError(f"context must have shape (B, C) with B = {xh.shape[0]}, got {context.shape}")
            node_inputs.append(jnp.broadcast_to(context[:, None, :], h.shape[:2] + context.shape[1:]))
        egnn = EGNN(h.shape[-1], self.hidden, self.num_blocks, self.sublayers, self.attention, self.tanh,
                    self.coords_range, self.norm_constant, self.normalization_factor, self.sin_embedding)
        h_out, x_out = egnn(jnp.concatenate(node_inputs, axis=-1), x, mask)
        return jnp.concatenate([remove_mean(x_out - x, mask), h_out], axis=-1)
