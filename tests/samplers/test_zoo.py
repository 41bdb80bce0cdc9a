"""The k-diffusion-style zoo: convergence orders, Gaussian statistics, determinism, bad input."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules
from jaxdiff.data.digits import load_digits
from jaxdiff.denoisers import gaussian_denoiser, ideal_denoiser
from jaxdiff.samplers.ode import _lms_coeffs


# Convergence on the ideal denoiser of 64 digits (64-D, batch 32), float64. The grid is Karras
# σ 10 → 0.5: below σ ≈ 0.3 the posterior over the 64 images turns hard and the flow stiff, so
# fitted slopes need many more steps. The error is measured at σ_min (the state before the last
# step to 0, which every solver here takes as x = D(x; σ_min)), against Heun with 2000 steps.
SIGMA_MIN, SIGMA_MAX, NS = 0.5, 10.0, (16, 32, 64, 128)


def _at_sigma_min(name, denoiser, x, n):
    sampler = jax.jit(getattr(samplers, name), static_argnums=0, static_argnames="return_trajectory")
    _, traj = sampler(denoiser, x, schedules.karras(n, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float64), return_trajectory=True)
    return traj[-2]


@functools.lru_cache(maxsize=1)
def _digits_problem():
    images, _ = load_digits("train")
    denoiser = ideal_denoiser(jnp.asarray(images[:64].reshape(64, -1), jnp.float64))
    x = SIGMA_MAX * jax.random.normal(jax.random.key(0), (32, 64), jnp.float64)
    return denoiser, x, _at_sigma_min("heun", denoiser, x, 2000)


@pytest.mark.parametrize("name,order", [("euler", 1.0), ("heun", 2.0), ("dpmpp_2m", 2.0)])
def test_convergence_order_digits(x64, name, order):
    denoiser, x, ref = _digits_problem()
    errs = [float(jnp.sqrt(jnp.mean((_at_sigma_min(name, denoiser, x, n) - ref) ** 2))) for n in NS]
    slope = -np.polyfit(np.log(NS), np.log(errs), 1)[0]
    print(f"{name}: errors {errs}, slope {slope:.3f}")
    assert abs(slope - order) < 0.2, (name, errs, slope)


MEAN = jnp.array([1.0, -0.5])
COV = jnp.array([[1.0, 0.6], [0.6, 0.8]])

# Options for the registry-wide runs. Annealed Langevin and the Langevin corrector have their own
# statistics tests in test_score_sde: their step sizes (per-example norms) are biased in 2-D.
OPTIONS = {"edm": {"s_churn": 40.0}, "annealed_langevin": {"n_steps_each": 2, "step_lr": 1e-3}}
LANGEVIN = ("annealed_langevin", "predictor_corrector")
GAUSSIAN_EXTRA = [
    ("dpmpp_2m_sde", {"solver_type": "heun", "eta": 0.5}),
    ("ddim", {"eta": 0.5}),
    ("ddpm", {"variance": "fixed_large"}),
]


def _options(name):
    return OPTIONS.get(name, {})


@pytest.mark.parametrize(
    "name,options",
    [(n, _options(n)) for n in samplers.REGISTRY if n not in LANGEVIN] + GAUSSIAN_EXTRA,
    ids=str,
)
def test_gaussian_statistics(name, options):
    """Every registered sampler on the exact denoiser of N(MEAN, COV), from the exact start
    x ~ N(MEAN, COV + σ_max² I), 8000 samples, 200 steps: the sample mean / covariance match
    within Monte-Carlo tolerance (std ≈ 0.011 / 0.016)."""
    n, sigma_max = 8000, 80.0
    z = jax.random.normal(jax.random.key(1), (n, 2))
    x = MEAN + z @ jnp.linalg.cholesky(COV + sigma_max**2 * jnp.eye(2)).T
    sigmas = schedules.karras(200, 0.002, sigma_max)
    run = jax.jit(lambda x: samplers.get(name).fn(gaussian_denoiser(MEAN, cov=COV), x, sigmas, key=jax.random.key(2),
                                                  **options))
    out = run(x)
    np.testing.assert_allclose(out.mean(0), MEAN, atol=0.06)
    np.testing.assert_allclose(jnp.cov(out.T), COV, atol=0.08)


@pytest.fixture(scope="module")
def problem():
    denoiser = gaussian_denoiser(jnp.zeros((3,)), var=jnp.array([0.5, 1.0, 2.0]))
    x = 20.0 * jax.random.normal(jax.random.key(3), (8, 3))
    return denoiser, x, schedules.karras(10, 0.01, 20.0)


def test_edm_without_churn_is_heun(problem):
    denoiser, x, sigmas = problem
    out = samplers.edm(denoiser, x, sigmas, key=jax.random.key(0), s_churn=0.0)
    np.testing.assert_array_equal(out, samplers.heun(denoiser, x, sigmas))


@pytest.mark.parametrize("name", [n for n, s in samplers.REGISTRY.items() if not s.deterministic])
def test_stochastic_determinism(problem, name):
    denoiser, x, sigmas = problem
    opts = {"s_churn": 10.0} if name == "edm" else _options(name)
    run = jax.jit(lambda key: samplers.get(name).fn(denoiser, x, sigmas, key=key, **opts))
    a, b, c = run(jax.random.key(0)), run(jax.random.key(0)), run(jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - c).max()) > 1e-3


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde"])
def test_eta_zero_gives_ode_samplers(problem, name):
    """eta = 0 removes the noise: euler_ancestral is euler, the others are their ODE solvers."""
    denoiser, x, sigmas = problem
    a = getattr(samplers, name)(denoiser, x, sigmas, key=jax.random.key(0), eta=0.0)
    b = getattr(samplers, name)(denoiser, x, sigmas, key=jax.random.key(1), eta=0.0)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    if name == "euler_ancestral":
        np.testing.assert_allclose(a, samplers.euler(denoiser, x, sigmas), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(samplers.REGISTRY))
def test_protocol_nfe_trajectory_cond_jit_vmap(problem, name):
    """One signature for every registered sampler: conditioning passes through to the denoiser,
    the trajectory ends with the output, the denoiser is called exactly ``spec.nfe(sigmas)`` times
    (pf_ode: its measured count), and the sampler jits and vmaps."""
    denoiser, x, sigmas = problem
    spec = samplers.get(name)
    opts = _options(name)
    calls = []

    def counted(x, sigma, *, scale):
        jax.debug.callback(lambda: calls.append(1), ordered=True)
        return scale * denoiser(x, sigma)

    run = jax.jit(lambda x: spec.fn(counted, x, sigmas, key=jax.random.key(0), scale=1.0, return_trajectory=True,
                                    **({"return_stats": True} if name == "pf_ode" else {}), **opts))
    out, traj, *stats = run(x)
    jax.effects_barrier()
    expected = spec.nfe(sigmas, **opts)
    assert len(calls) == (int(stats[0].nfe) if expected is None else expected), (name, len(calls), expected)
    assert traj.shape == ((2,) if name == "pf_ode" else (sigmas.shape[0] - 1,)) + x.shape
    np.testing.assert_array_equal(traj[-1], out)
    assert bool(jnp.all(jnp.isfinite(out)))
    batched = jax.vmap(lambda x: spec.fn(denoiser, x, sigmas, key=jax.random.key(0), **opts))(x.reshape(2, 4, 3))
    assert batched.shape == (2, 4, 3) and bool(jnp.all(jnp.isfinite(batched)))


def test_lms_coefficients(x64):
    sigmas = schedules.karras(12, 0.01, 20.0, dtype=jnp.float64)
    c = _lms_coeffs(sigmas, 4)
    np.testing.assert_allclose(c.sum(1), jnp.diff(sigmas), rtol=1e-12)  # the basis sums to 1
    np.testing.assert_array_equal(c[:3, 3], 0)  # the order ramps up
    np.testing.assert_allclose(c[0, 0], sigmas[1] - sigmas[0], rtol=1e-12)
    # exact for cubics: ∑_j c_j p(σ_{i-j}) = ∫ p over [σ_i, σ_{i+1}] for p(τ) = τ³
    i = 7
    nodes = sigmas[i - jnp.arange(4)]
    np.testing.assert_allclose(c[i] @ nodes**3, (sigmas[i + 1] ** 4 - sigmas[i] ** 4) / 4, rtol=1e-10)


def test_lms_order_one_is_euler(problem):
    denoiser, x, sigmas = problem
    expect = samplers.euler(denoiser, x, sigmas)
    np.testing.assert_allclose(samplers.lms(denoiser, x, sigmas, order=1), expect, rtol=1e-6)


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"])
@pytest.mark.parametrize("arg", ["eta", "s_noise"])
def test_negative_noise_options(problem, name, arg):
    denoiser, x, sigmas = problem
    with pytest.raises(ValueError, match=arg):
        getattr(samplers, name)(denoiser, x, sigmas, key=jax.random.key(0), **{arg: -0.1})


@pytest.mark.parametrize(
    "name,options,match",
    [
        ("edm", {"s_churn": -1.0}, "s_churn"),
        ("edm", {"s_noise": -1.0}, "s_noise"),
        ("dpmpp_2m_sde", {"solver_type": "rk4"}, "solver_type"),
        ("dpmpp_sde", {"r": 0.0}, "r must"),
    ],
)
def test_bad_options(problem, name, options, match):
    denoiser, x, sigmas = problem
    with pytest.raises(ValueError, match=match):
        getattr(samplers, name)(denoiser, x, sigmas, key=jax.random.key(0), **options)


@pytest.mark.parametrize("order", [0, 2.0, True])
def test_bad_lms_order(problem, order):
    denoiser, x, sigmas = problem
    with pytest.raises(ValueError, match="order"):
        samplers.lms(denoiser, x, sigmas, order=order)


@pytest.mark.parametrize("name", [n for n, s in samplers.REGISTRY.items() if not s.deterministic])
def test_missing_key(problem, name):
    denoiser, x, sigmas = problem
    with pytest.raises(ValueError, match="key is required"):
        samplers.get(name).fn(denoiser, x, sigmas, **_options(name))


@pytest.mark.parametrize("name", list(samplers.REGISTRY))
def test_nan_from_denoiser(problem, name):
    _, x, sigmas = problem
    with pytest.raises(ValueError, match="non-finite"):
        samplers.get(name).fn(lambda x, s: x * jnp.nan, x, sigmas, key=jax.random.key(0), **_options(name))


@pytest.mark.parametrize("name", list(samplers.REGISTRY))
def test_bad_sigmas_and_shape(problem, name):
    denoiser, x, sigmas = problem
    run = functools.partial(samplers.get(name).fn, key=jax.random.key(0), **_options(name))
    with pytest.raises(ValueError, match="end with 0"):
        run(denoiser, x, sigmas[:-1])
    with pytest.raises(ValueError, match="denoiser returned shape"):
        run(lambda x, s: x[:, :2], x, sigmas)


@pytest.mark.parametrize("name", [n for n, s in samplers.REGISTRY.items() if not s.deterministic])
def test_two_steps_from_80_stay_finite_when_compiled(problem, name):
    """Karras 80 → 0.002 → 0 in float32: an ancestral step's σ_up rounds to σ_next, and compiled, the
    difference of their squares can round below 0 (it once made euler_ancestral NaN)."""
    denoiser, x, _ = problem
    sigmas = schedules.karras(2, 0.002, 80.0)
    run = jax.jit(lambda x, key: samplers.get(name).fn(denoiser, x, sigmas, key=key, **_options(name)))
    assert np.isfinite(np.asarray(run(4.0 * x, jax.random.key(0)))).all()


def test_registry_lookup_and_options():
    assert samplers.get("heun").fn is samplers.heun
    assert samplers.get("heun").nfe(schedules.karras(18, 0.002, 80.0)) == 35
    assert samplers.get("predictor_corrector").nfe(jnp.zeros(11), n_corrector=2) == 30
    with pytest.raises(ValueError, match="unknown sampler 'hune'; choose one of annealed_langevin, ddim"):
        samplers.get("hune")
    with pytest.raises(ValueError, match="sampler 'heun' takes no option 's_churn'; its options: none"):
        samplers.check_options("heun", {"s_churn": 1.0})
    samplers.check_options("edm", {"s_churn": 1.0, "s_noise": 1.0})
