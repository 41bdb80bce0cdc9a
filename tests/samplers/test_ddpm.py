"""DDPM / DDIM / Analytic-DPM on Gaussian data y ~ N(M, S² I) with the exact denoiser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules

M, S = 0.3, 0.7


def gaussian_denoiser(x, sigma):
    sigma = jnp.reshape(sigma, (-1,) + (1,) * (x.ndim - 1))
    return M + S**2 / (S**2 + sigma**2) * (x - M)


@pytest.fixture(scope="module")
def abar():
    return schedules.linear_beta(1000)[1]


def prior(sigmas, key, shape):
    """Exact marginal at sigmas[0] in the EDM variable: N(M, S² + σ²)."""
    return M + jnp.sqrt(S**2 + sigmas[0] ** 2) * jax.random.normal(key, shape)


def test_ddim_eta0_is_deterministic_euler(abar):
    sig = samplers.vp_sigmas(abar, jnp.arange(999, -1, -100))
    x = prior(sig, jax.random.key(0), (16, 3))
    out = samplers.ddim(gaussian_denoiser, x, sig)
    np.testing.assert_array_equal(out, samplers.ddim(gaussian_denoiser, x, sig, key=jax.random.key(1)))
    ref = samplers.euler(gaussian_denoiser, x, sig)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_ddim_eta1_equals_ddpm(abar):
    sig = samplers.vp_sigmas(abar, jnp.arange(999, -1, -1))
    key = jax.random.key(2)
    x = prior(sig, jax.random.key(3), (10000, 2))
    run = jax.jit(lambda x: (samplers.ddim(gaussian_denoiser, x, sig, eta=1.0, key=key),
                             samplers.ddpm(gaussian_denoiser, x, sig, key=key)))
    a, b = run(x)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # And with all 1000 steps the distribution is right: mean M, variance S² (SE of var ≈ 1 %).
    np.testing.assert_allclose(b.mean(), M, atol=0.01)
    np.testing.assert_allclose(b.var(), S**2, rtol=0.04)


def test_analytic_dpm_improves_on_fixed_variances(abar):
    ts = jnp.arange(999, -1, -100)  # 10 steps: fixed variances are visibly wrong here
    sig = samplers.vp_sigmas(abar, ts)
    data = M + S * jax.random.normal(jax.random.key(4), (2048, 4))
    v, gamma = samplers.analytic_dpm_variances(gaussian_denoiser, data, sig, key=jax.random.key(5),
                                               num_mc=2, return_gamma=True)
    sig2 = (1 - abar[ts]) / abar[ts]
    # ε̂ = σ (x_u - M)/(S²+σ²) with x_u = x_t/√ᾱ ~ N(M, S²+σ²), so Γ = σ²/(S²+σ²).
    np.testing.assert_allclose(gamma, sig2 / (S**2 + sig2), rtol=0.03)
    # For Gaussian data the optimal variance is the true reverse variance, so even 10 steps are exact.
    x = prior(sig, jax.random.key(6), (100000, 1))
    key = jax.random.key(7)

    def err(var):
        out = jax.jit(lambda x: samplers.ddpm(gaussian_denoiser, x, sig, key=key, variance=var))(x)
        return abs(float(out.var()) / S**2 - 1)

    err = {name: err(var)
           for name, var in [("small", "fixed_small"), ("large", "fixed_large"), ("analytic", v)]}
    # Measured: small 0.496, large 0.042, analytic 0.007 (sampling SE ≈ 0.005).
    assert err["analytic"] < 0.02, err
    assert err["analytic"] < 0.5 * min(err["small"], err["large"]), err


@pytest.mark.parametrize(
    "timesteps,match",
    [
        (jnp.array([0, 10]), "strictly decreasing"),
        (jnp.array([1000, 10]), "timesteps must lie in"),
        (jnp.array([10.0, 1.0]), "integer"),
    ],
)
def test_bad_schedule(abar, timesteps, match):
    with pytest.raises(ValueError, match=match):
        samplers.vp_sigmas(abar, timesteps)


@pytest.mark.parametrize("kwargs,match", [(dict(eta=-0.5), "eta must be >= 0"), (dict(eta=0.5), "key is required")])
def test_bad_input(abar, kwargs, match):
    with pytest.raises(ValueError, match=match):
        samplers.ddim(gaussian_denoiser, jnp.zeros((2, 3)), samplers.vp_sigmas(abar, jnp.array([500, 0])), **kwargs)


def test_bad_variance(abar):
    sig = samplers.vp_sigmas(abar, jnp.array([500, 0]))
    with pytest.raises(ValueError, match="variance array must have shape"):
        samplers.ddpm(gaussian_denoiser, jnp.zeros((2, 3)), sig, key=jax.random.key(0), variance=jnp.ones(3))
    with pytest.raises(ValueError, match="variance must be"):
        samplers.ddpm(gaussian_denoiser, jnp.zeros((2, 3)), sig, key=jax.random.key(0), variance="small")
