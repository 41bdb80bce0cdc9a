"""Itô vs Stratonovich integrals of a sampled path and the conversion drift."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.sdeint import (
    increments,
    ito_integral,
    ito_to_stratonovich_drift,
    path,
    quadratic_variation,
    stratonovich_integral,
    stratonovich_to_ito_drift,
)


def test_ito_and_stratonovich_of_w_dw_differ_by_half_t(x64):
    ts = jnp.linspace(0.0, 2.0, 2**14 + 1)
    w = path(increments(jax.random.key(0), ts, (8,)))
    ito = ito_integral(lambda x: x, w)
    strat = stratonovich_integral(lambda x: x, w)
    assert ito.shape == w.shape
    np.testing.assert_allclose(strat, w**2 / 2, atol=1e-10)  # exact telescoping
    np.testing.assert_allclose(ito, (w**2 - quadratic_variation(w)) / 2, atol=1e-10)
    # On a fine grid the quadratic variation is t: Itô = (W_t² - t)/2, Strat - Itô = t/2.
    np.testing.assert_allclose(ito[-1], (w[-1] ** 2 - 2.0) / 2, atol=0.05)
    np.testing.assert_allclose(strat[-1] - ito[-1], 1.0, atol=0.05)


def test_ito_lemma_for_cube(x64):
    # d(W³) = 3 W² dW + 3 W dt.
    ts = jnp.linspace(0.0, 1.0, 2**14 + 1)
    w = path(increments(jax.random.key(1), ts, (8,)))
    dt_term = 3 * jnp.sum(w[:-1] * jnp.diff(ts)[:, None], 0)
    np.testing.assert_allclose(ito_integral(lambda x: 3 * x**2, w)[-1] + dt_term, w[-1] ** 3, atol=0.05)


def test_conversion_drift_for_gbm():
    f = lambda x, t: 0.3 * x  # noqa: E731
    g = lambda x, t: 0.5 * x  # noqa: E731
    x = jnp.array([1.0, 2.0])
    fs = ito_to_stratonovich_drift(f, g)
    np.testing.assert_allclose(fs(x, 0.0), (0.3 - 0.125) * x, rtol=1e-6)
    np.testing.assert_allclose(stratonovich_to_ito_drift(fs, g)(x, 0.0), f(x, 0.0), rtol=1e-6)
