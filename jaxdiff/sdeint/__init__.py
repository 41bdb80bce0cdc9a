"""Numerical SDEs in pure JAX: Brownian paths and trees, Itô integrals, fixed-step solvers, orders."""

from __future__ import annotations

from jaxdiff.sdeint.brownian import VirtualBrownianTree, check_grid, coarsen, increments, refine
from jaxdiff.sdeint.exact import brownian_bridge, gbm, gbm_mean, ou_density, ou_moments, ou_path
from jaxdiff.sdeint.integrals import (
    ito_integral,
    ito_to_stratonovich_drift,
    path,
    quadratic_variation,
    stratonovich_integral,
    stratonovich_to_ito_drift,
)
from jaxdiff.sdeint.order import OrderFit, fit_order, plot_order, simulate, strong_order, weak_order
from jaxdiff.sdeint.solvers import (
    Solver,
    euler_maruyama,
    milstein,
    milstein_stratonovich,
    sdeint,
    sra1,
    stochastic_heun,
    time_grid,
    weak2,
)

__all__ = [
    "VirtualBrownianTree",
    "check_grid",
    "coarsen",
    "increments",
    "refine",
    "brownian_bridge",
    "gbm",
    "gbm_mean",
    "ou_density",
    "ou_moments",
    "ou_path",
    "ito_integral",
    "ito_to_stratonovich_drift",
    "path",
    "quadratic_variation",
    "stratonovich_integral",
    "stratonovich_to_ito_drift",
    "OrderFit",
    "fit_order",
    "plot_order",
    "simulate",
    "strong_order",
    "weak_order",
    "Solver",
    "euler_maruyama",
    "milstein",
    "milstein_stratonovich",
    "sdeint",
    "sra1",
    "stochastic_heun",
    "time_grid",
    "weak2",
]
