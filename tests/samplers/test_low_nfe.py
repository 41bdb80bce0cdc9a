"""iPNDM, DEIS, Restart and learned step corrections: coefficients against the papers' formulas,
convergence orders, exactness, noise levels, learned corrections, bad input."""

from __future__ import annotations

import fractions

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from jaxdiff import samplers, schedules
from jaxdiff.denoisers import ideal_denoiser
from jaxdiff.samplers import StepCorrection, deis, ipndm, learn_correction, restart, unipc
from jaxdiff.samplers.grids import sample_error
from jaxdiff.samplers.multistep import (
    AB_WEIGHTS, VP_BETA_D, VP_BETA_MIN, deis_coeffs, ipndm_coeffs, vp_time,
)
from jaxdiff.samplers.ode import _lms_coeffs

# -- coefficients ----------------------------------------------------------------------------------


def _adams_bashforth(m):
    """Exact equal-step Adams–Bashforth weights of order m: b_j = ∫_0^1 ℓ_j(s) ds, nodes s = 0, -1, ..."""
    out = []
    for j in range(m):
        poly = [fractions.Fraction(1)]  # coefficients, lowest degree first
        for k in range(m):
            if k == j:
                continue
            # multiply by (s + k) / (k - j)
            shifted = [fractions.Fraction(0)] + poly
            scaled = [c * k for c in poly] + [fractions.Fraction(0)]
            poly = [(a + b) / (k - j) for a, b in zip(shifted, scaled)]
        out.append(sum(c / (p + 1) for p, c in enumerate(poly)))
    return out


def test_ipndm_weights_are_adams_bashforth():
    """The transcribed table (DEIS paper's iPNDM: 55, -59, 37, -9 over 24, ...) is the exact AB family."""
    for m, row in enumerate(AB_WEIGHTS, start=1):
        np.testing.assert_array_equal(np.asarray(row), np.asarray([float(b) for b in _adams_bashforth(m)]))
    assert AB_WEIGHTS[3] == (55 / 24, -59 / 24, 37 / 24, -9 / 24)


def test_ipndm_coeffs_warm_start(x64):
    s = schedules.karras(6, 0.1, 10.0, dtype=jnp.float64)
    c = np.asarray(ipndm_coeffs(s, 4))
    h = np.diff(np.asarray(s))
    for i, m in enumerate((1, 2, 3, 4, 4, 4)):
        np.testing.assert_allclose(c[i, :m], h[i] * np.asarray(AB_WEIGHTS[m - 1]), rtol=1e-15)
        np.testing.assert_array_equal(c[i, m:], 0)


def _sigma_of_t(t):
    return np.sqrt(np.expm1(VP_BETA_MIN * t + 0.5 * VP_BETA_D * t**2))


def _dsigma_dt(t):
    return np.exp(VP_BETA_MIN * t + 0.5 * VP_BETA_D * t**2) * (VP_BETA_MIN + VP_BETA_D * t) / (2 * _sigma_of_t(t))


def _dsigma_dt_times_sqrt_t(t):
    """σ'(t) √t, finite at t = 0 (σ(t)² / t → β_min)."""
    q = VP_BETA_MIN * t + 0.5 * VP_BETA_D * t**2
    ratio = np.expm1(q) / t if t > 0 else VP_BETA_MIN
    return np.exp(q) * (VP_BETA_MIN + VP_BETA_D * t) / (2 * np.sqrt(ratio))


@pytest.mark.parametrize("grid", ["karras", "log-uniform"])
def test_deis_coeffs_match_quadrature(x64, grid):
    """DEIS-tAB weights ∫ σ'(t) ℓ_j(t) dt against scipy's adaptive quadrature in t (the last interval,
    to t = 0 where σ' ~ t^(-1/2), with QUADPACK's algebraic weight), float64, ≤ 1e-12 of the step."""
    s = (schedules.karras(8, 0.002, 80.0, dtype=jnp.float64) if grid == "karras"
         else schedules.exponential(5, 0.2, 80.0, dtype=jnp.float64))
    c = np.asarray(deis_coeffs(s, 4))
    t = np.asarray(vp_time(s))
    np.testing.assert_allclose(_sigma_of_t(t), np.asarray(s), rtol=1e-13, atol=1e-300)
    for i in range(len(s) - 1):
        m = min(4, i + 1)
        nodes = t[i - np.arange(m)]
        for j in range(m):
            others = np.delete(nodes, j)

            def basis(tt):
                return np.prod([(tt - o) / (nodes[j] - o) for o in others]) if m > 1 else 1.0

            if t[i + 1] == 0:  # ∫_0^{t_i} [σ'(t) √t ℓ_j(t)] t^(-1/2) dt, with the sign of the direction
                val = -integrate.quad(lambda tt: _dsigma_dt_times_sqrt_t(tt) * basis(tt), 0, t[i], weight="alg",
                                      wvar=(-0.5, 0), epsabs=0, epsrel=1e-13, limit=200)[0]
            else:
                val = integrate.quad(lambda tt: _dsigma_dt(tt) * basis(tt), t[i], t[i + 1], epsabs=0,
                                     epsrel=1e-13, limit=200)[0]
            assert abs(val - c[i, j]) <= 1e-12 * abs(s[i + 1] - s[i]), (i, j, val, c[i, j])
        np.testing.assert_array_equal(c[i, m:], 0)
    np.testing.assert_allclose(c.sum(1), np.diff(np.asarray(s)), rtol=1e-14)  # the basis sums to one


def test_deis_order_one_is_euler_and_lms_is_sigma_lagrange(x64):
    """tAB with one point is Euler (DDIM); the Lagrange basis in σ instead of t is ``lms`` (DEIS's ρAB)."""
    s = schedules.karras(7, 0.05, 20.0, dtype=jnp.float64)
    np.testing.assert_allclose(deis_coeffs(s, 1)[:, 0], jnp.diff(s), rtol=1e-15)
    assert not np.allclose(deis_coeffs(s, 3), _lms_coeffs(s, 3), rtol=1e-3)


@pytest.mark.parametrize("sampler", [ipndm, deis])
def test_gradient_in_the_grid_is_finite(x64, sampler):
    """Grids and corrections are fitted through the weights: every level's gradient is finite and
    nonzero, the warm-start rows (fewer points than the order) included."""
    x0 = 10.0 * jax.random.normal(jax.random.key(10), (4, 3), jnp.float64)
    sig = schedules.karras(5, 0.1, 10.0, dtype=jnp.float64)
    grad = np.asarray(jax.grad(lambda s: jnp.sum(sampler(_gaussian, x0, s, order=4) ** 2))(sig))
    assert np.all(np.isfinite(grad)) and np.all(grad[1:-1] != 0), grad


# -- exactness and convergence ---------------------------------------------------------------------

S, S_END, S_TOP = 0.7, 0.05, 80.0  # Gaussian data N(0, S²): x(σ) = x(σ0)·√(S²+σ²)/√(S²+σ0²)


def _gaussian(x, sigma):
    return S**2 / (S**2 + sigma**2) * x


@pytest.mark.parametrize("sampler", [ipndm, deis])
def test_constant_denoiser_is_exact(x64, sampler):
    """D ≡ c: the flow is a straight line in σ, ε is constant along it, every Adams step is exact
    (each row of weights sums to σ_{i+1} - σ_i), and the last step lands on c."""
    c = jnp.asarray([0.3, -0.2, 0.1], jnp.float64)
    x0 = 20.0 * jax.random.normal(jax.random.key(0), (8, 3), jnp.float64)
    sig = schedules.karras(7, 0.05, 20.0, dtype=jnp.float64)
    out, traj = sampler(lambda x, s: jnp.broadcast_to(c, x.shape), x0, sig, order=4, return_trajectory=True)
    exact = c + (sig[1:, None, None] / sig[0]) * (x0 - c)
    np.testing.assert_allclose(traj, exact, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, jnp.broadcast_to(c, x0.shape), atol=1e-12)


def test_deis_exact_for_polynomial_eps_in_t(x64):
    """ε = p(t), a polynomial of degree order-1 in VP time: every step from the order-th on is exact."""
    sig = schedules.karras(8, 0.05, 20.0, dtype=jnp.float64)
    coef = (0.4, -1.3, 2.0, 0.7)

    def den(x, s):
        t = vp_time(s)
        return x - s * sum(a * t**k for k, a in enumerate(coef))

    _, traj = deis(den, jnp.zeros((1, 1), jnp.float64), sig, order=4, return_trajectory=True)
    t = np.asarray(vp_time(sig))
    x = np.concatenate([[0.0], np.asarray(traj)[:, 0, 0]])
    for i in range(3, len(sig) - 2):
        want = integrate.quad(lambda tt: _dsigma_dt(tt) * sum(a * tt**k for k, a in enumerate(coef)), t[i],
                              t[i + 1], epsabs=0, epsrel=1e-13)[0]
        np.testing.assert_allclose(x[i + 1] - x[i], want, rtol=1e-11)


def _smooth_quadrature(n, order):
    """ε = w⁴ e^w, w = 1.5 - σ, on an equal-step grid 1.5 → 0.5 (then 0): the error at σ = 0.5."""
    def g(s):  # flat at the start: the warm-up steps are exact to O(h⁵)
        return (1.5 - s) ** 4 * jnp.exp(1.5 - s)

    grid = jnp.concatenate([jnp.linspace(1.5, 0.5, n + 1), jnp.zeros(1)])
    run = jax.jit(lambda x: ipndm(lambda x, s: x - s * g(s), x, grid, order=order, return_trajectory=True))
    _, traj = run(jnp.zeros((1, 1), jnp.float64))
    w = 1.0
    exact = -(np.exp(w) * (w**4 - 4 * w**3 + 12 * w**2 - 24 * w + 24) - 24)
    return abs(float(traj[-2, 0, 0]) - exact)


NS = (16, 32, 64)


def _slope(errs):
    return -np.polyfit(np.log(NS), np.log(errs), 1)[0]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ipndm_convergence_order_equal_steps(x64, order):
    """iPNDM-p is p-th order Adams–Bashforth on equal steps, with its lower-order warm start."""
    errs = [_smooth_quadrature(n, order) for n in NS]
    assert abs(_slope(errs) - order) < 0.15, (order, errs)


def _gaussian_error(sampler, n, order):
    x0 = S_TOP * jax.random.normal(jax.random.key(0), (16, 3), jnp.float64)
    exact = x0 * np.sqrt(S**2 + S_END**2) / np.sqrt(S**2 + S_TOP**2)
    sig = schedules.karras(n, S_END, S_TOP, dtype=jnp.float64)
    _, traj = jax.jit(lambda x: sampler(_gaussian, x, sig, order=order, return_trajectory=True))(x0)
    return float(jnp.abs(traj[-2] - exact).max())


@pytest.mark.parametrize("order", [2, 3, 4])
def test_deis_convergence_order_karras(x64, order):
    """DEIS-tAB keeps its order on the (unequal) Karras grid: Gaussian data, σ 80 → 0.05 (order 1 is
    Euler: ``test_deis_order_one_is_euler_and_lms_is_sigma_lagrange``)."""
    errs = [_gaussian_error(deis, n, order) for n in NS]
    assert abs(_slope(errs) - order) < 0.35, (order, errs)


def test_ipndm_second_order_on_karras(x64):
    """Fixed weights on unequal steps: iPNDM-3 and -4 fall to second order on the Karras grid."""
    for order in (3, 4):
        errs = [_gaussian_error(ipndm, n, order) for n in NS]
        assert abs(_slope(errs) - 2) < 0.3, (order, errs)


# -- AFS, determinism, NFE -------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [ipndm, deis])
def test_afs_saves_one_call_and_uses_the_analytic_step(sampler):
    calls = []

    def counted(x, sigma):
        jax.debug.callback(lambda: calls.append(1), ordered=True)
        return _gaussian(x, sigma)

    x0 = 10.0 * jax.random.normal(jax.random.key(1), (4, 3))
    sig = schedules.karras(6, 0.05, 10.0)
    _, traj = jax.jit(lambda x: sampler(counted, x, sig, order=3, afs=True, return_trajectory=True))(x0)
    jax.effects_barrier()
    assert len(calls) == 5 == samplers.get(sampler.__name__).nfe(sig, afs=True)
    np.testing.assert_allclose(traj[0], x0 + (sig[1] - sig[0]) * x0 / jnp.sqrt(1 + sig[0] ** 2), rtol=1e-6)


@pytest.mark.parametrize("sampler", [ipndm, deis])
def test_deterministic_and_jit_matches_eager(sampler):
    x0 = 10.0 * jax.random.normal(jax.random.key(2), (4, 3))
    sig = schedules.karras(6, 0.05, 10.0)
    a = sampler(_gaussian, x0, sig, key=jax.random.key(0))
    b = sampler(_gaussian, x0, sig, key=jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(jax.jit(lambda x: sampler(_gaussian, x, sig))(x0), a, rtol=1e-5, atol=1e-5)


# -- Restart ----------------------------------------------------------------------------------------


def test_restart_noise_levels():
    """Data at 0 (D ≡ 0): the flow is x ∝ σ, so a restart maps x_j to (x_j + √(t_max² - σ_j²) z) σ_j / t_max
    with z the injected draw, at the grid level σ_j nearest t_min."""
    sig = schedules.karras(10, 0.01, 20.0)
    x0 = 20.0 * jax.random.normal(jax.random.key(3), (4, 3))
    z = jnp.asarray([0.5, -1.0, 2.0])
    seen = []

    def noise(key, step, level, level_next, shape, dtype):
        jax.debug.callback(lambda *v: seen.append(tuple(float(a) for a in v)), step, level, level_next, ordered=True)
        return jnp.broadcast_to(z, shape).astype(dtype)

    _, traj = restart(lambda x, s: jnp.zeros_like(x), x0, sig, noise=noise, t_min=0.06, t_max=0.3, restarts=1,
                      return_trajectory=True)
    jax.effects_barrier()
    j = int(np.argmin(np.abs(np.asarray(sig[1:-1]) - 0.06))) + 1
    level = float(sig[j])
    assert seen == [(0, pytest.approx(0.3), pytest.approx(level))]
    x_j = x0 * level / float(sig[0])
    np.testing.assert_allclose(traj[j - 1], (x_j + np.sqrt(0.3**2 - level**2) * z) * level / 0.3, rtol=1e-5)


def test_restart_keeps_the_marginal():
    """Data at 0: x_σ ~ N(0, σ²). Two restarts keep the state at σ_j distributed as N(0, σ_j²)."""
    sig = schedules.karras(10, 0.01, 20.0)
    x0 = 20.0 * jax.random.normal(jax.random.key(4), (20000, 1))
    _, traj = jax.jit(lambda x: restart(lambda x, s: jnp.zeros_like(x), x, sig, key=jax.random.key(5), t_min=0.5,
                                        t_max=2.0, return_trajectory=True))(x0)
    j = int(np.argmin(np.abs(np.asarray(sig[1:-1]) - 0.5))) + 1
    np.testing.assert_allclose(float(jnp.std(traj[j - 1])), float(sig[j]), rtol=0.02)


@pytest.mark.parametrize("options,match", [
    ({"t_max": 0.01}, "t_max must exceed"),
    ({"restarts": 0}, "restarts"),
    ({"restart_steps": 1.5}, "restart_steps"),
    ({"t_min": -1.0}, "t_min"),
    ({"s_noise": -1.0}, "s_noise"),
])
def test_restart_bad_options(options, match):
    sig = schedules.karras(10, 0.01, 20.0)
    with pytest.raises(ValueError, match=match):
        restart(_gaussian, jnp.ones((2, 3)), sig, key=jax.random.key(0), **options)


def test_restart_needs_concrete_sigmas():
    with pytest.raises(ValueError, match="concrete sigmas"):
        jax.jit(lambda s: restart(_gaussian, jnp.ones((2, 3)), s, key=jax.random.key(0)))(schedules.karras(10, 0.01, 20.0))


# -- learned corrections ---------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [ipndm, deis])
def test_identity_correction_changes_nothing(sampler):
    x0 = 10.0 * jax.random.normal(jax.random.key(6), (4, 3))
    sig = schedules.karras(6, 0.05, 10.0)
    for order in (1, 3):
        np.testing.assert_array_equal(
            sampler(_gaussian, x0, sig, order=3, correction=StepCorrection.identity(sig, order)),
            sampler(_gaussian, x0, sig, order=3))


def _zero_denoiser_recording_levels():
    """(levels, D): D(x, σ) = 0 appends each σ it is called at to the list ``levels``."""
    levels = []

    def recorded(x, sigma):
        jax.debug.callback(lambda s: levels.append(float(s)), sigma, ordered=True)
        return jnp.zeros_like(x)

    return levels, recorded


def test_correction_scales_time_and_direction():
    """time_scale moves the level the denoiser sees; dir_scale scales the Adams weights; NFE unchanged."""
    levels, recorded = _zero_denoiser_recording_levels()
    sig = schedules.karras(4, 0.1, 10.0)
    ts = jnp.asarray([1.0, 0.5, 2.0, 1.0])
    ds = jnp.asarray([[1.0], [0.5], [1.0], [1.0]])
    x0 = jnp.ones((1, 1))
    _, traj = ipndm(recorded, x0, sig, order=1, correction=StepCorrection(sig, ts, ds), return_trajectory=True)
    jax.effects_barrier()
    np.testing.assert_allclose(levels, np.asarray(sig[:-1] * ts), rtol=1e-6)
    # D ≡ 0: ε = x/σ; step 1 moves by half its Euler step
    x1 = 1.0 + (sig[1] - sig[0]) / sig[0]
    np.testing.assert_allclose(traj[1, 0, 0], x1 + 0.5 * (sig[2] - sig[1]) * x1 / sig[1], rtol=1e-6)


def test_unipc_correction_scales_time_and_both_updates():
    """UniPC: time_scale moves the level the denoiser sees; dir_scale scales the step's predicted and
    corrected moves; the identity changes nothing."""
    levels, recorded = _zero_denoiser_recording_levels()
    sig = schedules.karras(4, 0.1, 10.0)
    ts = jnp.asarray([1.0, 0.5, 2.0, 1.0])
    ds = jnp.asarray([0.9, 0.5, 1.2, 0.7])
    x0 = jnp.ones((1, 1))
    out = unipc(recorded, x0, sig, order=3, correction=StepCorrection(sig, ts, ds[:, None]))
    jax.effects_barrier()
    np.testing.assert_allclose(levels, np.asarray(sig[:-1] * ts), rtol=1e-6)
    # D ≡ 0: every UniPC move is x -> (σ_next / σ) x, and to 0 on the last step
    ratios = np.append(np.asarray(sig[1:-1] / sig[:-2]), 0.0)
    np.testing.assert_allclose(out[0, 0], np.prod(1 + np.asarray(ds) * (ratios - 1)), rtol=1e-6)
    x0 = 10.0 * jax.random.normal(jax.random.key(6), (4, 3))
    sig = schedules.karras(6, 0.05, 10.0)
    np.testing.assert_allclose(unipc(_gaussian, x0, sig, correction=StepCorrection.identity(sig)),
                               unipc(_gaussian, x0, sig), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="one direction scale per step"):
        unipc(_gaussian, x0, sig, correction=StepCorrection.identity(sig, 3))


def test_correction_is_a_pytree_through_jit():
    sig = schedules.karras(6, 0.05, 10.0)
    corr = StepCorrection(sig, jnp.full(6, 0.9), jnp.full((6, 3), 1.1))
    x0 = 10.0 * jax.random.normal(jax.random.key(7), (4, 3))
    f = jax.jit(lambda x, c: deis(_gaussian, x, c.sigmas, correction=c))
    np.testing.assert_allclose(f(x0, corr), deis(_gaussian, x0, sig, correction=corr), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sigmas,order,match", [
    (schedules.karras(5, 0.05, 20.0), 3, "learned on σ"),  # another range
    (schedules.karras(6, 0.05, 10.0), 3, "grid of 5 steps"),
    (schedules.karras(5, 0.05, 10.0), 2, "learned for order 3"),
])
def test_correction_on_other_levels_raises(sigmas, order, match):
    corr = StepCorrection(schedules.karras(5, 0.05, 10.0), jnp.ones(5), jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=match):
        ipndm(_gaussian, jnp.ones((2, 3)), sigmas, order=order, correction=corr)


def test_correction_must_be_a_step_correction():
    with pytest.raises(ValueError, match="StepCorrection"):
        deis(_gaussian, jnp.ones((2, 3)), schedules.karras(5, 0.05, 10.0), correction=jnp.ones(5))


@pytest.fixture(scope="module")
def _learning_problem():
    with jax.enable_x64(True):
        data = jax.random.uniform(jax.random.key(8), (24, 4), jnp.float64, -1.0, 1.0)
        den = ideal_denoiser(data)
        x = 10.0 * jax.random.normal(jax.random.key(9), (2, 128, 4), jnp.float64)
        ref = jax.vmap(lambda x: samplers.heun(den, x, schedules.karras(200, 0.002, 10.0, dtype=jnp.float64)))(x)
        init = schedules.exponential(4, 0.1, 10.0, dtype=jnp.float64)
    return den, (x[0], ref[0]), (x[1], ref[1]), init


@pytest.mark.parametrize("sampler,per_weight", [(ipndm, False), (ipndm, True), (unipc, False)])
def test_learned_correction_lowers_heldout_error(_learning_problem, x64, sampler, per_weight):
    """Fitted on training draws, measured on held-out ones: below the same sampler on the initial grid."""
    den, (x, ref), (x_test, ref_test), init = _learning_problem
    corr, losses = learn_correction(sampler, den, x, ref, init, steps=40, lr=0.1, options={"order": 3},
                                    per_weight=per_weight, return_losses=True)
    s = np.asarray(corr.sigmas)
    assert s.shape == init.shape and np.all(np.diff(s) < 0) and s[0] == init[0] and s[-1] == 0
    assert corr.dir_scale.shape == (4, 3 if per_weight else 1) and corr.time_scale.shape == (4,)
    assert losses.min() < 0.8 * losses[0], losses
    before = float(sample_error(sampler(den, x_test, init, order=3), ref_test))
    after = float(sample_error(sampler(den, x_test, corr.sigmas, order=3, correction=corr), ref_test))
    assert after < (0.9 if sampler is unipc else 0.8) * before, (before, after)  # UniPC starts closer


def test_learn_correction_bad_input(_learning_problem, x64):
    den, (x, ref), _, init = _learning_problem
    with pytest.raises(ValueError, match="correction= option"):
        learn_correction(samplers.dpmpp_2m, den, x, ref, init, steps=1)
    with pytest.raises(ValueError, match="options must not hold 'correction'"):
        learn_correction(ipndm, den, x, ref, init, steps=1, options={"correction": None})
    with pytest.raises(ValueError, match="sigmas_init"):
        learn_correction(ipndm, den, x, ref, init[:-1], steps=1)


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [ipndm, deis])
def test_too_few_steps_for_the_order(sampler):
    with pytest.raises(ValueError, match="order=4 needs a grid of at least 4 steps.*got 3"):
        sampler(_gaussian, jnp.ones((2, 3)), schedules.karras(3, 0.05, 10.0), order=4)
    with pytest.raises(ValueError, match="afs=True needs at least 2 steps"):
        sampler(_gaussian, jnp.ones((2, 3)), jnp.asarray([10.0, 0.0]), order=1, afs=True)


@pytest.mark.parametrize("sampler", [ipndm, deis])
@pytest.mark.parametrize("options,match", [({"order": 0}, "order"), ({"order": 5}, "order"), ({"order": True}, "order"),
                                           ({"afs": 1}, "afs")])
def test_bad_options(sampler, options, match):
    with pytest.raises(ValueError, match=match):
        sampler(_gaussian, jnp.ones((2, 3)), schedules.karras(6, 0.05, 10.0), **options)


def test_registry_nfe_rules():
    sig = schedules.karras(18, 0.002, 80.0)
    assert samplers.get("ipndm").nfe(sig) == 18 and samplers.get("deis").nfe(sig, afs=True) == 17
    assert samplers.get("restart").nfe(sig) == 35 + 8 and samplers.get("restart").nfe(sig, restarts=1) == 39
    assert not samplers.get("restart").deterministic and samplers.get("ipndm").deterministic
