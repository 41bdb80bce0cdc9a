"""The zero-centre-of-mass subspace: exact projection, noise, prior density; feature scaling."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.molecules3d import com, features

MASK = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], bool)


def projection(n_real: int, n: int, d: int = 3) -> np.ndarray:
    """(n d, n d) orthogonal projection onto zero-mean point clouds of n_real real points among n slots."""
    p = np.zeros((n, n))
    p[:n_real, :n_real] = np.eye(n_real) - 1.0 / n_real
    return np.kron(p, np.eye(d))


def test_remove_mean_is_the_projection(x64):
    x = jax.random.normal(jax.random.key(0), MASK.shape + (3,), jnp.float64) * 5 + 3
    y = np.asarray(com.remove_mean(x, MASK))
    assert np.all(y[~MASK] == 0)
    assert np.abs((y * MASK[..., None]).sum(axis=1)).max() < 1e-13
    for b, m in enumerate(MASK):
        expected = projection(m.sum(), m.size) @ np.asarray(x[b]).reshape(-1)
        np.testing.assert_allclose(y[b].reshape(-1), expected, atol=1e-13)
    np.testing.assert_allclose(com.remove_mean(y, MASK), y, atol=1e-14)


def test_com_free_normal_is_projected_noise_with_projection_covariance():
    key = jax.random.key(1)
    z = com.com_free_normal(key, MASK)
    np.testing.assert_array_equal(z, com.remove_mean(jax.random.normal(key, MASK.shape + (3,)), MASK))
    assert np.abs(np.asarray(z).sum(axis=1)).max() < 1e-5
    samples = 20000
    mask = np.repeat(MASK[:1], samples, axis=0)
    flat = np.asarray(com.com_free_normal(jax.random.key(2), mask), np.float64).reshape(samples, -1)
    cov = flat.T @ flat / samples
    # each entry's standard error is at most sqrt(2 / samples) ~ 0.01
    np.testing.assert_allclose(cov, projection(4, 6), atol=0.05)


def test_degrees_of_freedom():
    np.testing.assert_array_equal(com.degrees_of_freedom(MASK), [9, 15, 3])
    np.testing.assert_array_equal(com.degrees_of_freedom(MASK, dims=2), [6, 10, 2])


def test_log_prob_is_the_gaussian_on_the_subspace(x64):
    x = com.remove_mean(jax.random.normal(jax.random.key(3), MASK.shape + (3,), jnp.float64), MASK)
    sigma = jnp.array([0.5, 1.0, 2.0])
    got = np.asarray(com.com_free_log_prob(x, MASK, sigma))
    for b, m in enumerate(MASK):
        # coordinates in an orthonormal basis of the subspace: an isotropic Gaussian of dimension dof
        w, v = np.linalg.eigh(projection(m.sum(), m.size))
        basis = v[:, w > 0.5]
        dof = basis.shape[1]
        assert dof == (m.sum() - 1) * 3
        coords = basis.T @ np.asarray(x[b]).reshape(-1)
        s = float(sigma[b])
        expected = -0.5 * coords @ coords / s**2 - 0.5 * dof * math.log(2 * math.pi * s**2)
        assert abs(got[b] - expected) < 1e-10


def test_feature_scaling_round_trip():
    one_hot = np.eye(5, dtype=np.float32)[[0, 1, 3]]
    charges = np.array([1, 6, 8])
    h = features.scale_features(one_hot, charges)
    np.testing.assert_allclose(h[:, :5], one_hot * 0.25)
    np.testing.assert_allclose(h[:, 5], [0.1, 0.6, 0.8], rtol=1e-6)
    back_one_hot, back_charges = features.unscale_features(h)
    np.testing.assert_allclose(back_one_hot, one_hot, rtol=1e-6)
    np.testing.assert_allclose(back_charges, charges, rtol=1e-6)


def test_bad_input():
    x = np.zeros((2, 3, 3))
    with pytest.raises(ValueError, match="mask must select"):
        com.remove_mean(x, np.array([[1, 1, 0], [0, 0, 0]], bool))
    with pytest.raises(ValueError, match="mask must select"):
        com.com_free_normal(jax.random.key(0), np.zeros((1, 4), bool))
    with pytest.raises(ValueError, match=r"mask must have shape \(B, n\)"):
        com.remove_mean(x, np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"x must have shape \(B, n, d\)"):
        com.remove_mean(np.zeros((3, 3)), np.ones((3,), bool))
    with pytest.raises(ValueError, match="sigma must be positive"):
        com.com_free_log_prob(x, np.ones((2, 3), bool), sigma=0.0)
    with pytest.raises(ValueError, match="charges must have shape"):
        features.scale_features(np.zeros((4, 5)), np.zeros(3))
