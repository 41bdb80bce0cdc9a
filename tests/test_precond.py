"""Preconditioning scalars against Karras et al. 2022, Table 1, computed independently in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import precond

pytestmark = pytest.mark.usefixtures("x64")
SIGMAS = np.array([0.002, 0.01, 0.1, 0.5, 1.0, 3.0, 20.0, 80.0])


def table1(name, s, sd=0.5):
    """The paper's formulas, written out again in NumPy."""
    if name == "edm":
        return sd**2 / (s**2 + sd**2), s * sd / np.sqrt(s**2 + sd**2), 1 / np.sqrt(s**2 + sd**2), np.log(s) / 4
    if name == "vp":
        bd, bmin = 19.9, 0.1
        t = (np.sqrt(bmin**2 + 2 * bd * np.log(s**2 + 1)) - bmin) / bd
        return np.ones_like(s), -s, 1 / np.sqrt(s**2 + 1), 999 * t
    if name == "ve":
        return np.ones_like(s), s, np.ones_like(s), np.log(s / 2)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["edm", "vp", "ve"])
def test_coefficients_equal_table1(name):
    got = precond.PRECONDITIONINGS[name]().coefficients(jnp.asarray(SIGMAS))
    for g, w in zip(got, table1(name, SIGMAS)):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-10)


def test_vp_sigma_inv_inverts_vp_sigma():
    p = precond.VPPrecond()
    t = jnp.linspace(1e-3, 1.0, 17)
    sigma = jnp.sqrt(jnp.expm1(0.5 * p.beta_d * t**2 + p.beta_min * t))
    np.testing.assert_allclose(p.sigma_inv(sigma), t, rtol=1e-10)


def test_iddpm_grid_and_index():
    p = precond.IDDPMPrecond()
    u = p.u
    assert u.shape == (1001,) and u[-1] == 0 and np.all(np.diff(u) < 0)
    # The recursion telescopes: u_j² + 1 = ᾱ_M/ᾱ_j wherever the C1 clip is inactive (j >= 1).
    ab = np.sin(0.5 * np.pi * np.arange(1001) / 1000 / 1.008) ** 2
    np.testing.assert_allclose(u[1:-1], np.sqrt(ab[1000] / ab[1:1000] - 1), rtol=1e-9)
    np.testing.assert_allclose(u[0], np.sqrt((u[1] ** 2 + 1) / 0.001 - 1), rtol=1e-12)  # clipped at j = 0
    c_skip, c_out, c_in, c_noise = p.coefficients(jnp.asarray(u[[0, 500, 999]]))
    np.testing.assert_array_equal(np.asarray(c_noise), [999, 499, 0])
    np.testing.assert_allclose(c_in, 1 / np.sqrt(u[[0, 500, 999]] ** 2 + 1), rtol=1e-12)


def test_denoiser_wires_the_four_scalars():
    w = jax.random.normal(jax.random.key(0), (4, 4), jnp.float64)

    def net(params, x, c_noise, *, key=None):
        return x @ params + c_noise[:, None]

    x = jax.random.normal(jax.random.key(1), (3, 4), jnp.float64)
    sigma = jnp.asarray([0.1, 1.0, 10.0])
    p = precond.EDMPrecond()
    c_skip, c_out, c_in, c_noise = p.coefficients(sigma)
    want = c_skip[:, None] * x + c_out[:, None] * ((c_in[:, None] * x) @ w + c_noise[:, None])
    np.testing.assert_allclose(precond.denoiser(net, w, p)(x, sigma), want, rtol=1e-12)
    # A scalar sigma broadcasts over the batch.
    np.testing.assert_allclose(precond.denoiser(net, w, p)(x, 1.0)[1], want[1], rtol=1e-12)
