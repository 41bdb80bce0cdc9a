"""CFG, gradient guidance and inpainting against closed forms for Gaussian data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules

S = 0.7


def class_denoiser(x, sigma, label):
    """Data | label ~ N(mu(label), S² I), mu = 0.5 label (label -1 plays 'null': mu = 0)."""
    sigma = jnp.reshape(sigma, (-1,) + (1,) * (x.ndim - 1))
    mu = jnp.where(label >= 0, 0.5 * label, 0.0)[:, None]
    return mu + S**2 / (S**2 + sigma**2) * (x - mu)


@pytest.fixture(scope="module")
def xs():
    return 2.0 * jax.random.normal(jax.random.key(0), (6, 3)), jnp.arange(6)


@pytest.mark.parametrize("sigma", [jnp.float32(1.3), jnp.linspace(0.1, 3.0, 6)], ids=["scalar", "per-example"])
def test_cfg(xs, sigma):
    x, label = xs
    d_c = class_denoiser(x, sigma, label)
    d_u = class_denoiser(x, sigma, jnp.full_like(label, -1))
    calls = []

    def counting(x, sigma, label):
        calls.append(x.shape)
        return class_denoiser(x, sigma, label)

    for scale, want in [(0.0, d_u), (1.0, d_c), (3.0, d_u + 3.0 * (d_c - d_u))]:
        guided = samplers.cfg_denoiser(counting, scale, {"label": -1})
        np.testing.assert_allclose(guided(x, sigma, label=label), want, rtol=1e-5, atol=1e-6)
    assert calls == [(12, 3)] * 3  # one batched call of 2B per evaluation
    with pytest.raises(ValueError, match="null_cond must have the keys"):
        samplers.cfg_denoiser(class_denoiser, 1.0, {})(x, sigma, label=label)


def test_gradient_guidance_gives_posterior_denoiser(xs):
    """y ~ N(m, S²), c = y + tau·e: D + σ²∇log p(c|x) is the denoiser of N(m', S'²)."""
    m, tau = 0.3, 0.4
    c = jnp.array([1.0, -0.5, 2.0])

    def prior_denoiser(x, sigma):
        return m + S**2 / (S**2 + sigma**2) * (x - m)

    def log_prob(x, sigma):
        k = S**2 / (S**2 + sigma**2)  # c | x ~ N(E[y|x], Var(y|x) + tau²)
        var = S**2 * sigma**2 / (S**2 + sigma**2) + tau**2
        return -0.5 * jnp.sum((c - m - k * (x - m)) ** 2, axis=-1) / var

    s2_post = S**2 * tau**2 / (S**2 + tau**2)
    m_post = m + S**2 / (S**2 + tau**2) * (c - m)
    guided = jax.jit(samplers.gradient_guidance(prior_denoiser, log_prob, 1.0))
    x, _ = xs
    for sigma in [0.05, 0.5, 5.0]:
        want = m_post + s2_post / (s2_post + sigma**2) * (x - m_post)
        np.testing.assert_allclose(guided(x, jnp.float32(sigma)), want, rtol=1e-5, atol=1e-5)


def correlated_denoiser(rho, m):
    """Data ~ N(m, [[1, rho], [rho, 1]]): D(x; σ) = m + Σ(Σ + σ²)⁻¹(x - m)."""
    cov = jnp.array([[1.0, rho], [rho, 1.0]])

    def denoiser(x, sigma):
        p = jnp.linalg.inv(cov + sigma**2 * jnp.eye(2))
        return m + (x - m) @ (cov @ p).T

    return denoiser


def run_inpaint(rho, n_resample, n=50):
    m = jnp.array([0.2, -0.1])
    known, mask = jnp.array([0.0, 1.0]), jnp.array([False, True])
    x = 80.0 * jax.random.normal(jax.random.key(0), (20000, 2))
    fn = jax.jit(lambda x: samplers.inpaint(correlated_denoiser(rho, m), x, schedules.karras(n, 0.002, 80.0),
                                            known=known, mask=mask, key=jax.random.key(1), n_resample=n_resample))
    out = fn(x)
    np.testing.assert_array_equal(out[:, 1], 1.0)  # the known region is exactly `known`
    return out[:, 0], m[0] + rho * (1.0 - m[1]), 1.0 - rho**2  # unknown part, conditional mean, var


def test_inpaint_independent_is_exact():
    # The ancestral step's own variance deficit is O(1/n): 19 % at n=50, 2 % at n=500.
    u, mean, var = run_inpaint(0.0, 0, n=500)
    np.testing.assert_allclose(u.mean(), mean, atol=0.03)
    np.testing.assert_allclose(u.var(), var, rtol=0.04)


def test_inpaint_resampling_reduces_replacement_bias():
    # rho = 0.8: conditional mean 1.08; replacement alone gives 0.72, 10 resamplings 1.04.
    plain, mean, _ = run_inpaint(0.8, 0)
    harmonised, _, _ = run_inpaint(0.8, 10)
    assert abs(float(harmonised.mean()) - mean) < 0.2 * abs(float(plain.mean()) - mean)


def test_inpaint_bad_input():
    x = jnp.zeros((4, 2))
    sig = schedules.karras(4, 0.002, 80.0)
    den = correlated_denoiser(0.0, jnp.zeros(2))
    with pytest.raises(ValueError, match="mask must broadcast"):
        samplers.inpaint(den, x, sig, known=jnp.zeros(2), mask=jnp.ones((3,), bool), key=jax.random.key(0))
    with pytest.raises(ValueError, match="known must broadcast"):
        samplers.inpaint(den, x, sig, known=jnp.zeros((5, 2)), mask=jnp.ones(2, bool), key=jax.random.key(0))
