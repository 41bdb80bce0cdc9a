"""Network preconditioning of Karras et al. 2022 (EDM), Table 1.

A raw network ``F(params, x, c_noise, **cond)`` becomes a denoiser

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))

in the convention ``x = y + sigma * n``. Each preconditioning is a frozen
dataclass exposing ``coefficients(sigma) -> (c_skip, c_out, c_in, c_noise)``;
``denoiser(net, params, precond)`` does the wiring.

A concrete ``sigma`` must be finite and > 0 for EDM and VE (their ``c_noise`` is ln σ, so
σ = 0 would feed the network −inf), and finite and >= 0 for VP and iDDPM (at σ = 0 every
coefficient is finite and D(x; 0) = x); otherwise ``ValueError``. Traced sigmas are not checked.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import bcast
from jaxdiff._checks import check_positive

Array = Any
Network = Callable[..., Array]


@dataclasses.dataclass(frozen=True)
class EDMPrecond:
    """EDM: c_skip = sd²/(σ²+sd²), c_out = σ·sd/√(σ²+sd²), c_in = 1/√(σ²+sd²), c_noise = ln(σ)/4."""

    sigma_data: float = 0.5

    def coefficients(self, sigma):
        check_positive(sigma, "sigma")
        sd2 = self.sigma_data**2
        s2 = sigma**2
        c_skip = sd2 / (s2 + sd2)
        c_out = sigma * self.sigma_data * jnp.reciprocal(jnp.sqrt(s2 + sd2))
        c_in = jnp.reciprocal(jnp.sqrt(s2 + sd2))
        c_noise = jnp.log(sigma) / 4.0
        return c_skip, c_out, c_in, c_noise


@dataclasses.dataclass(frozen=True)
class VPPrecond:
    """VP (DDPM++): c_skip = 1, c_out = -σ, c_in = 1/√(σ²+1), c_noise = (M-1)·t(σ)."""

    beta_d: float = 19.9
    beta_min: float = 0.1
    M: int = 1000

    def sigma_inv(self, sigma):
        """t such that sigma_VP(t) = sigma: the inverse of √(exp(½β_d t² + β_min t) - 1)."""
        check_positive(sigma, "sigma", allow_zero=True)
        return (jnp.sqrt(self.beta_min**2 + 2 * self.beta_d * jnp.log1p(sigma**2)) - self.beta_min) / self.beta_d

    def coefficients(self, sigma):
        c_skip = jnp.ones_like(sigma)
        c_out = -sigma
        c_in = jnp.reciprocal(jnp.sqrt(sigma**2 + 1))
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        return c_skip, c_out, c_in, c_noise


@dataclasses.dataclass(frozen=True)
class VEPrecond:
    """VE (NCSN++): c_skip = 1, c_out = σ, c_in = 1, c_noise = ln(σ/2)."""

    def coefficients(self, sigma):
        check_positive(sigma, "sigma")
        return jnp.ones_like(sigma), sigma, jnp.ones_like(sigma), jnp.log(0.5 * sigma)


@dataclasses.dataclass(frozen=True)
class IDDPMPrecond:
    """iDDPM (ADM): c_skip = 1, c_out = -σ, c_in = 1/√(σ²+1), c_noise = M-1-j(σ).

    j(σ) is the index of the nearest level of the discrete cosine grid u_0 < ... < u_M
    (u_M = 0 is excluded from the search), as in EDM's ``iDDPMPrecond``.
    """

    C1: float = 0.001
    C2: float = 0.008
    M: int = 1000

    @property
    def u(self) -> np.ndarray:
        """The (M+1,) grid u_j, built in float64: u_M = 0, u_{j-1} = √((u_j²+1)/max(ᾱ_{j-1}/ᾱ_j, C1) - 1)."""
        def alpha_bar(j):
            return np.sin(0.5 * np.pi * j / self.M / (self.C2 + 1)) ** 2

        u = np.zeros(self.M + 1)
        for j in range(self.M, 0, -1):
            u[j - 1] = np.sqrt((u[j] ** 2 + 1) / max(alpha_bar(j - 1) / alpha_bar(j), self.C1) - 1)
        return u

    def index(self, sigma):
        """Index j of the grid level nearest to sigma (ties to the lower index)."""
        u = jnp.asarray(self.u[:-1], dtype=jnp.result_type(sigma, jnp.float32))
        return jnp.argmin(jnp.abs(sigma[..., None] - u), axis=-1)

    def coefficients(self, sigma):
        check_positive(sigma, "sigma", allow_zero=True)
        c_skip = jnp.ones_like(sigma)
        c_out = -sigma
        c_in = jnp.reciprocal(jnp.sqrt(sigma**2 + 1))
        c_noise = (self.M - 1 - self.index(sigma)).astype(sigma.dtype)
        return c_skip, c_out, c_in, c_noise


PRECONDITIONINGS = {"edm": EDMPrecond, "vp": VPPrecond, "ve": VEPrecond, "iddpm": IDDPMPrecond}



def denoiser(net: Network, params, precond, *, key=None) -> Callable[..., Array]:
    """Wrap ``net(params, x, c_noise, *, key, **cond)`` into ``D(x, sigma, **cond) -> x0_hat``.

    Args:
      net: raw network; x (B, ...) and c_noise (B,) in, (B, ...) out.
      precond: any object with ``coefficients(sigma)``.
      key: dropout key passed to ``net`` (None means evaluation mode).

    The returned denoiser accepts sigma as a scalar or a (B,) array.
    """

    def D(x, sigma, **cond):
        sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
        c_skip, c_out, c_in, c_noise = precond.coefficients(sigma)
        F = net(params, bcast(c_in, x) * x, c_noise, key=key, **cond)
        return bcast(c_skip, x) * x + bcast(c_out, x) * F.astype(x.dtype)

    return D
