"""Noise grids against closed forms and NumPy reimplementations of k-diffusion / iDDPM."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import schedules


# k-diffusion (sampling.py) and iDDPM formulas, in float64 NumPy.
def np_karras(n, sigma_min, sigma_max, rho=7.0):
    ramp = np.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return np.append((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho, 0.0)


def np_exponential(n, sigma_min, sigma_max):
    return np.append(np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n)), 0.0)


def np_vp(n, beta_d=19.9, beta_min=0.1, eps_s=1e-3):
    t = np.linspace(1, eps_s, n)
    return np.append(np.sqrt(np.exp(beta_d * t**2 / 2 + beta_min * t) - 1), 0.0)


def np_cosine_alpha_bar(t, s=0.008):
    return np.cos((t + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2


GRIDS = {
    "karras": lambda n: schedules.karras(n, 0.002, 80.0),
    "exponential": lambda n: schedules.exponential(n, 0.002, 80.0),
    "vp": lambda n: schedules.vp(n),
    "cosine": lambda n: schedules.cosine(n),
}


@pytest.mark.parametrize("name", sorted(GRIDS))
@pytest.mark.parametrize("n", [1, 2, 18, 257])
def test_grid_shape_order_and_zero(name, n):
    sigmas = GRIDS[name](n)
    assert sigmas.shape == (n + 1,)
    assert sigmas.dtype == jnp.float32
    assert sigmas[-1] == 0.0
    assert np.all(np.diff(np.asarray(sigmas)) < 0)
    assert np.all(np.isfinite(np.asarray(sigmas)))


@pytest.mark.parametrize("n,rho", [(1, 7.0), (2, 7.0), (40, 7.0), (40, 3.0)])
def test_karras_matches_k_diffusion(n, rho):
    sigmas = schedules.karras(n, 0.002, 80.0, rho)
    np.testing.assert_allclose(sigmas, np_karras(n, 0.002, 80.0, rho), rtol=2e-5)
    assert math.isclose(float(sigmas[0]), 80.0, rel_tol=1e-6)
    if n > 1:
        assert math.isclose(float(sigmas[-2]), 0.002, rel_tol=1e-5)


def test_exponential_matches_k_diffusion_and_is_log_uniform():
    sigmas = np.asarray(schedules.exponential(30, 0.01, 50.0))
    np.testing.assert_allclose(sigmas, np_exponential(30, 0.01, 50.0), rtol=2e-5)
    ratios = sigmas[1:-1] / sigmas[:-2]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, dict(beta_d=10.0, beta_min=0.5, eps_s=1e-4)])
def test_vp_matches_k_diffusion(kwargs):
    np.testing.assert_allclose(schedules.vp(50, **kwargs), np_vp(50, **kwargs), rtol=2e-5)


def test_cosine_is_iddpm_alpha_bar_at_even_times():
    n, sigma_min, sigma_max = 25, 0.002, 80.0
    sigmas = np.asarray(schedules.cosine(n, sigma_min, sigma_max), np.float64)
    np.testing.assert_allclose(sigmas[[0, -2]], [sigma_max, sigma_min], rtol=1e-4)
    # Invert sigma -> alpha_bar -> t in float64: the times must be evenly spaced.
    alpha_bar = 1 / (1 + sigmas[:-1] ** 2)
    s = 0.008
    u = np.arccos(np.sqrt(alpha_bar) * np.cos(s / (1 + s) * np.pi / 2))
    t = u * (1 + s) * 2 / np.pi - s
    np.testing.assert_allclose(np.diff(t), np.diff(t)[0], rtol=1e-3)
    np.testing.assert_allclose(np_cosine_alpha_bar(t), alpha_bar, rtol=1e-5)


def test_linear_beta_matches_ddpm():
    betas, alphas_cumprod = schedules.linear_beta()
    ref_betas = np.linspace(1e-4, 0.02, 1000)
    assert betas.shape == alphas_cumprod.shape == (1000,)
    np.testing.assert_allclose(betas, ref_betas, rtol=1e-5)
    np.testing.assert_allclose(alphas_cumprod, np.cumprod(1 - ref_betas), rtol=1e-4)
    sigmas = np.asarray(schedules.sigma_from_alpha_bar(alphas_cumprod))
    assert np.all(np.diff(sigmas) > 0)


def test_alpha_bar_sigma_maps():
    sigma = jnp.asarray([0.0, 1e-3, 0.5, 1.0, 80.0])
    alpha_bar = schedules.alpha_bar_from_sigma(sigma)
    np.testing.assert_allclose(alpha_bar, 1 / (1 + np.asarray(sigma, np.float64) ** 2), rtol=1e-6)
    # The inverse is exact for the float32 alpha_bar it is given (1 - alpha_bar is exact
    # for alpha_bar >= 1/2); the round trip loses small sigmas to float32 rounding of alpha_bar.
    ab64 = np.asarray(alpha_bar, np.float64)
    np.testing.assert_allclose(schedules.sigma_from_alpha_bar(alpha_bar), np.sqrt((1 - ab64) / ab64), rtol=1e-6)
    np.testing.assert_allclose(schedules.sigma_from_alpha_bar(alpha_bar)[2:], sigma[2:], rtol=1e-6)


def test_grids_jit_with_traced_floats():
    f = jax.jit(lambda lo, hi: schedules.karras(8, lo, hi))
    np.testing.assert_allclose(f(0.002, 80.0), schedules.karras(8, 0.002, 80.0), rtol=1e-6)


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: schedules.karras(0, 0.1, 1.0), "n"),
        (lambda: schedules.karras(2.5, 0.1, 1.0), "n"),
        (lambda: schedules.karras(4, 0.0, 1.0), "sigma_min"),
        (lambda: schedules.karras(4, 2.0, 1.0), "sigma_min"),
        (lambda: schedules.karras(4, 0.1, 1.0, rho=0.0), "rho"),
        (lambda: schedules.exponential(4, -1.0, 1.0), "sigma_min"),
        (lambda: schedules.exponential(4, 0.1, float("inf")), "sigma_max"),
        (lambda: schedules.vp(0), "n"),
        (lambda: schedules.vp(4, beta_min=0.0), "beta_min"),
        (lambda: schedules.vp(4, beta_d=-1.0), "beta_d"),
        (lambda: schedules.vp(4, eps_s=1.0), "eps_s"),
        (lambda: schedules.cosine(4, 1.0, 1.0), "sigma_min"),
        (lambda: schedules.cosine(4, s=0.0), "s"),
        (lambda: schedules.linear_beta(0), "num_timesteps"),
        (lambda: schedules.linear_beta(10, 0.0, 0.02), "beta_start"),
        (lambda: schedules.linear_beta(10, 0.03, 0.02), "beta_start"),
        (lambda: schedules.linear_beta(10, 1e-4, 1.0), "beta_end"),
        (lambda: schedules.sigma_from_alpha_bar(jnp.asarray([0.5, 0.0])), "alpha_bar"),
        (lambda: schedules.alpha_bar_from_sigma(-1.0), "sigma"),
    ],
)
def test_bad_input_raises_naming_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        call()
