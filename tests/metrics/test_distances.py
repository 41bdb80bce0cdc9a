from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.metrics import mmd, sliced_wasserstein

KEY = jax.random.PRNGKey(0)


def _normal(seed, n, d, shift=0.0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, d)) + shift


def test_swd_same_vs_shifted_distribution():
    x, y = _normal(1, 2000, 4), _normal(2, 2000, 4)
    assert sliced_wasserstein(x, y, KEY) < 0.15
    # E_theta (theta . s)^2 = |s|^2 / D = 1 for s = (1, 1, 1, 1).
    assert sliced_wasserstein(x, _normal(2, 2000, 4, 1.0), KEY) == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("m", [4000, 3000])
def test_swd_one_dimensional_gaussians_equal_the_shift(m):
    """W2(N(0, 1), N(1.5, 1)) = 1.5; m != n exercises quantile interpolation."""
    x, y = _normal(3, 4000, 1), _normal(4, m, 1, 1.5)
    assert sliced_wasserstein(x, y, KEY, num_projections=4) == pytest.approx(1.5, abs=0.05)


def test_swd_equal_sizes_is_sorted_matching_and_jits():
    x, y = _normal(5, 64, 1), _normal(6, 64, 1, 0.3)
    exact = np.sqrt(np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2))
    jitted = jax.jit(sliced_wasserstein, static_argnames="num_projections")(x, y, KEY, num_projections=8)
    assert float(jitted) == pytest.approx(float(exact), rel=1e-5)
    assert float(sliced_wasserstein(x, y, KEY, 8)) == pytest.approx(float(jitted), rel=1e-6)


def test_swd_shape_error_names_argument():
    with pytest.raises(ValueError, match="y"):
        sliced_wasserstein(jnp.zeros((5, 3)), jnp.zeros((5, 2)), KEY)
    with pytest.raises(ValueError, match="x"):
        sliced_wasserstein(jnp.zeros(5), jnp.zeros((5, 1)), KEY)


def test_mmd_matches_naive_unbiased_estimator():
    x, y = np.asarray(_normal(7, 6, 3)), np.asarray(_normal(8, 5, 3, 0.5))
    hs = (0.5, 2.0)

    def k(a, b):
        return sum(np.exp(-np.sum((a - b) ** 2) / (2 * h**2)) for h in hs)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(a, b) for a in x for b in y) / (n * m)
    assert float(jax.jit(mmd, static_argnames="bandwidths")(x, y, bandwidths=hs)) == pytest.approx(
        kxx + kyy - 2 * kxy, rel=1e-4, abs=1e-6
    )


def test_mmd_same_vs_shifted_distribution():
    x, y = _normal(9, 500, 4), _normal(10, 500, 4)
    same, shifted = float(mmd(x, y)), float(mmd(x, _normal(10, 500, 4, 0.5)))
    assert abs(same) < 0.01
    assert shifted > 0.1 and shifted > 20 * abs(same)


def test_mmd_unbiased_under_the_null():
    keys = jax.random.split(jax.random.PRNGKey(11), 400)

    def one(key):
        kx, ky = jax.random.split(key)
        return mmd(jax.random.normal(kx, (20, 2)), jax.random.normal(ky, (20, 2)))

    est = np.asarray(jax.jit(jax.vmap(one))(keys))
    stderr = est.std(ddof=1) / np.sqrt(len(est))
    assert abs(est.mean()) < 3 * stderr


def test_mmd_errors():
    with pytest.raises(ValueError, match="y"):
        mmd(jnp.zeros((5, 3)), jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        mmd(jnp.zeros((1, 3)), jnp.zeros((5, 3)))
