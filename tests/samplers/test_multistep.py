"""UniPC on Gaussian data, where the probability-flow ODE has a closed-form solution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import schedules
from jaxdiff.samplers.multistep import unipc

S, SIGMA_END = 0.7, 0.05  # data ~ N(0, S²): x(σ) = x(σ0)·√(S²+σ²)/√(S²+σ0²)


def gaussian_denoiser(x, sigma):
    return S**2 / (S**2 + sigma**2) * x


@pytest.fixture
def x0(x64):
    return 80.0 * jax.random.normal(jax.random.key(0), (32, 3), jnp.float64)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_convergence_order(x0, order):
    """UniC raises UniP-p to order p+1; measured at the last nonzero level (the last step returns D)."""
    exact = x0 * np.sqrt(S**2 + SIGMA_END**2) / np.sqrt(S**2 + 80.0**2)
    ns = [16, 32, 64]
    errs = []
    for n in ns:
        _, traj = unipc(gaussian_denoiser, x0, schedules.karras(n, SIGMA_END, 80.0, dtype=jnp.float64),
                        order=order, return_trajectory=True)
        errs.append(float(jnp.abs(traj[-2] - exact).max()))
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert slope > order + 0.7, (order, errs, slope)


def test_constant_denoiser_is_exact_and_last_step_denoises(x0):
    c = jnp.full((3,), 0.3, jnp.float64)
    sig = schedules.karras(7, SIGMA_END, 80.0, dtype=jnp.float64)
    out, traj = unipc(lambda x, s: jnp.broadcast_to(c, x.shape), x0, sig, return_trajectory=True)
    np.testing.assert_allclose(traj[-2], c + sig[-2] / sig[0] * (x0 - c), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, jnp.broadcast_to(c, x0.shape), atol=1e-14)


def test_jit_matches_eager():
    x = jax.random.normal(jax.random.key(1), (4, 2)) * 10.0
    sig = schedules.karras(6, 0.01, 10.0)
    eager = unipc(gaussian_denoiser, x, sig)
    jitted = jax.jit(lambda x: unipc(gaussian_denoiser, x, sig))(x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)
    assert jitted.shape == x.shape


@pytest.mark.parametrize("order", [0, 4, True, 2.0])
def test_bad_order(order):
    with pytest.raises(ValueError, match="order"):
        unipc(gaussian_denoiser, jnp.ones((2, 2)), schedules.karras(3, 0.1, 1.0), order=order)


def test_bad_sigmas():
    with pytest.raises(ValueError, match="sigmas"):
        unipc(gaussian_denoiser, jnp.ones((2, 2)), jnp.asarray([1.0, 0.5]))


def test_nan_denoiser_raises():
    with pytest.raises(ValueError, match="non-finite"):
        unipc(lambda x, s: x * jnp.nan, jnp.ones((2, 2)), schedules.karras(3, 0.1, 1.0))
