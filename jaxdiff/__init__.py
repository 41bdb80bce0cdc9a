"""jaxdiff: functional JAX/Flax diffusion models.

The seam between networks and samplers is the denoiser,
``denoiser(x, sigma, **cond) -> x0_hat`` with ``x = y + sigma * n``.
"""

__version__ = "0.1.0"
