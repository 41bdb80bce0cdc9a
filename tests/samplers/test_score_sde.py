"""Score-SDE samplers and annealed Langevin on Gaussian data y ~ N(M, S² I) with the exact denoiser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules, sdeint
from jaxdiff.sde import EDMSDE, VESDE, VPSDE, SubVPSDE

M, S = 0.3, 0.7
SHAPE = (4096, 2)


def gaussian_denoiser(x, sigma):
    sigma = jnp.reshape(sigma, (-1,) + (1,) * (x.ndim - 1))
    return M + S**2 / (S**2 + sigma**2) * (x - M)


def grid(sde, n):
    """score_sde's time grid from T to eps, as noise levels, then the final 0: (n + 2,)."""
    if isinstance(sde, EDMSDE):  # t = sigma: a geometric grid, as uniform steps in sigma starve small sigma
        ts = jnp.geomspace(sde.T, sde.eps, n + 1)
    else:
        ts = jnp.linspace(sde.T, sde.eps, n + 1)
    return jnp.concatenate([sde.sigma(ts), jnp.zeros(1)])


def run(sampler, sde, n, shape=SHAPE, **kw):
    sigmas = grid(sde, n)
    x = sde.prior_sample(jax.random.key(0), shape) / sde.scale(sde.T)  # in the EDM variable at sigmas[0]
    return jax.jit(lambda x: sampler(gaussian_denoiser, x, sigmas, process=sde, key=jax.random.key(1), **kw))(x)


def var_error(out):
    np.testing.assert_allclose(out.mean(), M, atol=0.03)
    return abs(float(out.var()) / S**2 - 1)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()], ids=lambda s: type(s).__name__)
def test_euler_maruyama(sde):
    assert var_error(run(samplers.euler_maruyama, sde, 500)) < 0.05


def test_reverse_diffusion_vp():
    assert var_error(run(samplers.reverse_diffusion, VPSDE(), 500)) < 0.05


# Per-example norms need a large dimension: in d=64 the step's dependence on ||x - mean||
# inflates the stationary variance by 9 % at snr=0.16, in d=1024 by 3 % (ULA's own bias 2.6 %).
PC_SHAPE = (256, 1024)


def test_predictor_corrector_vp():
    err = var_error(run(samplers.predictor_corrector, VPSDE(), 100, PC_SHAPE, snr=0.16, n_corrector=1))
    assert err < 0.04, err


def test_corrector_helps_coarse_ve():
    # 20 reverse-diffusion steps: variance 5.7 % too high alone, 2.3 % with one corrector step each.
    alone = var_error(run(samplers.reverse_diffusion, VESDE(), 20, PC_SHAPE))
    pc = var_error(run(samplers.predictor_corrector, VESDE(), 20, PC_SHAPE, n_corrector=1,
                       predictor="reverse_diffusion"))
    assert pc < 0.04 and pc < alone, (pc, alone)


def test_annealed_langevin():
    sigmas = jnp.concatenate([jnp.geomspace(10.0, 0.1, 20), jnp.zeros(1)])
    x = 10.0 * jax.random.normal(jax.random.key(0), SHAPE)
    fn = jax.jit(lambda x: samplers.annealed_langevin(gaussian_denoiser, x, sigmas, key=jax.random.key(1),
                                                      n_steps_each=50, step_lr=1e-3))
    assert var_error(fn(x)) < 0.05


def test_bad_input():
    sde = VPSDE()
    x = jnp.zeros((2, 3))
    key = jax.random.key(0)
    sigmas = grid(sde, 4)
    with pytest.raises(ValueError, match="strictly decreasing"):
        samplers.euler_maruyama(gaussian_denoiser, x, jnp.array([0.5, 1.0, 0.0]), process=sde, key=key)
    with pytest.raises(ValueError, match="sigmas must lie in the process's range"):
        samplers.euler_maruyama(gaussian_denoiser, x, schedules.karras(4, 0.01, 500.0), process=sde, key=key)
    with pytest.raises(ValueError, match="snr must be > 0"):
        samplers.predictor_corrector(gaussian_denoiser, x, sigmas, process=sde, key=key, snr=0.0)
    with pytest.raises(ValueError, match="predictor must be"):
        samplers.predictor_corrector(gaussian_denoiser, x, sigmas, process=sde, key=key, predictor="x")
    with pytest.raises(ValueError, match="denoiser returned shape"):
        samplers.euler_maruyama(lambda x, s: x[:, :1], x, sigmas, process=sde, key=key)
    with pytest.raises(ValueError, match="step_lr must be > 0"):
        samplers.annealed_langevin(gaussian_denoiser, x, schedules.karras(4, 0.01, 1.0), key=key, step_lr=0.0)


def test_reverse_sde_matches_the_gaussian_target():
    out = run(samplers.reverse_sde, VPSDE(), 200, solver=sdeint.sra1)
    assert var_error(out) < 0.03


def test_reverse_sde_strong_orders_on_one_brownian_tree(x64):
    # Additive noise: Euler–Maruyama has strong order 1, SRA1 1.5, against a fine SRA1 solve on
    # the same virtual Brownian tree (queried at every resolution).
    sde = VPSDE()
    x = sde.prior_sample(jax.random.key(0), (256, 2), jnp.float64) / sde.scale(sde.T)
    tree = sdeint.VirtualBrownianTree(-sde.T, 0.0, jax.random.key(3), shape=x.shape, depth=10, levy_area=True)

    def solve(n, solver):
        sigmas = jnp.concatenate([sde.sigma(jnp.linspace(sde.T, sde.eps, n)), jnp.zeros(1, jnp.float64)])
        return samplers.reverse_sde(gaussian_denoiser, x, sigmas, process=sde, bm=tree, solver=solver, denoise=False)

    ref = solve(1024, sdeint.sra1)
    steps = np.array([8, 16, 32, 64])
    for solver, order in ((sdeint.euler_maruyama, 1.0), (sdeint.sra1, 1.5)):
        errs = [float(jnp.linalg.norm(solve(n, solver) - ref, axis=-1).mean()) for n in steps]
        slope = np.polyfit(np.log(1.0 / steps), np.log(errs), 1)[0]
        assert abs(slope - order) < 0.2, (solver.name, slope, errs)


def test_reverse_sde_bad_input():
    x = jnp.zeros((2, 2))
    sigmas = grid(VPSDE(), 4)
    with pytest.raises(ValueError, match="key is required"):
        samplers.reverse_sde(gaussian_denoiser, x, sigmas, process=VPSDE())
    with pytest.raises(ValueError, match="strictly decreasing"):
        samplers.reverse_sde(gaussian_denoiser, x, jnp.array([0.5, 1.0, 0.0]), process=VPSDE(), key=jax.random.key(0))
