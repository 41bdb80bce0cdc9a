"""Forward processes against closed forms, Monte-Carlo simulation and Gaussian-data scores."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdiff.sde import EDMSDE, VESDE, SubVPSDE, VPSDE

SDES = [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()]
IDS = [type(s).__name__ for s in SDES]
parametrize_sde = pytest.mark.parametrize("sde", SDES, ids=IDS)


def gaussian_denoiser(v):
    """Exact denoiser of data N(0, v): E[y | y + sigma n = x] = v / (v + sigma^2) x."""

    def denoiser(x, sigma):
        assert sigma.shape == x.shape[:1]
        return (v / (v + sigma**2))[:, None] * x

    return denoiser


def marginal_var(sde, t, v):
    """Variance of x_t for data N(., v): s^2 v + std^2."""
    ms, std = sde.marginal(t)
    return ms**2 * v + std**2


@parametrize_sde
def test_sigma_t_round_trip(sde):
    sigmas = jnp.geomspace(sde.sigma_min, sde.sigma_max, 9)
    np.testing.assert_allclose(sde.sigma(sde.t_from_sigma(sigmas)), sigmas, rtol=2e-5)
    t = jnp.linspace(sde.eps, sde.T, 9)
    # VE: sigma(0) = sigma_min > 0, so t near 0 is resolved only to float32 rounding of sigma / sigma_min.
    np.testing.assert_allclose(sde.t_from_sigma(sde.sigma(t)), t, rtol=2e-5, atol=1e-7 * sde.T)
    ms, std = sde.marginal(t)
    np.testing.assert_allclose(sde.sigma(t), std / ms, rtol=1e-5)
    np.testing.assert_allclose(sde.scale(t), ms, rtol=1e-6)
    np.testing.assert_allclose(sde.sigma_max, sde.sigma(sde.T), rtol=1e-5)
    np.testing.assert_allclose(sde.sigma_min, sde.sigma(sde.eps), rtol=1e-3)


def test_closed_forms():
    t = jnp.asarray([0.1, 0.5, 1.0])
    a = 0.1 * t + 0.5 * 19.9 * t**2
    ms, std = VPSDE().marginal(t)
    np.testing.assert_allclose(ms, np.exp(-a / 2), rtol=1e-6)
    np.testing.assert_allclose(std, np.sqrt(1 - np.exp(-a)), rtol=1e-6)
    ms, std = SubVPSDE().marginal(t)
    np.testing.assert_allclose(std, 1 - np.exp(-a), rtol=1e-6)
    np.testing.assert_allclose(VESDE().sigma(t), 0.01 * 5000.0**t, rtol=1e-5)
    np.testing.assert_allclose(VESDE().diffusion(t), 0.01 * 5000.0**t * math.sqrt(2 * math.log(5000.0)), rtol=1e-5)
    np.testing.assert_allclose(EDMSDE().diffusion(t), np.sqrt(2 * t), rtol=1e-6)


@parametrize_sde
def test_drift_and_diffusion_generate_marginal(sde):
    """For dx = a(t) x dt + g dW: d s / dt = a s and d std^2 / dt = 2 a std^2 + g^2."""
    t = jnp.linspace(sde.eps, sde.T, 7)
    ds = jax.vmap(jax.grad(lambda t: sde.marginal(t)[0]))(t)
    dvar = jax.vmap(jax.grad(lambda t: sde.marginal(t)[1] ** 2))(t)
    a = jax.vmap(lambda t: sde.drift(jnp.ones(()), t))(t)
    ms, std = sde.marginal(t)
    g2 = sde.diffusion(t) ** 2
    np.testing.assert_allclose(ds, a * ms, rtol=1e-4, atol=1e-7)
    # The right side cancels (VP at T: -beta std^2 + beta = beta exp(-A)): float32 atol on g^2's scale.
    np.testing.assert_allclose(dvar, 2 * a * std**2 + g2, rtol=1e-4, atol=1e-6 * float(jnp.max(g2)))


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def simulate(sde, key, n_paths, n_steps, m, v):
    """Euler–Maruyama paths from x_0 ~ N(m, v) (plus the t = 0 marginal noise); x at T/4, T/2, 3T/4, T."""
    dt = sde.T / n_steps
    k0, k1, key = jax.random.split(key, 3)
    ms0, std0 = sde.marginal(0.0)
    x0 = m + jnp.sqrt(v) * jax.random.normal(k0, (n_paths,))
    x = ms0 * x0 + std0 * jax.random.normal(k1, (n_paths,))

    def step(x, k):
        f_dt, g_sqrt_dt = sde.discretize(x, k * dt, dt)
        return x + f_dt + g_sqrt_dt * jax.random.normal(jax.random.fold_in(key, k), x.shape), None

    def segment(x, j):
        ks = j * (n_steps // 4) + jnp.arange(n_steps // 4)
        x, _ = jax.lax.scan(step, x, ks)
        return x, x

    return jax.lax.scan(segment, x, jnp.arange(4))[1]


@parametrize_sde
def test_marginals_match_euler_maruyama(sde):
    n_paths, n_steps, m, v = 50_000, 1000, 1.5, 0.25
    xs = np.asarray(simulate(sde, jax.random.key(0), n_paths, n_steps, m, v), np.float64)
    t = sde.T * np.arange(1, 5) / 4
    ms, _ = sde.marginal(t)
    mean = np.asarray(ms) * m
    std = np.sqrt(np.asarray(marginal_var(sde, t, v)))
    # 5 standard errors, plus 0.6% of std for the O(dt) Euler–Maruyama bias (< 0.45% here).
    np.testing.assert_array_less(np.abs(xs.mean(1) - mean), (5 / math.sqrt(n_paths) + 0.006) * std)
    np.testing.assert_array_less(np.abs(xs.std(1) - std), (5 / math.sqrt(2 * n_paths) + 0.006) * std)


@parametrize_sde
def test_endpoints_are_finite(sde):
    x = jax.random.normal(jax.random.key(1), (3, 2))
    score = sde.score_from_denoiser(gaussian_denoiser(0.25))
    for t in (sde.eps, sde.T, jnp.full((3,), sde.eps)):
        outs = (*sde.marginal(t), sde.sigma(t), sde.diffusion(t), sde.drift(x, t), score(x, t))
        assert all(np.all(np.isfinite(o)) for o in outs)
    assert np.isfinite(sde.sigma(0.0))


@parametrize_sde
def test_score_from_gaussian_denoiser_is_marginal_score(sde):
    v = 0.25
    t = jnp.linspace(0.1, 1.0, 5) * sde.T
    x = jax.random.normal(jax.random.key(2), (5, 3)) * 3.0
    score = sde.score_from_denoiser(gaussian_denoiser(v))(x, t)
    np.testing.assert_allclose(score, -x / marginal_var(sde, t, v)[:, None], rtol=1e-4)
    scalar_t = sde.score_from_denoiser(gaussian_denoiser(v))(x, t[2])
    np.testing.assert_allclose(scalar_t, -x / marginal_var(sde, t[2], v), rtol=1e-4)


@functools.partial(jax.jit, static_argnums=(0, 2))
def probability_flow(sde, x, n_steps, v):
    """RK4 for the probability-flow ODE with the exact score, on t = eps + (T - eps) u^2."""
    score = sde.score_from_denoiser(gaussian_denoiser(v))
    ts = sde.eps + (sde.T - sde.eps) * jnp.linspace(0.0, 1.0, n_steps + 1) ** 2
    f = lambda x, t: sde.reverse_drift(x, t, score(x, t), probability_flow=True)

    def step(x, tt):
        t, h = tt[0], tt[1] - tt[0]
        k1 = f(x, t)
        k2 = f(x + h / 2 * k1, t + h / 2)
        k3 = f(x + h / 2 * k2, t + h / 2)
        k4 = f(x + h * k3, t + h)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    return jax.lax.scan(step, x, jnp.stack([ts[:-1], ts[1:]], 1))[0]


@parametrize_sde
def test_probability_flow_transports_gaussian_marginal(sde):
    v = 0.25
    x = jnp.asarray([[-1.0], [0.5], [2.0]])
    x_T = probability_flow(sde, x, 400, v)
    ratio = math.sqrt(marginal_var(sde, sde.T, v) / marginal_var(sde, sde.eps, v))
    np.testing.assert_allclose(x_T, ratio * x, rtol=1e-3)
    np.testing.assert_array_equal(sde.reverse_diffusion(sde.T, probability_flow=True), 0.0)
    np.testing.assert_allclose(sde.reverse_diffusion(sde.T), sde.diffusion(sde.T))


@parametrize_sde
def test_prior(sde):
    z = jax.random.normal(jax.random.key(3), (4, 2, 3)) * 2.0
    ref = stats.norm.logpdf(np.asarray(z, np.float64), scale=sde.prior_std).sum(axis=(1, 2))
    np.testing.assert_allclose(sde.prior_logp(z), ref, rtol=1e-5)
    sample = sde.prior_sample(jax.random.key(4), (20_000, 2))
    assert sample.shape == (20_000, 2) and sample.dtype == jnp.float32
    np.testing.assert_allclose(np.std(sample), sde.prior_std, rtol=0.02)


@parametrize_sde
def test_t_outside_range_raises_eagerly_only(sde):
    for bad in (-0.1, 1.5 * sde.T, jnp.asarray([0.5 * sde.T, 2 * sde.T])):
        with pytest.raises(ValueError, match=r"^t must lie in \[0, T"):
            sde.sigma(bad)
    assert np.isfinite(jax.jit(sde.sigma)(1.5 * sde.T))
    assert hash(sde) == hash(type(sde)()) and sde == type(sde)()


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: VPSDE(beta_min=0.0), "beta_min"),
        (lambda: VPSDE(beta_max=0.05), "beta_max"),
        (lambda: SubVPSDE(T=0.0), "T"),
        (lambda: VPSDE(eps=1.0), "eps"),
        (lambda: VESDE(sigma_min=0.0), "sigma_min"),
        (lambda: VESDE(sigma_max=0.001), "sigma_max"),
        (lambda: EDMSDE(sigma_max=0.001), "sigma_max"),
    ],
)
def test_bad_parameters_raise_naming_field(make, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        make()
