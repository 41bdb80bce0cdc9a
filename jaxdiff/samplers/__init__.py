"""Samplers over the denoiser seam: one protocol, one registry (``jaxdiff.samplers.base``).

Every registered sampler is ``sampler(denoiser, x, sigmas, *, key=None, noise=None,
return_trajectory=False, **options, **cond) -> x`` with ``denoiser(x, sigma, **cond) -> x0_hat``,
``x`` (B, ...) at noise level ``sigmas[0]`` and ``sigmas`` (N+1,) decreasing to 0. Families: ODE
(``ode``, ``multistep``), stochastic (``stochastic``), DDPM/DDIM on VP levels (``ddpm``), score-SDE
over a ``jaxdiff.sde`` process (``score_sde``), adaptive (``adaptive``). ``REGISTRY`` / ``get(name)``
give each sampler's options, NFE rule and determinism; guidance wraps a denoiser.
"""

from jaxdiff.samplers import noise
from jaxdiff.samplers.adaptive import ODEStats, pf_ode, solve_ode
from jaxdiff.samplers.base import REGISTRY, SamplerSpec, check_options, get
from jaxdiff.samplers.corrections import StepCorrection
from jaxdiff.samplers.ddpm import analytic_dpm_variances, ddim, ddpm, vp_sigmas
from jaxdiff.samplers.grids import learn_correction, optimise_sigmas
from jaxdiff.samplers.guidance import cfg_denoiser, gradient_guidance, inpaint
from jaxdiff.samplers.multistep import deis, ipndm, unipc
from jaxdiff.samplers.ode import dpm_2, dpmpp_2m, euler, heun, lms
from jaxdiff.samplers.score_sde import (
    annealed_langevin,
    euler_maruyama,
    predictor_corrector,
    reverse_diffusion,
    reverse_sde,
)
from jaxdiff.samplers.stochastic import (
    dpmpp_2m_sde, dpmpp_2s_ancestral, dpmpp_3m_sde, dpmpp_sde, edm, euler_ancestral, restart,
)

__all__ = [
    "noise", "REGISTRY", "SamplerSpec", "get", "check_options",
    # ODE
    "euler", "heun", "dpm_2", "dpmpp_2m", "lms", "unipc", "ipndm", "deis",
    # stochastic
    "edm", "euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "restart",
    # VP levels
    "ddpm", "ddim", "analytic_dpm_variances", "vp_sigmas",
    # score SDE
    "euler_maruyama", "reverse_diffusion", "predictor_corrector", "reverse_sde", "annealed_langevin",
    # adaptive
    "ODEStats", "solve_ode", "pf_ode",
    # guidance
    "cfg_denoiser", "gradient_guidance", "inpaint",
    # grids and learned corrections
    "optimise_sigmas", "learn_correction", "StepCorrection",
]
