"""Measured convergence orders (float64, shared Brownian paths, paired bootstrap CIs).

Settings are chosen so the asymptotic term dominates: small drift against noise for EM
(its O(h) bias would pull the slope up), moderate noise for Milstein / Heun (higher
terms in sigma² h pull it down), sin drift and sigma = 2 for SRA1 (on linear drift SRA1
is order 2), a small sigma for the weak tests (less Monte Carlo noise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.sdeint import (
    euler_maruyama,
    fit_order,
    gbm,
    ito_to_stratonovich_drift,
    milstein,
    plot_order,
    sra1,
    stochastic_heun,
    strong_order,
    weak2,
    weak_order,
)

STEPS = (16, 32, 64, 128, 256)


def _gbm(mu, sigma):
    """Drift, diffusion and exact X(1) of Itô GBM from 1."""
    return (lambda x, t: mu * x), (lambda x, t: sigma * x), (lambda ts, w: gbm(1.0, mu, sigma, ts, w)[-1])


@pytest.mark.parametrize(
    "solver, mu, sigma, expected",
    [(euler_maruyama, 0.1, 1.0, 0.5), (milstein, 0.5, 0.5, 1.0), (stochastic_heun, 0.5, 0.5, 1.0)],
    ids=["euler_maruyama", "milstein", "stochastic_heun"],
)
def test_strong_order_on_gbm(x64, solver, mu, sigma, expected):
    f, g, exact = _gbm(mu, sigma)
    if solver.calculus == "stratonovich":
        f = ito_to_stratonovich_drift(f, g)
    fit = strong_order(
        solver, f, g, 1.0, 1.0, jax.random.key(0), n_paths=4000, steps=STEPS, n_fine=1024,
        exact=exact, fit_kw={"n_boot": 200},
    )
    assert abs(fit.order - expected) < 0.1, fit
    assert fit.ci[0] < fit.order < fit.ci[1] and fit.ci[1] - fit.ci[0] < 0.15, fit


def test_sra1_strong_order_one_and_a_half(x64):
    fit = strong_order(
        sra1, lambda x, t: jnp.sin(x), lambda x, t: 2.0 * jnp.ones_like(x), 0.5, 1.0, jax.random.key(1),
        n_paths=2000, steps=(8, 16, 32, 64, 128), n_fine=1024, fit_kw={"n_boot": 200},
    )
    assert abs(fit.order - 1.5) < 0.1, fit
    assert fit.ci[1] - fit.ci[0] < 0.15, fit


def test_euler_maruyama_weak_order_one(x64):
    # E[X_1] of GBM, mu = 1, sigma = 0.2; estimated as mean(X_h - X_exact) on shared paths.
    fit = weak_order(
        euler_maruyama, lambda x, t: x, lambda x, t: 0.2 * x, 1.0, 1.0, jax.random.key(2),
        n_paths=2000, steps=STEPS, n_fine=1024, exact=lambda ts, w: gbm(1.0, 1.0, 0.2, ts, w)[-1],
        fit_kw={"n_boot": 200},
    )
    assert abs(fit.order - 1.0) < 0.15, fit


def test_fit_order_recovers_a_known_slope_and_plots():
    hs = np.array([0.1, 0.05, 0.025])
    rng = np.random.default_rng(0)
    samples = 3 * hs[:, None] ** 1.5 * rng.uniform(0.9, 1.1, (3, 500))
    fit = fit_order(hs, samples)
    assert abs(fit.order - 1.5) < 0.02 and fit.ci[0] <= fit.order <= fit.ci[1] and fit.ci[1] - fit.ci[0] < 0.03
    with pytest.raises(ValueError, match="kind"):
        fit_order(hs, samples, kind="mean")
    with pytest.raises(ValueError, match="samples must have shape"):
        fit_order(hs, samples[:2])
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_order({"synthetic": fit})
    assert ax.get_xscale() == "log"


def test_weak2_weak_order_two(x64):
    fit = weak_order(
        weak2, lambda x, t: x, lambda x, t: 0.2 * x, 1.0, 1.0, jax.random.key(3),
        n_paths=2000, steps=(4, 8, 16, 32), n_fine=256, exact=lambda ts, w: gbm(1.0, 1.0, 0.2, ts, w)[-1],
        fit_kw={"n_boot": 200},
    )
    assert abs(fit.order - 2.0) < 0.15, fit
