"""Doob h-transform diffusion bridges: processes, DDBM preconditioning and loss, DDBM and DBIM samplers.

A bridge carries a source x_T (B, ...) to a target x_0 through q(x_t | x_0, x_T) =
N(a_t x_T + b_t x_0, c_t² I), t in [0, T]. It keeps the house's seam (a denoiser returning x0_hat,
samplers over a grid) with these differences:

- Time, not noise level: ``denoiser(x_t, t, x_T) -> x0_hat`` (B, ...). a_t, b_t, c_t and the drifts
  are functions of t with no single σ behind them (c_t is 0 at both ends and peaks between), so
  no σ grid can parametrise a bridge; ``t`` is a scalar.
- The condition x_T: every denoiser call receives the source, which also enters the state itself
  (the a_t x_T term); samplers start from x_T, so it is their ``x``.
- Grids inside [0, T): ``ts`` (N+1,) strictly decreasing, never reaching T, where c_T = 0 and the
  drifts grow like 1/(T − t); they may end at 0 (the last step is then first order) or at t_min.
- Per-step coefficients in float64 on the host: for a concrete ``ts`` the samplers tabulate every
  coefficient before the ``lax.scan``, since near T the drift terms in x and x_T nearly cancel and
  would lose their difference in float32.

Samplers take the house's keywords: ``sampler(denoiser, x_T, ts, *, bridge, key=None, noise=None,
return_trajectory=False, **options)``, with the noise source called with times as its levels.
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
