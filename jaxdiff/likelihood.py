"""Log-likelihood through the probability-flow ODE, in nats and bits per dimension.

``log_likelihood`` integrates the flow ``dx/du = x - D(x; σ)``, ``u = ln σ``, and its divergence
(exact, or Hutchinson's estimate) from the data ``x`` (B, ...) at σmin to the prior N(0, σmax² I) at
σmax. ``dequantize`` and ``bits_per_dim`` turn this into a bound for discrete data, including the
``-log w`` offset of bins of width ``w``. Derivation and approximations:
[docs/design/likelihood.md][likelihood-design]. The divergence is float32 on every device: the exact
one reads the Jacobian's diagonal, Hutchinson's product asks for ``Precision.HIGHEST`` (the
[precision policy][precision-policy]); the denoiser's products are its own.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import after, concrete
from jaxdiff._checks import check_finite
from jaxdiff.samplers.adaptive import solve_ode

Array = Any

__all__ = ["log_likelihood", "bits_per_dim", "dequantize"]


def _flat_rhs(denoiser, shape, cond):
    """dx/du = x - D(x; e^u) on flat (d,) vectors of one example."""

    def f(u, x):
        x_img = x.reshape((1, *shape))
        sigma = after(x_img, jnp.reshape(jnp.exp(u), (1,)))  # one denoiser call at a time (jaxdiff._arrays.after)
        return (x_img - denoiser(x_img, sigma, **cond)).reshape(-1)

    return f


def _divergence(f, u, x, probe, exact: bool):
    """``(f(u, x), div_x f)``: the trace of the Jacobian from d JVPs (exact) or ``probeᵀ J probe``."""
    if exact:
        basis = jnp.eye(x.shape[0], dtype=x.dtype)
        jacobian_t = jax.vmap(lambda e: jax.jvp(lambda z: f(u, z), (x,), (e,))[1])(basis)  # row i: J e_i
        return f(u, x), jnp.trace(jacobian_t)
    fx, jvp = jax.jvp(lambda z: f(u, z), (x,), (probe,))
    return fx, jnp.vdot(probe, jvp, precision=jax.lax.Precision.HIGHEST)


def log_likelihood(
    denoiser: Callable,
    x: Array,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    key: Array | None = None,
    divergence: str = "hutchinson",
    probe: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    **cond,
) -> tuple[Array, dict]:
    """log p_σmin(x) in nats for each example of ``x`` (B, ...).

    Args:
      denoiser: ``denoiser(x, sigma, **cond) -> x0_hat``; called with batch 1 per example
        (examples are vmapped, so each gets its own adaptive steps).
      divergence: "exact" (d JVPs per evaluation; small d) or "hutchinson".
      probe: "rademacher" or "gaussian" Hutchinson probes (one per example, drawn from key).
    Returns:
      ``(logp (B,), info)`` with ``info["prior_logp"]`` (B,), ``info["delta_logp"]`` (B,),
      ``info["nfe"]`` (B,) function evaluations of the augmented ODE.
    """
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if divergence == "hutchinson" and key is None:
        raise ValueError("key is required for the Hutchinson divergence estimate")
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (B, ...) with at least one data axis, got {x.shape}")
    check_finite(x, "x must be finite (no NaN or inf)")
    shape, d = x.shape[1:], math.prod(x.shape[1:])
    flat = x.reshape(x.shape[0], d)
    if divergence == "hutchinson":
        if probe == "rademacher":
            probes = jax.random.rademacher(key, flat.shape, flat.dtype)
        else:
            probes = jax.random.normal(key, flat.shape, flat.dtype)
    else:
        probes = jnp.zeros_like(flat)
    f = _flat_rhs(denoiser, shape, cond)
    exact = divergence == "exact"

    def one(x0, eps):
        def aug(u, state):
            fx, div = _divergence(f, u, state[0], eps, exact)
            return fx, div

        (xT, delta), stats = solve_ode(
            aug, (x0, jnp.zeros((), x0.dtype)), jnp.log(sigma_min), jnp.log(sigma_max),
            rtol=rtol, atol=atol, max_steps=max_steps,
        )
        return xT, delta, stats.nfe

    xT, delta, nfe = jax.vmap(one)(flat, probes)
    prior = -0.5 * d * jnp.log(2 * jnp.pi * sigma_max**2) - 0.5 * jnp.sum(xT**2, axis=1) / sigma_max**2
    return prior + delta, {"prior_logp": prior, "delta_logp": delta, "nfe": nfe}


def dequantize(key: Array, x: Array, bin_width: float) -> Array:
    """Uniform dequantization: ``x + bin_width * u``, u ~ U[0, 1)^shape (x on the bin's lower edge)."""
    if not bin_width > 0:
        raise ValueError(f"bin_width must be > 0, got {bin_width}")
    return x + bin_width * jax.random.uniform(key, jnp.shape(x), jnp.result_type(x, jnp.float32))


def bits_per_dim(logp_nats: Array, dim: int, bin_width: float | None = None) -> Array:
    """Bits per dimension from a log-density in nats over ``dim`` dimensions.

    With ``bin_width`` (the data's quantization step in model units, e.g. 2/255 for
    8-bit images in [-1, 1]) this is the discrete-data bound ``(-logp/d - log w)/ln 2``;
    without it, the continuous ``-logp / (d ln 2)``. A concrete ``logp_nats`` holding NaN raises
    ``ValueError``; −inf (zero density) gives +inf bits.
    """
    if not dim > 0:
        raise ValueError(f"dim must be > 0, got {dim}")
    if bin_width is not None and not 0 < bin_width < math.inf:
        raise ValueError(f"bin_width must be finite and > 0, got {bin_width}")
    v = concrete(logp_nats)
    if v is not None and np.isnan(v).any():
        raise ValueError("logp_nats must not contain NaN")
    offset = 0.0 if bin_width is None else -float(np.log(bin_width))
    return (-jnp.asarray(logp_nats) / dim + offset) / math.log(2.0)
