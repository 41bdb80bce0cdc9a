"""Samplers over the denoiser seam: ``sampler(denoiser, x, sigmas, **options) -> x``."""

from jaxdiff.samplers.ode import euler, heun

__all__ = ["euler", "heun"]
