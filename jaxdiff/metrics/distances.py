"""Sample-based distribution distances in JAX: sliced Wasserstein-2 and RBF-MMD².

Both are pure, jittable functions of two point clouds; shape checks use static
shapes only, so they also run under ``jax.jit``. Their products ask for float32 on every
device (``Precision.HIGHEST``; see the [precision policy][precision-policy]).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

MEDIAN_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
_FLOAT32 = jax.lax.Precision.HIGHEST  # GPUs would round float32 products to TF32, TPUs to bfloat16


def _check_pair(x, y) -> None:
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, D), got {x.shape}")
    if y.ndim != 2 or y.shape[1] != x.shape[1]:
        raise ValueError(f"y must have shape (M, {x.shape[1]}) to match x, got {y.shape}")


def _quantiles(sorted_vals: jax.Array, levels: jax.Array) -> jax.Array:
    """Empirical quantiles of one sorted sample (n,) at ``levels`` (K,) -> (K,).

    Sample ``i`` sits at level ``(i + 0.5) / n``; levels in between are linearly
    interpolated, so equal sample sizes reduce to matching sorted values.
    """
    n = sorted_vals.shape[0]
    return jnp.interp(levels * n - 0.5, jnp.arange(n, dtype=levels.dtype), sorted_vals)


def sliced_wasserstein(x, y, key, num_projections: int = 128) -> jax.Array:
    """Sliced Wasserstein-2 distance ``(E_theta W2^2(theta.x, theta.y))^(1/2)``.

    Directions ``theta`` are uniform on the unit sphere; each 1-D W2² is the mean
    squared difference of quantiles at ``K = max(N, M)`` levels ``(k + 0.5) / K``
    (exact sorted matching when ``N == M``, quantile interpolation otherwise).
    In 1-D this is the plain W2, e.g. ``|m|`` between N(0, 1) and N(m, 1).

    Args:
        x: (N, D) samples. y: (M, D) samples. key: PRNG key for the directions.
        num_projections: number of random directions P.

    Returns:
        scalar float.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_pair(x, y)
    if num_projections < 1:
        raise ValueError(f"num_projections must be >= 1, got {num_projections}")
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    theta = jax.random.normal(key, (x.shape[1], num_projections), dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    px = jnp.sort(jnp.matmul(x.astype(dtype), theta, precision=_FLOAT32), axis=0)  # (N, P)
    py = jnp.sort(jnp.matmul(y.astype(dtype), theta, precision=_FLOAT32), axis=0)  # (M, P)
    k = max(x.shape[0], y.shape[0])
    levels = (jnp.arange(k, dtype=dtype) + 0.5) / k
    qx = jax.vmap(_quantiles, in_axes=(1, None), out_axes=1)(px, levels)  # (K, P)
    qy = jax.vmap(_quantiles, in_axes=(1, None), out_axes=1)(py, levels)
    return jnp.sqrt(jnp.mean((qx - qy) ** 2))


def _sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pairwise squared Euclidean distances (N, D), (M, D) -> (N, M), clipped at 0."""
    d = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * jnp.matmul(a, b.T, precision=_FLOAT32)
    return jnp.maximum(d, 0.0)


def mmd(x, y, bandwidths: Sequence[float] | None = None) -> jax.Array:
    """Unbiased MMD² with the kernel ``k(a, b) = sum_h exp(-||a - b||² / (2 h²))``.

    ``MMD²_u = mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j) - 2 mean k(x_i, y_j)``;
    its expectation is exactly 0 when x and y come from one distribution, so
    single estimates can be slightly negative.

    Args:
        x: (N, D) samples, N >= 2. y: (M, D) samples, M >= 2.
        bandwidths: kernel widths h. ``None``: the median pairwise distance of
            the pooled sample times ``MEDIAN_SCALES`` (treated as a constant,
            no gradient flows through it).

    Returns:
        scalar float.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"x and y need at least 2 samples each, got N={n}, M={m}")
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    dxx, dyy, dxy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
    if bandwidths is None:
        pooled = jnp.concatenate(
            [dxx[jnp.triu_indices(n, k=1)], dyy[jnp.triu_indices(m, k=1)], dxy.ravel()]
        )
        median = jax.lax.stop_gradient(jnp.sqrt(jnp.median(pooled)))
        h = median * jnp.asarray(MEDIAN_SCALES, dtype)
    else:
        h = jnp.asarray(bandwidths, dtype).reshape(-1)
        if h.shape[0] == 0:
            raise ValueError("bandwidths must be non-empty")

    def kernel(d2: jax.Array) -> jax.Array:
        return jnp.sum(jnp.exp(-d2[..., None] / (2.0 * h**2)), axis=-1)

    kxx, kyy = kernel(dxx), kernel(dyy)
    sxx = (kxx.sum() - jnp.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - jnp.trace(kyy)) / (m * (m - 1))
    return sxx + syy - 2.0 * kernel(dxy).mean()
