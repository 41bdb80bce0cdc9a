"""optimise_sigmas on a small ideal denoiser: grid invariants, held-out gain, input checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import schedules
from jaxdiff.denoisers import ideal_denoiser
from jaxdiff.samplers import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m_sde, heun
from jaxdiff.samplers.grids import optimise_sigmas, sample_error

SIGMA_MAX, N = 10.0, 5


@pytest.fixture(scope="module")
def _problem():
    with jax.enable_x64(True):
        data = jax.random.uniform(jax.random.key(0), (24, 4), jnp.float64, -1.0, 1.0)
        den = ideal_denoiser(data)
        x = SIGMA_MAX * jax.random.normal(jax.random.key(1), (2, 128, 4), jnp.float64)
        ref = jax.vmap(lambda x: heun(den, x, schedules.karras(200, 0.002, SIGMA_MAX, dtype=jnp.float64)))(x)
        init = schedules.exponential(N, 0.05, SIGMA_MAX, dtype=jnp.float64)
    return den, (x[0], ref[0]), (x[1], ref[1]), init


@pytest.fixture
def problem(_problem, x64):
    """(denoiser, train (x, ref), held-out (x, ref), initial grid): 24 points in 4-D, 128 draws each."""
    return _problem


@pytest.mark.parametrize("fix_sigma_min", [False, True])
def test_grid_stays_valid_and_lowers_heldout_error(problem, fix_sigma_min):
    den, (x, ref), (x_test, ref_test), init = problem
    sigmas, losses = optimise_sigmas(dpmpp_2m, den, x, ref, init, steps=30, lr=0.1,
                                     fix_sigma_min=fix_sigma_min, return_losses=True)
    s = np.asarray(sigmas)
    assert s.shape == init.shape and s.dtype == np.float64
    assert np.all(np.diff(s) < 0), s
    assert s[0] == init[0] and s[-1] == 0
    if fix_sigma_min:
        np.testing.assert_allclose(s[-2], init[-2], rtol=1e-12)
    assert not np.allclose(s, init)
    assert losses.shape == (30,) and np.all(np.isfinite(losses))
    assert losses.min() < 0.7 * losses[0], losses
    before = float(sample_error(dpmpp_2m(den, x_test, init), ref_test))
    after = float(sample_error(dpmpp_2m(den, x_test, sigmas), ref_test))
    assert after < 0.7 * before, (before, after)


def test_returns_the_best_iterate(problem):
    """With a huge learning rate the last iterate may be worse; the returned grid never is."""
    den, (x, ref), _, init = problem
    sigmas, losses = optimise_sigmas(dpmpp_2m, den, x, ref, init, steps=5, lr=3.0, return_losses=True)
    got = float(sample_error(dpmpp_2m(den, x, sigmas), ref))
    assert got <= losses[0] + 1e-12
    assert got <= losses.min() + 1e-12


def test_options_reach_the_sampler(problem):
    seen = []

    def sampler(denoiser, x, sigmas, *, scale):
        seen.append(scale)
        return dpmpp_2m(denoiser, x, sigmas) * scale

    den, (x, ref), _, init = problem
    optimise_sigmas(sampler, den, x, ref, init, steps=1, options={"scale": 1.0})
    assert seen and all(v == 1.0 for v in seen)


@pytest.mark.parametrize("kwargs, match", [
    ({"sigmas_init": [10.0, 1.0, 0.5]}, "sigmas_init"),  # no final 0
    ({"sigmas_init": [10.0, 2.0, 3.0, 0.0]}, "sigmas_init"),  # not decreasing
    ({"sigmas_init": [[10.0, 0.0]]}, "sigmas_init"),
    ({"sigmas_init": [10.0, 0.0]}, "sigmas_init"),  # nothing to optimise
    ({"sigmas_init": [10.0, 1.0, 0.0], "fix_sigma_min": True}, "sigmas_init"),
    ({"sigmas_init": [10.0, float("nan"), 0.0]}, "sigmas_init"),
    ({"steps": 0}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"lr": -1.0}, "lr"),
    ({"lr": float("inf")}, "lr"),
    ({"lr": True}, "lr"),
    ({"final_lr_fraction": 0.0}, "final_lr_fraction"),
    ({"options": [("order", 2)]}, "options"),
    ({"reference": np.zeros((3, 4))}, "reference"),
    ({"x_train": np.zeros(4)}, "x_train"),
    ({"x_train": np.zeros((2, 4), np.int32), "reference": np.zeros((2, 4))}, "x_train"),
    ({"sampler": None}, "sampler"),
    ({"denoiser": 3}, "denoiser"),
])
def test_bad_input_raises(problem, kwargs, match):
    den, (x, ref), _, init = problem
    args = {"sampler": dpmpp_2m, "denoiser": den, "x_train": x, "reference": ref, "sigmas_init": init}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        optimise_sigmas(args.pop("sampler"), args.pop("denoiser"), args.pop("x_train"), args.pop("reference"),
                        args.pop("sigmas_init"), **args)


def test_flat_loss_raises(problem):
    """At σ_min = 0.002 the ideal denoiser is saturated: each sample sits on a data point, zero gradient."""
    den, (x, ref), _, _ = problem
    with pytest.raises(ValueError, match="sigmas_init.*flat"):
        optimise_sigmas(dpmpp_2m, den, x, ref, schedules.karras(N, 0.002, SIGMA_MAX, dtype=jnp.float64), steps=1)


def test_non_differentiable_sampler_raises(problem):
    def sampler(denoiser, x, sigmas):
        return dpmpp_2m(denoiser, x, sigmas) + 0.0 * jnp.sum(jnp.sqrt(0.0 * sigmas))  # d/dσ: 0 · ∞

    den, (x, ref), _, init = problem
    with pytest.raises(ValueError, match="sampler"):
        optimise_sigmas(sampler, den, x, ref, init, steps=1)


@pytest.mark.parametrize("sampler", [dpmpp_2m_sde, dpmpp_3m_sde])
def test_eta_zero_sde_samplers_have_finite_grid_gradients(problem, sampler):
    """At eta = 0 the noise weight sqrt(1 - e^{-2 h eta}) is 0 for every grid: its gradient is 0, not NaN."""
    den, (x, ref), _, init = problem
    grad = jax.grad(lambda s: sample_error(sampler(den, x, s, eta=0.0, key=jax.random.key(0)), ref))(init)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
