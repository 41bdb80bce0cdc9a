"""The zero-centre-of-mass subspace of padded point clouds (Hoogeboom et al., 2022, section 3).

A point cloud is ``x`` (B, n, d) with a mask (B, n) of its real points; it lies in the subspace when
the mean of its real points is zero and its padding is zero. A standard Gaussian restricted to that
subspace has (n_real - 1) · d degrees of freedom; its samples are projections of i.i.d. normal noise.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxdiff._arrays import concrete


def check_point_cloud(x, mask, name: str = "x") -> tuple[jax.Array, jax.Array]:
    """Validates ``x`` (B, n, d) against ``mask`` (B, n) (every row must select a point); returns
    (``x``, ``mask`` as x's float dtype)."""
    x, mask = jnp.asarray(x), jnp.asarray(mask)
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (B, n, d), got {x.shape}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask must have shape (B, n) = {x.shape[:2]}, got {mask.shape}")
    values = concrete(mask)
    if values is not None and not values.astype(bool).any(axis=1).all():
        raise ValueError("mask must select at least one point in every point cloud; a row is empty")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x, mask.astype(x.dtype)


def remove_mean(x, mask) -> jax.Array:
    """``x`` (B, n, d) minus the mean of its real points, padding set to zero: the projection onto the
    zero-centre-of-mass subspace (orthogonal for the Euclidean inner product over the real points).

    Args:
        x: point clouds (B, n, d); padding may hold anything finite.
        mask: (B, n) bool or 0/1, the real points; every row selects at least one.
    """
    x, m = check_point_cloud(x, mask)
    m = m[..., None]
    mean = jnp.sum(x * m, axis=1, keepdims=True) / jnp.sum(m, axis=1, keepdims=True)
    return (x - mean) * m


def degrees_of_freedom(mask, dims: int = 3) -> jax.Array:
    """(B,) float32: (n_real - 1) · ``dims``, the dimension of the zero-centre-of-mass subspace.

    Args:
        mask: (B, n) bool or 0/1, the real points.
        dims: the spatial dimension d.
    """
    mask = jnp.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (B, n), got {mask.shape}")
    return (jnp.sum(mask.astype(jnp.float32), axis=1) - 1) * dims


def com_free_normal(key, mask, dims: int = 3, dtype=jnp.float32) -> jax.Array:
    """(B, n, dims) standard Gaussian noise on the zero-centre-of-mass subspace (padding zero): the
    projection of i.i.d. N(0, 1) noise, so its covariance is the projection itself.

    Args:
        key: a PRNG key.
        mask: (B, n) bool or 0/1, the real points; every row selects at least one.
        dims: the spatial dimension d.
        dtype: the float dtype of the sample.
    """
    mask = jnp.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (B, n), got {mask.shape}")
    return remove_mean(jax.random.normal(key, mask.shape + (dims,), dtype), mask)


def com_free_log_prob(x, mask, sigma=1.0) -> jax.Array:
    """(B,) log-density of N(0, sigma² I) on the zero-centre-of-mass subspace at ``x`` (B, n, d):
    ``-|x|² / (2 sigma²) - dof / 2 · log(2 pi sigma²)`` with dof = (n_real - 1) · d.

    Args:
        x: point clouds in the subspace (see ``remove_mean``); padding is ignored.
        mask: (B, n) bool or 0/1, the real points; every row selects at least one.
        sigma: () or (B,) positive standard deviation.
    """
    x, m = check_point_cloud(x, mask)
    sigma = jnp.asarray(sigma, x.dtype)
    if sigma.shape not in ((), (x.shape[0],)):
        raise ValueError(f"sigma must have shape () or (B,) = ({x.shape[0]},), got {sigma.shape}")
    values = concrete(sigma)
    if values is not None and not (values > 0).all():
        raise ValueError(f"sigma must be positive, got {values}")
    r2 = jnp.sum(jnp.square(x) * m[..., None], axis=(1, 2))
    dof = (jnp.sum(m, axis=1) - 1) * x.shape[-1]
    return -0.5 * r2 / sigma**2 - 0.5 * dof * (math.log(2 * math.pi) + 2 * jnp.log(sigma))
