"""Closed forms: GBM mean, OU transition law (Fokker–Planck density check), Brownian bridge."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.sdeint import brownian_bridge, euler_maruyama, gbm, gbm_mean, increments, ou_density, ou_path, path, sdeint


def test_gbm_exact_mean(x64):
    ts = jnp.linspace(0.0, 1.0, 5)
    x = gbm(2.0, 0.3, 0.4, ts, path(increments(jax.random.key(0), ts, (100000,))))
    np.testing.assert_allclose(x.mean(1), gbm_mean(2.0, 0.3, ts), rtol=0.01)


def test_ou_histogram_matches_transition_density(x64):
    # Exact sampler and a fine Euler–Maruyama solve both match p(x, t | x0) (the Fokker–Planck solution).
    theta, mu, sigma, x0, t = 2.0, 0.5, 0.8, -1.0, 0.7
    ts = jnp.linspace(0.0, t, 71)
    exact = ou_path(jax.random.key(1), x0, theta, mu, sigma, ts, (20000,))[-1]
    dw = increments(jax.random.key(2), ts, (20000,))
    drift = lambda x, s: theta * (mu - x)  # noqa: E731
    em = jax.vmap(lambda w: sdeint(euler_maruyama, drift, lambda x, s: sigma + 0 * x, x0, ts, w), 1)(dw)
    edges = np.linspace(-1.5, 1.5, 21)
    centres = 0.5 * (edges[1:] + edges[:-1])
    density = np.asarray(ou_density(centres, x0, theta, mu, sigma, t))
    for sample in (exact, em):
        hist, _ = np.histogram(np.asarray(sample), edges, density=True)
        assert np.abs(hist - density).max() < 0.06


def test_brownian_bridge_pins_and_variance(x64):
    ts = jnp.linspace(0.0, 2.0, 5)
    b = brownian_bridge(jax.random.key(3), ts, 1.0, -1.0, (50000,))
    np.testing.assert_allclose(b[0], 1.0)
    np.testing.assert_allclose(b[-1], -1.0, atol=1e-12)
    np.testing.assert_allclose(b.mean(1), 1.0 - ts, atol=0.01)
    np.testing.assert_allclose(b.var(1), ts * (2.0 - ts) / 2.0, atol=0.01)
