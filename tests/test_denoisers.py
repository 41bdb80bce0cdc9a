"""Closed-form denoisers: the ideal denoiser of a finite set and the Gaussian one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.denoisers import gaussian_denoiser, ideal_denoiser


@pytest.fixture(scope="module")
def data():
    return np.asarray(jax.random.normal(jax.random.key(0), (10, 2, 3)), np.float64)


def brute_force(data, x, sigma):
    y = data.reshape(len(data), -1)
    xf = x.reshape(len(x), -1)
    logw = -((xf[:, None] - y[None]) ** 2).sum(-1) / (2 * np.asarray(sigma).reshape(-1, 1) ** 2)
    w = np.exp(logw - logw.max(1, keepdims=True))
    return ((w / w.sum(1, keepdims=True)) @ y).reshape(x.shape)


def test_ideal_matches_definition(x64, data):
    x = np.asarray(jax.random.normal(jax.random.key(1), (5, 2, 3)), np.float64) * 2
    d = ideal_denoiser(data)
    np.testing.assert_allclose(d(jnp.asarray(x), 0.7), brute_force(data, x, 0.7), rtol=1e-12)
    sig = np.array([0.1, 0.5, 1.0, 3.0, 30.0])
    np.testing.assert_allclose(d(jnp.asarray(x), jnp.asarray(sig)), brute_force(data, x, sig), rtol=1e-10)
    chunked = ideal_denoiser(data, chunk_size=2)
    x, sig = jnp.asarray(x), jnp.asarray(sig)
    np.testing.assert_allclose(chunked(x, sig), d(x, sig), rtol=1e-12)


def test_ideal_limits(data):
    d = ideal_denoiser(data)
    x = jnp.asarray(data[[3, 7]] + 1e-3)
    np.testing.assert_allclose(d(x, 1e-4), data[[3, 7]], atol=1e-6)  # snaps to the nearest point, no NaN
    np.testing.assert_allclose(d(x, 1e4), np.broadcast_to(data.mean(0), x.shape), atol=1e-4)
    assert d(jnp.zeros((2, 2, 3)), 1e-30).shape == (2, 2, 3)
    assert bool(jnp.all(jnp.isfinite(d(100 * jnp.ones((2, 2, 3)), 1e-3))))


def test_ideal_bad_input(data):
    d = ideal_denoiser(data)
    with pytest.raises(ValueError, match="x must be"):
        d(jnp.zeros((2, 6)), 1.0)
    with pytest.raises(ValueError, match="sigma must be"):
        d(jnp.zeros((2, 2, 3)), jnp.ones((3,)))
    with pytest.raises(ValueError, match="chunk_size"):
        ideal_denoiser(data, chunk_size=0)


def test_gaussian_denoiser(x64):
    mean = jnp.array([0.5, -1.0, 2.0])
    a = jax.random.normal(jax.random.key(2), (3, 3), jnp.float64)
    cov = a @ a.T + 0.1 * jnp.eye(3)
    x = jax.random.normal(jax.random.key(3), (4, 3), jnp.float64) * 3
    sig = jnp.array([0.1, 1.0, 2.0, 10.0])
    out = gaussian_denoiser(mean, cov=cov)(x, sig)
    for b in range(4):
        expect = mean + cov @ np.linalg.solve(cov + sig[b] ** 2 * np.eye(3), x[b] - mean)
        np.testing.assert_allclose(out[b], expect, rtol=1e-10)
    var = jnp.array([0.3, 1.0, 2.0])
    np.testing.assert_allclose(
        gaussian_denoiser(mean, var=var)(x, 0.8), gaussian_denoiser(mean, cov=jnp.diag(var))(x, 0.8), rtol=1e-10
    )


def test_gaussian_is_ideal_posterior_mean(x64):
    """Against the ideal denoiser of many samples from the same Gaussian (Monte Carlo)."""
    mean, var = jnp.array([1.0, -1.0]), jnp.array([0.5, 2.0])
    y = mean + jnp.sqrt(var) * jax.random.normal(jax.random.key(4), (200000, 2), jnp.float64)
    x = jnp.array([[0.0, 0.0], [2.0, -3.0]])
    np.testing.assert_allclose(ideal_denoiser(y)(x, 1.0), gaussian_denoiser(mean, var=var)(x, 1.0), atol=0.03)


def test_gaussian_bad_input():
    with pytest.raises(ValueError, match="exactly one"):
        gaussian_denoiser(jnp.zeros(3))
    with pytest.raises(ValueError, match="cov must have shape"):
        gaussian_denoiser(jnp.zeros(3), cov=jnp.eye(2))
    with pytest.raises(ValueError, match="var must broadcast"):
        gaussian_denoiser(jnp.zeros(3), var=jnp.ones(2))
    with pytest.raises(ValueError, match="x must be"):
        gaussian_denoiser(jnp.zeros(3), var=1.0)(jnp.zeros((2, 4)), 1.0)
