"""Doob h-transform diffusion bridges: processes, DDBM preconditioning and loss, DDBM and DBIM samplers.

The seam is ``denoiser(x_t, t, x_T) -> x0_hat`` (``bridge_denoiser`` builds one from a network).
"""

from jaxdiff.bridges.gaussian import GaussianBridgeData
from jaxdiff.bridges.precond import DDBMPrecond, bridge_denoiser, bridge_loss
from jaxdiff.bridges.process import VEBridge, VPBridge
from jaxdiff.bridges.samplers import cosine_grid, dbim, dbim_grid, dbim_step, ddbm_grid, ddbm_heun

__all__ = [
    "VPBridge", "VEBridge", "DDBMPrecond", "bridge_denoiser", "bridge_loss",
    "ddbm_heun", "dbim", "dbim_step", "ddbm_grid", "dbim_grid", "cosine_grid",
    "GaussianBridgeData",
]
