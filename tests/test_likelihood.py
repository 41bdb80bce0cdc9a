"""Probability-flow likelihood against the closed form for Gaussian data with the exact denoiser."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import likelihood

pytestmark = pytest.mark.usefixtures("x64")

MU = np.array([0.3, -0.5, 0.1, 0.8])
VAR = np.array([0.25, 0.5, 0.1, 1.0])  # anisotropic Gaussian data N(MU, diag(VAR))
SIGMA_MIN, SIGMA_MAX = 1e-3, 1e4  # σmax large: the N(0, σmax²) prior ignores the data, an O(|y|/σmax) bias


def denoiser(x, sigma):
    s2 = sigma.reshape((-1,) + (1,) * (x.ndim - 1)) ** 2
    return MU + VAR / (VAR + s2) * (x - MU)


def analytic_logp(x):
    v = VAR + SIGMA_MIN**2
    return -0.5 * np.sum(np.log(2 * np.pi * v) + (x - MU) ** 2 / v, axis=-1)


@pytest.fixture(scope="module")
def x():
    return MU + np.sqrt(VAR) * np.random.default_rng(0).standard_normal((6, 4))


def test_exact_divergence_matches_closed_form(x):
    logp, info = likelihood.log_likelihood(denoiser, jnp.asarray(x), sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                                           divergence="exact", rtol=1e-8, atol=1e-8)
    bpd_err = np.abs(np.asarray(logp) - analytic_logp(x)) / (4 * math.log(2))
    assert bpd_err.max() < 1e-3, bpd_err
    assert np.all(np.asarray(info["nfe"]) > 0)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(x, probe):
    keys = jax.random.split(jax.random.key(0), 64)
    xs = jnp.repeat(jnp.asarray(x[:1]), 64, axis=0)

    def one(k):
        return likelihood.log_likelihood(denoiser, xs[:1], sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, key=k,
                                         probe=probe, rtol=1e-6, atol=1e-6)[0][0]

    est = np.asarray(jax.vmap(one)(keys))
    se = est.std() / np.sqrt(len(est))
    assert abs(est.mean() - analytic_logp(x[:1])[0]) < 4 * se + 1e-3
    if probe == "rademacher":  # diagonal Jacobian: Rademacher probes are exact
        np.testing.assert_allclose(est, analytic_logp(x[:1])[0], atol=3e-3)


def test_bits_per_dim_offset():
    # 8-bit data scaled to [-1, 1] in bins of 2/256: the offset is exactly 7 bits/dim.
    np.testing.assert_allclose(likelihood.bits_per_dim(0.0, 10, bin_width=2 / 256), 7.0, rtol=1e-12)
    np.testing.assert_allclose(likelihood.bits_per_dim(-10 * math.log(2), 10), 1.0, rtol=1e-12)
    # A uniform density on the bins gives exactly log2(K) bits/dim.
    k, w = 256, 2 / 256
    logp_uniform = 10 * math.log(1 / (k * w))
    np.testing.assert_allclose(likelihood.bits_per_dim(logp_uniform, 10, bin_width=w), 8.0, rtol=1e-12)


def test_dequantize_stays_in_bin():
    x = jnp.zeros((1000,))
    y = likelihood.dequantize(jax.random.key(0), x, 0.25)
    assert float(y.min()) >= 0.0 and float(y.max()) < 0.25


@pytest.mark.parametrize("kwargs,match", [(dict(divergence="trace"), "divergence"), (dict(probe="sphere"), "probe"),
                                          (dict(sigma_min=0.0), "sigma_min"), (dict(key=None), "key")])
def test_bad_arguments(x, kwargs, match):
    args = dict(key=jax.random.key(0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        likelihood.log_likelihood(denoiser, jnp.asarray(x), **args)
