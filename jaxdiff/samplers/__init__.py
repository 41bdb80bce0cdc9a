"""Samplers over the denoiser seam.

k-diffusion-style samplers share one signature, ``sampler(denoiser, x, sigmas, *, key=None,
noise=None, return_trajectory=False, **options_and_cond) -> x``, with ``denoiser(x, sigma,
**cond) -> x0_hat``, ``x`` at noise level ``sigmas[0]`` and ``sigmas`` decreasing to 0.
DDPM/DDIM run on a discrete VP schedule, the score-SDE samplers over a ``jaxdiff.sde``
process, ``pf_ode``/``solve_ode`` adaptively; guidance wraps a denoiser.
"""

from jaxdiff.samplers import noise
from jaxdiff.samplers.adaptive import ODEStats, pf_ode, solve_ode
from jaxdiff.samplers.ddpm import analytic_dpm_variances, ddim, ddpm, vp_sigmas
from jaxdiff.samplers.grids import optimise_sigmas
from jaxdiff.samplers.guidance import cfg_denoiser, gradient_guidance, inpaint
from jaxdiff.samplers.multistep import unipc
from jaxdiff.samplers.ode import dpm_2, dpmpp_2m, euler, heun, lms
from jaxdiff.samplers.score_sde import (
    annealed_langevin,
    euler_maruyama,
    predictor_corrector,
    reverse_diffusion,
    reverse_sde,
)
from jaxdiff.samplers.stochastic import (
    dpmpp_2m_sde, dpmpp_2s_ancestral, dpmpp_3m_sde, dpmpp_sde, edm, euler_ancestral,
)

__all__ = [
    "noise",
    # ODE
    "euler", "heun", "dpm_2", "dpmpp_2m", "lms", "unipc",
    # stochastic
    "edm", "euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde",
    # discrete VP
    "ddpm", "ddim", "analytic_dpm_variances", "vp_sigmas",
    # score SDE
    "euler_maruyama", "reverse_diffusion", "predictor_corrector", "reverse_sde", "annealed_langevin",
    # adaptive
    "ODEStats", "solve_ode", "pf_ode",
    # guidance
    "cfg_denoiser", "gradient_guidance", "inpaint",
    # grids
    "optimise_sigmas",
]
