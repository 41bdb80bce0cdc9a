"""Shared fixtures: the exact denoiser of the unique cells and a synthetic property table."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nag import model, space
from jaxdiff.nag.skeleton import count_flops, count_params
from jaxdiff.nag.table import PropertyTable


def empirical_denoiser(cells):
    """The exact denoiser of the uniform distribution over ``cells``' matrices: the posterior mean
    ``sum_i softmax_i(-|x - y_i|^2 / (2 sigma^2)) y_i``."""
    y = jnp.asarray(model.to_data(cells)).reshape(len(cells), -1)

    def D(x, sigma):
        flat = x.reshape(x.shape[0], -1)
        sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])[:, None]
        d2 = jnp.sum(flat**2, 1, keepdims=True) - 2 * flat @ y.T + jnp.sum(y**2, 1)[None]
        w = jax.nn.softmax(-d2 / (2 * sigma**2), axis=1)
        return (w @ y).reshape(x.shape)

    return D


@pytest.fixture(scope="session")
def cells_denoiser():
    return empirical_denoiser(space.unique_cells().astype(np.int64))


@pytest.fixture(scope="session")
def synthetic_table():
    """Every unique cell with a smooth property: 3x3 convolutions and 1x1 convolutions help, a cut
    input-output edge hurts, plus a little noise (two seeds)."""
    cells = space.unique_cells().astype(np.int64)
    rng = np.random.default_rng(0)
    base = 0.5 + 0.05 * (cells == 3).sum(1) + 0.02 * (cells == 2).sum(1) - 0.1 * (cells[:, 3] == 0)
    acc = base[:, None] + 0.01 * rng.normal(size=(len(cells), 2))
    return PropertyTable(np.arange(len(cells)), acc, acc - 0.01, count_params(cells, 8), count_flops(cells, 8),
                         {"synthetic": True})
