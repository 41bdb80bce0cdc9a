"""Bridge processes: coefficients against the issue's formulas, endpoints, h-transform, forward SDE (MC)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.bridges import VEBridge, VPBridge
from jaxdiff.bridges.samplers import _drift_coeffs

BRIDGES = [VPBridge(), VEBridge()]


def naive_abc(bridge, t):
    """The unified notation written out directly in float64 NumPy."""
    if isinstance(bridge, VPBridge):
        B = lambda u: bridge.beta_min * u + 0.5 * bridge.beta_d * u**2  # noqa: E731
        alpha, rho2 = np.exp(-0.5 * B(t)), np.exp(B(t)) - 1
        alpha_T, rho2_T = np.exp(-0.5 * B(bridge.T)), np.exp(B(bridge.T)) - 1
    else:
        alpha, rho2, alpha_T, rho2_T = np.ones_like(t), t**2, 1.0, bridge.sigma_max**2
    rho_bar2 = rho2_T - rho2
    return (alpha / alpha_T * rho2 / rho2_T, alpha * rho_bar2 / rho2_T,
            alpha * np.sqrt(rho_bar2) * np.sqrt(rho2) / np.sqrt(rho2_T))


@pytest.mark.parametrize("bridge", BRIDGES, ids=["vp", "ve"])
def test_abc_matches_formulas_and_endpoints(bridge):
    t = np.linspace(0.05, 0.95, 7) * bridge.T
    for got, want in zip(bridge.abc(t), naive_abc(bridge, t)):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    a, b, c = bridge.abc(np.array([0.0, bridge.T]))
    np.testing.assert_allclose(a, [0, 1], atol=1e-12)
    np.testing.assert_allclose(b, [1, 0], atol=1e-12)
    np.testing.assert_allclose(c, [0, 0], atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bridge", BRIDGES, ids=["vp", "ve"])
def test_no_nan_at_endpoints(bridge, dtype):
    with jax.enable_x64(dtype == "float64"):
        t = jnp.asarray([0.0, bridge.t_min, bridge.t_max, bridge.T], dtype)
        vals = [*bridge.abc(t), *bridge.alpha_rho(t), *bridge.f_g2(t)]
        assert all(v.dtype == jnp.dtype(dtype) and bool(jnp.all(jnp.isfinite(v))) for v in vals)
        x = jnp.ones((4, 3), dtype)
        inner = t[1:3]
        for ode in (True, False):
            drift = bridge.reverse_drift(x[:2], -x[:2], 0.5 * x[:2], inner, ode=ode)
            assert bool(jnp.all(jnp.isfinite(drift)))
        # near T, c is accurate to relative precision at the representable t (no cancellation)
        t_max = jnp.asarray(bridge.t_max, dtype)
        want = naive_abc(bridge, np.float64(t_max))[2]
        np.testing.assert_allclose(float(bridge.abc(t_max)[2]), want, rtol=1e-4)


@pytest.mark.parametrize("bridge", BRIDGES, ids=["vp", "ve"])
def test_h_transform_is_grad_log_transition(bridge, x64):
    """∇ log p(x_T | x_t) with p = N(x_T; (α_T/α_t) x_t, α_T² ρ̄_t²), by autodiff."""
    t = 0.37 * bridge.T
    alpha, alpha_bar, _, rho_bar2 = (float(v) for v in bridge.alpha_rho(np.float64(t)))
    alpha_T = alpha / alpha_bar
    x_T = jnp.array([[0.3, -1.2]])

    def logp(x):
        return -0.5 * jnp.sum((x_T - x / alpha_bar) ** 2) / (alpha_T**2 * rho_bar2)

    x = jnp.array([[1.1, 0.4]])
    np.testing.assert_allclose(bridge.h_transform(x, x_T, t), jax.grad(logp)(x), rtol=1e-10)


@pytest.mark.parametrize("bridge", BRIDGES, ids=["vp", "ve"])
def test_drift_table_matches_reverse_drift(bridge, x64):
    t = np.array([0.2, 0.6]) * bridge.T
    x, x_T, d = (jnp.asarray(np.random.default_rng(i).normal(size=(2, 3))) for i in range(3))
    for ode in (True, False):
        px, pT, pD, g = _drift_coeffs(bridge, t, ode=ode, guidance=1.5)
        want = bridge.reverse_drift(x, x_T, d, t, ode=ode, guidance=1.5)
        np.testing.assert_allclose(px[:, None] * x + pT[:, None] * x_T + pD[:, None] * d, want, rtol=1e-9)
        np.testing.assert_allclose(g, np.sqrt(bridge.f_g2(t)[1]))


@pytest.mark.parametrize("bridge", BRIDGES, ids=["vp", "ve"])
def test_forward_sde_matches_marginals(bridge):
    """Euler–Maruyama on dx = [f x + g² ∇log p(x_T|x_t)] dt + g dW from x_0 hits q(x_t | x_0, x_T)."""
    n, steps = 4000, 600
    x0, x_T = 0.8, -0.5
    t_end = 0.9 * bridge.T
    ts = np.linspace(0.0, t_end, steps + 1)
    dt = ts[1] - ts[0]

    def step(x, inp):
        t, k = inp
        drift, g = bridge.forward_sde(x, jnp.full_like(x, x_T), t)
        x = x + drift * dt + g * jnp.sqrt(dt) * jax.random.normal(k, x.shape)
        return x, x

    keys = jax.random.split(jax.random.key(0), steps)
    _, path = jax.lax.scan(step, jnp.full((n, 1), x0), (jnp.asarray(ts[:-1], jnp.float32), keys))
    for j in (steps // 4, steps // 2, steps):
        a, b, c = bridge.abc(ts[j])
        x = np.asarray(path[j - 1, :, 0], np.float64)
        mean, std = a * x_T + b * x0, c
        se = 4 * std / np.sqrt(n)  # 4 standard errors, plus an O(dt) Euler–Maruyama allowance
        assert abs(x.mean() - mean) < se + 0.02 * (abs(mean) + std), (j, x.mean(), mean)
        assert abs(x.std() - std) < 4 * std / np.sqrt(2 * n) + 0.03 * std, (j, x.std(), std)


def test_bad_input():
    bridge = VPBridge()
    with pytest.raises(ValueError, match="t must lie in"):
        bridge.check_t(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="T must equal sigma_max"):
        VEBridge(sigma_max=80.0, T=1.0)
