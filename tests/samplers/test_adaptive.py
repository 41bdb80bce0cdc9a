"""Adaptive Dopri5 + PID: tolerance-proportional error, NFE growth, jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers

S = 0.7  # data ~ N(0, S²): the flow is x(σ) = x(σ0)·√(S²+σ²)/√(S²+σ0²)
SMAX, SMIN = 80.0, 0.002
SIGMAS = jnp.array([SMAX, SMIN, 0.0])  # pf_ode uses the ends: σ_max, σ_min, then D(x; σ_min)


def gaussian_denoiser(x, sigma):
    return S**2 / (S**2 + sigma**2) * x


def exact(x):
    return x * np.sqrt(S**2 + SMIN**2) / np.sqrt(S**2 + SMAX**2)


@pytest.fixture(scope="module")
def x0():
    return SMAX * jax.random.normal(jax.random.key(0), (8, 3))


def test_error_tracks_tolerance(x0, x64):
    x = jnp.asarray(x0, jnp.float64)
    solve = jax.jit(lambda x, tol: samplers.pf_ode(gaussian_denoiser, x, SIGMAS.astype(x.dtype), rtol=tol, atol=tol,
                                                   return_stats=True, return_trajectory=True))
    errs, abs_errs, nfes = [], [], []
    for tol in [1e-3, 1e-5, 1e-7, 1e-9]:
        _, traj, stats = solve(x, tol)
        out = traj[0]  # the state at σ_min, before the final denoising step
        err = float(jnp.sqrt(jnp.mean(((out - exact(x)) / (tol + tol * jnp.abs(exact(x)))) ** 2)))
        errs.append(err)
        abs_errs.append(float(jnp.abs(out - exact(x)).max()))
        nfes.append(int(stats.nfe))
        assert int(stats.nfe) == 3 + 6 * (int(stats.n_accepted) + int(stats.n_rejected))
    # Global error within a small multiple of the tolerance, and NFE grows as it tightens.
    # Measured (I controller): max error 3.9e-3, 1.9e-5, 7.2e-8, 4.2e-11 at NFE 57, 117, 243, 561.
    assert max(errs) < 10.0, errs
    assert all(a > b for a, b in zip(abs_errs, abs_errs[1:])), abs_errs
    assert all(a < b for a, b in zip(nfes, nfes[1:])), nfes


def test_jit_and_vmap(x0):
    solve = jax.jit(lambda x: samplers.pf_ode(gaussian_denoiser, x, SIGMAS, rtol=1e-4, atol=1e-4, return_stats=True))
    out, stats = solve(x0)
    want = gaussian_denoiser(exact(x0), SMIN)
    np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-3)
    out_v, stats_v = jax.vmap(lambda x: solve(x[None]))(x0)
    np.testing.assert_allclose(out_v[:, 0], want, rtol=1e-3, atol=1e-3)
    assert stats_v.nfe.shape == (8,) and int(stats.nfe) > 0


def test_solve_ode_pytree_and_pid():
    """Augmented state (x, logp) with y' = -y, logp' = -d: both components exact; PID works too."""
    def f(t, y):
        x, logp = y
        return -x, -jnp.full_like(logp, x.shape[-1])

    y0 = (jnp.ones((4, 3)), jnp.zeros((4,)))
    for coeffs in [{}, dict(pcoeff=0.4, icoeff=0.3)]:
        solve = jax.jit(lambda y: samplers.solve_ode(f, y, 0.0, 2.0, rtol=1e-6, atol=1e-6, **coeffs))
        (x, logp), stats = solve(y0)
        np.testing.assert_allclose(x, np.exp(-2.0), rtol=1e-5)
        np.testing.assert_allclose(logp, -6.0, rtol=1e-5)
        assert int(stats.n_accepted) > 0 and float(stats.t_final) == 2.0


def test_max_steps_and_nan_rejection():
    y, stats = samplers.solve_ode(lambda t, y: -y, jnp.ones(3), 0.0, 5.0, rtol=1e-9, atol=1e-9, max_steps=3)
    assert int(stats.n_accepted) + int(stats.n_rejected) == 3 and float(stats.t_final) < 5.0
    # NaN beyond t = 1: steps crossing it are rejected and shrunk, so the solve stalls just short of it.
    def nan_after_1(t, y):
        return jnp.where(t > 1.0, jnp.nan, -y)

    y, stats = samplers.solve_ode(nan_after_1, jnp.ones(3), 0.0, 2.0, max_steps=100)
    assert bool(jnp.all(jnp.isfinite(y))) and 0.9 < float(stats.t_final) <= 1.0 and int(stats.n_rejected) > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rtol=0.0), "rtol must be > 0"),
        (dict(atol=-1.0), "atol must be > 0"),
        (dict(sigmas=jnp.array([SMAX, 0.0])), "at least 3 levels"),
        (dict(sigmas=jnp.array([0.001, SMIN, 0.0])), "strictly decreasing"),
    ],
)
def test_bad_input(x0, kwargs, match):
    kwargs = {"sigmas": SIGMAS, **kwargs}
    with pytest.raises(ValueError, match=match):
        samplers.pf_ode(gaussian_denoiser, x0, **kwargs)
