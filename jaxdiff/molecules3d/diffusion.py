"""Equivariant EDM (Hoogeboom et al., 2022, in the EDM parameterisation of Karras et al., 2022).

The diffused state is ``xh`` (B, n, d + F): positions on the zero-centre-of-mass subspace (first d
channels) next to continuous atom features (``features.scale_features``), padding zero, with the mask
(B, n) passed to the network as ``mask=``. Noise is CoM-free on the positions and i.i.d. on the
features of real atoms, so ``y + sigma * n`` stays in the subspace; the ``EGNNDynamics`` network keeps
its output there, and so do ``jaxdiff.precond.denoiser`` and any sampler whose updates are linear
combinations of the state and denoiser outputs (e.g. Heun, DPM-Solver++), started from ``prior``;
stochastic samplers stay there given ``noise=SubspaceNoise(mask)``.
The loss is the house's EDM loss with the squared error summed and divided by the free dimensions
(n_real - 1) · d + n_real · F of each molecule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff import precond as precond_lib
from jaxdiff._arrays import bcast, concrete
from jaxdiff.molecules3d.com import check_point_cloud, com_free_normal, remove_mean


def pack(positions, features, mask) -> jax.Array:
    """(B, n, d + F): ``positions`` (B, n, d) projected onto the subspace next to ``features`` (B, n, F),
    padding zero.

    Args:
        positions: (B, n, d) coordinates.
        features: (B, n, F) continuous atom features.
        mask: (B, n) the real atoms; every row selects at least one.
    """
    x = remove_mean(positions, mask)
    features, m = check_point_cloud(features, mask, "features")
    return jnp.concatenate([x, features.astype(x.dtype) * m[..., None]], axis=-1)


def free_dimensions(mask, num_features: int, dims: int = 3) -> jax.Array:
    """(B,) float32: (n_real - 1) · dims + n_real · num_features, the dimension of a molecule's state."""
    n = jnp.sum(jnp.asarray(mask).astype(jnp.float32), axis=1)
    return (n - 1) * dims + n * num_features


def noise(key, mask, num_features: int, dims: int = 3, dtype=jnp.float32) -> jax.Array:
    """(B, n, dims + num_features) standard noise: CoM-free on positions, i.i.d. on real atoms' features."""
    k_x, k_h = jax.random.split(key)
    mask = jnp.asarray(mask)
    h = jax.random.normal(k_h, mask.shape + (num_features,), dtype) * mask[..., None].astype(dtype)
    return jnp.concatenate([com_free_normal(k_x, mask, dims, dtype), h], axis=-1)


def prior(key, mask, num_features: int, sigma_max: float, dims: int = 3, dtype=jnp.float32) -> jax.Array:
    """``sigma_max`` · ``noise``: the starting state of a sampler."""
    return sigma_max * noise(key, mask, num_features, dims, dtype)


def denoising_loss(net, precond, sigma_noise, *, dims: int = 3):
    """``loss_fn(params, batch, key) -> (loss, terms)`` for ``jaxdiff.train``.

    ``batch``: ``xh`` (B, n, dims + F) of ``pack``, ``mask`` (B, n) and, for a conditional network,
    ``context`` (B, C), passed to it as ``context=``. The loss is
    E_sigma,n weight(sigma) · |D(y + sigma n; sigma) - y|² / free_dimensions with n of ``noise``;
    terms ``loss`` and ``mse`` (unweighted).

    Args:
        net: ``net(params, xh, c_noise, *, key, mask[, context])``, e.g. ``jaxdiff.nn.as_net(EGNNDynamics(...))``.
        precond: a preconditioning of ``jaxdiff.precond`` (e.g. ``EDMPrecond``).
        sigma_noise: the training noise levels, e.g. ``jaxdiff.losses.EDMNoise``.
        dims: the spatial dimension d.
    """

    def loss_fn(params, batch, key):
        y, mask = batch["xh"], batch["mask"]
        k_sigma, k_noise, k_drop = jax.random.split(key, 3)
        sigma = sigma_noise.sample(k_sigma, y.shape[:1])
        n = noise(k_noise, mask, y.shape[-1] - dims, dims, y.dtype)
        D = precond_lib.denoiser(net, params, precond, key=k_drop)
        cond = {"context": batch["context"]} if "context" in batch else {}
        err = jnp.square(D(y + bcast(sigma, y) * n, sigma, mask=mask, **cond) - y) * mask[..., None]
        per_example = jnp.sum(err, axis=(1, 2)) / free_dimensions(mask, y.shape[-1] - dims, dims)
        loss = jnp.mean(sigma_noise.weight(sigma) * per_example)
        return loss, {"loss": loss, "mse": jnp.mean(per_example)}

    return loss_fn


class SubspaceNoise:
    """A noise source of ``jaxdiff.samplers`` (``noise=``) for the state of ``pack``: the draws of ``base``
    projected onto the zero-centre-of-mass subspace on the first ``dims`` channels and zeroed on the
    padding of the features. The projection of a standard normal is the standard normal of the
    subspace, so stochastic samplers (EDM churn, ancestral, SDE) keep the state there.

    Args:
        mask: (B, n) the real atoms of the state being sampled; every row selects at least one.
        dims: the spatial dimension d.
        base: the noise source to project (``jaxdiff.samplers.noise``); None: i.i.d. Gaussian draws.
    """

    def __init__(self, mask, dims: int = 3, base=None):
        mask = jnp.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must have shape (B, n), got {mask.shape}")
        check_point_cloud(jnp.zeros(mask.shape + (dims,)), mask)
        self.mask, self.dims, self.base = mask, dims, base

    def __call__(self, key, step, level, level_next, shape, dtype):
        if tuple(shape[:2]) != self.mask.shape or len(shape) != 3 or shape[2] <= self.dims:
            raise ValueError(f"shape must be (B, n, dims + F) with (B, n) = {self.mask.shape} and dims="
                             f"{self.dims}, got {tuple(shape)}")
        if self.base is None:
            if key is None:
                raise ValueError("key is required for SubspaceNoise without base (pass key=jax.random.key(seed))")
            z = jax.random.normal(jax.random.fold_in(key, step), shape, dtype)
        else:
            z = self.base(key, step, level, level_next, shape, dtype)
        m = self.mask.astype(z.dtype)[..., None]
        return jnp.concatenate([remove_mean(z[..., :self.dims], self.mask), z[..., self.dims:] * m], axis=-1)


def sample_masks(key, distribution, num: int) -> jax.Array:
    """bool (num, n_max): the first n slots of each row real, n drawn from ``distribution``.

    Args:
        key: a PRNG key.
        distribution: (n_max + 1,) probabilities of each atom count 0..n_max (zero at 0), e.g.
            ``jaxdiff.data.qm9_3d.node_count_distribution``.
        num: the number of masks.
    """
    p = jnp.asarray(distribution, jnp.float32)
    values = concrete(p)
    if p.ndim != 1 or p.shape[0] < 2:
        raise ValueError(f"distribution must have shape (n_max + 1,) with n_max >= 1, got {p.shape}")
    if values is not None and (values[0] != 0 or (values < 0).any() or abs(values.sum() - 1) > 1e-4):
        raise ValueError("distribution must be probabilities over 0..n_max summing to 1, zero at 0")
    n = jax.random.categorical(key, jnp.log(p), shape=(num,))
    return jnp.arange(p.shape[0] - 1)[None, :] < n[:, None]


def decode(xh, mask, num_types: int, dims: int = 3) -> tuple[jax.Array, jax.Array]:
    """(positions (B, n, dims), atoms int32 (B, n)) of a sampled state: atom types are the argmax of the
    one-hot channels (``features.scale_features`` layout: ``num_types`` one-hot channels, then the
    charge), -1 on padding.

    Args:
        xh: (B, n, dims + num_types + 1) states.
        mask: (B, n) the real atoms.
        num_types: K, the number of atom types.
        dims: the spatial dimension d.
    """
    xh, m = check_point_cloud(xh, mask, "xh")
    if xh.shape[-1] != dims + num_types + 1:
        raise ValueError(f"xh must have dims + num_types + 1 = {dims + num_types + 1} channels, got {xh.shape[-1]}")
    atoms = jnp.argmax(xh[..., dims:dims + num_types], axis=-1).astype(jnp.int32)
    return xh[..., :dims] * m[..., None], jnp.where(m > 0, atoms, -1)
