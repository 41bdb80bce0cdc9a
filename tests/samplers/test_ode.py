"""Euler and Heun on Gaussian data, where the probability-flow ODE has a closed-form solution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules

S = 0.7  # data ~ N(0, S²): D(x; σ) = S²/(S²+σ²) x and the ODE flow is x(σ) = x(σ0)·√(S²+σ²)/√(S²+σ0²)


def gaussian_denoiser(x, sigma):
    return S**2 / (S**2 + sigma**2) * x


@pytest.fixture(scope="module")
def x0():
    return 80.0 * jax.random.normal(jax.random.key(0), (64, 3))


def exact(x0, sigma_max=80.0):
    return x0 * S / np.sqrt(S**2 + sigma_max**2)


@pytest.mark.parametrize("name,order", [("euler", 1.0), ("heun", 2.0)])
def test_convergence_order(x0, name, order):
    sampler = jax.jit(getattr(samplers, name), static_argnums=0)
    ns = [8, 16, 32, 64]
    errs = []
    for n in ns:
        # Interior of the grid only: the last step to σ=0 is Euler for both solvers and exact here.
        sig = schedules.karras(n, 0.002, 80.0)
        out = sampler(gaussian_denoiser, x0, sig)
        errs.append(float(jnp.abs(out - exact(x0)).max()))
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.25, (name, errs, slope)


def test_heun_nfe_and_trajectory(x0):
    calls = []

    def counting(x, sigma):
        calls.append(1)
        return gaussian_denoiser(x, sigma)

    sig = schedules.karras(5, 0.002, 80.0)
    out, traj = samplers.heun(counting, x0, sig, return_trajectory=True)
    assert traj.shape == (5, *x0.shape)
    np.testing.assert_array_equal(traj[-1], out)
    # Traced once: two calls in the loop's Heun step, one in the final Euler step outside the loop.
    assert len(calls) == 3


def test_heun_is_deterministic(x0):
    sig = schedules.karras(10, 0.002, 80.0)
    np.testing.assert_array_equal(samplers.heun(gaussian_denoiser, x0, sig), samplers.heun(gaussian_denoiser, x0, sig))


@pytest.mark.parametrize(
    "sigmas,match",
    [
        (jnp.array([80.0, 1.0, 0.5]), "end with 0"),
        (jnp.array([1.0, 80.0, 0.0]), "strictly decreasing"),
        (jnp.array([80.0, -1.0, 0.0]), "non-negative"),
        (jnp.array([80.0, jnp.nan, 0.0]), "finite"),
        (jnp.array([0.0]), "at least 2"),
    ],
)
def test_bad_sigmas(x0, sigmas, match):
    with pytest.raises(ValueError, match=match):
        samplers.euler(gaussian_denoiser, x0, sigmas)


def test_bad_denoiser_shape(x0):
    with pytest.raises(ValueError, match="denoiser returned shape"):
        samplers.heun(lambda x, s: x[:, :2], x0, schedules.karras(4, 0.002, 80.0))
