"""Adaptive Dormand–Prince 5(4) with a PID step-size controller, all inside ``lax.while_loop``.

``solve_ode(f, y0, t0, t1, ...)`` integrates ``dy/dt = f(t, y)`` for any pytree ``y``
(e.g. an augmented ``(x, logp)`` state for likelihoods) from ``t0`` to ``t1`` (either
direction) and returns ``(y1, ODEStats)``. ``pf_ode``, a sampler of the house protocol,
solves the EDM probability-flow ODE with it. Everything jits; under ``vmap`` every
example gets its own step sizes. One error norm covers the whole state, so a batch
solved without ``vmap`` shares its steps (as score_sde's scipy solve does).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._checks import check_sigmas
from jaxdiff.samplers.base import denoise, finish, register

Array = Any

__all__ = ["ODEStats", "solve_ode", "pf_ode"]

# Dormand & Prince (1980) tableau; the 7th stage is FSAL (f at the new point).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# b5 - b4 over all 7 stages (the last multiplies the FSAL stage).
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
_ERROR_ORDER = 5


class ODEStats(NamedTuple):
    """One solve's counters (int32 scalars): function evaluations, accepted and rejected steps;
    and ``t_final``, the time reached (``t1`` unless ``max_steps`` ran out)."""

    nfe: Array
    n_accepted: Array
    n_rejected: Array
    t_final: Array


def _lin(y, ks, coefs, h):
    """``y + h * sum_i c_i k_i`` over pytrees."""
    return jax.tree.map(lambda y0, *k: y0 + h * sum(c * ki for c, ki in zip(coefs, k) if c != 0.0), y, *ks)


def _rms_norm(tree) -> Array:
    leaves = [jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)]
    v = jnp.concatenate(leaves)
    return jnp.sqrt(jnp.mean(v**2))


def _scaled_error(y0, y1, err, rtol, atol) -> Array:
    scaled = jax.tree.map(lambda a, b, e: e / (atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b))), y0, y1, err)
    return _rms_norm(scaled)


def _check_positive(name, value) -> None:
    if not isinstance(value, jax.core.Tracer) and not np.all(np.asarray(value) > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def solve_ode(f: Callable, y0: Any, t0: Array, t1: Array, *, rtol: float = 1e-5, atol: float = 1e-5,
              first_step: Array | None = None, max_steps: int = 4096, pcoeff: float = 0.0,
              icoeff: float = 1.0, dcoeff: float = 0.0, safety: float = 0.9, factormin: float = 0.2,
              factormax: float = 10.0) -> tuple[Any, ODEStats]:
    """Solves ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` with Dopri5 and a PID controller.

    ``f(t, y) -> dy`` maps a scalar time and a pytree ``y`` to a pytree of the same
    structure. A step is accepted when the RMS over all leaves of
    ``err / (atol + rtol max(|y_n|, |y_{n+1}|))`` is ``<= 1``; the next step is scaled by
    ``safety * e_n^-b1 * e_{n-1}^-b2 * e_{n-2}^-b3`` (errors of accepted steps),
    ``b1 = (p + i + d)/5``, ``b2 = -(p + 2d)/5``, ``b3 = d/5`` as diffrax's ``PIDController``,
    clipped to ``[factormin, factormax]`` (never shrinking after an accepted step). The
    default ``icoeff=1`` is the classic I controller; e.g. ``pcoeff=0.4, icoeff=0.3`` is
    smoother. ``first_step`` defaults to Hairer's heuristic (one extra evaluation). At most
    ``max_steps`` attempts are made; ``t1`` is reached exactly unless that runs out (check
    ``ODEStats.t_final``). A step whose error is not finite is rejected. Returns ``(y1, ODEStats)``.
    """
    _check_positive("rtol", rtol)
    _check_positive("atol", atol)
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps!r}")
    dtype = jnp.result_type(*jax.tree.leaves(y0))
    t0 = jnp.asarray(t0, dtype)
    t1 = jnp.asarray(t1, dtype)
    direction = jnp.where(t1 >= t0, 1.0, -1.0).astype(dtype)
    span = jnp.abs(t1 - t0)
    b1 = (pcoeff + icoeff + dcoeff) / _ERROR_ORDER
    b2 = -(pcoeff + 2 * dcoeff) / _ERROR_ORDER
    b3 = dcoeff / _ERROR_ORDER

    f0 = f(t0, y0)
    nfe = jnp.asarray(1, jnp.int32)
    if first_step is None:
        scale = jax.tree.map(lambda y: atol + rtol * jnp.abs(y), y0)
        d0 = _rms_norm(jax.tree.map(jnp.divide, y0, scale))
        d1 = _rms_norm(jax.tree.map(jnp.divide, f0, scale))
        h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
        h0 = jnp.minimum(h0, span)
        f_probe = f(t0 + direction * h0, _lin(y0, (f0,), (1.0,), direction * h0))
        nfe = nfe + 1
        d2 = _rms_norm(jax.tree.map(lambda a, b, s: (a - b) / s, f_probe, f0, scale)) / h0
        h1 = jnp.where(jnp.maximum(d1, d2) <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3),
                       (0.01 / jnp.maximum(d1, d2)) ** (1.0 / _ERROR_ORDER))
        h = jnp.minimum(100 * h0, h1)
    else:
        _check_positive("first_step", first_step)
        h = jnp.asarray(first_step, dtype)
    h = jnp.minimum(h, span).astype(dtype)

    one = jnp.ones((), dtype)
    init = dict(t=t0, y=y0, k1=f0, h=h, e1=one, e2=one, nfe=nfe, acc=jnp.zeros((), jnp.int32),
                rej=jnp.zeros((), jnp.int32))

    def cond(s):
        return (s["t"] != t1) & (s["acc"] + s["rej"] < max_steps)

    def body(s):
        t, y, remaining = s["t"], s["y"], jnp.abs(t1 - s["t"])
        last = s["h"] >= remaining
        h = jnp.where(last, remaining, s["h"]) * direction
        ks = [s["k1"]]
        for c, a in zip(_C[1:], _A[1:]):
            ks.append(f(t + c * h, _lin(y, ks, a, h)))
        y_new = _lin(y, ks, _B, h)
        t_new = jnp.where(last, t1, t + h)
        k7 = f(t_new, y_new)
        err = _lin(jax.tree.map(jnp.zeros_like, y), ks + [k7], _E, h)
        e = _scaled_error(y, y_new, err, rtol, atol)
        e = jnp.where(jnp.isfinite(e), e, jnp.inf)  # a non-finite step is rejected and shrunk
        accept = e <= 1.0
        inv = 1.0 / jnp.maximum(e, 1e-10)
        factor = safety * inv**b1 * (1.0 / s["e1"]) ** b2 * (1.0 / s["e2"]) ** b3
        factor = jnp.clip(factor, jnp.where(accept, 1.0, factormin), factormax)

        def pick(a, b):
            return jax.tree.map(lambda u, v: jnp.where(accept, u, v), a, b)

        return dict(
            t=jnp.where(accept, t_new, t),
            y=pick(y_new, y),
            k1=pick(k7, s["k1"]),
            h=(jnp.abs(h) * factor).astype(dtype),
            e1=jnp.where(accept, jnp.maximum(e, 1e-10), s["e1"]).astype(dtype),
            e2=jnp.where(accept, s["e1"], s["e2"]).astype(dtype),
            nfe=s["nfe"] + 6,
            acc=s["acc"] + accept.astype(jnp.int32),
            rej=s["rej"] + (~accept).astype(jnp.int32),
        )

    s = jax.lax.while_loop(cond, body, init)
    return s["y"], ODEStats(s["nfe"], s["acc"], s["rej"], s["t"])


@register(nfe=lambda n, **_: None, deterministic=True)
def pf_ode(denoiser: Callable, x: Array, sigmas: Array, *, key=None, noise=None, rtol: float = 1e-5,
           atol: float = 1e-5, max_steps: int = 4096, pcoeff: float = 0.0, icoeff: float = 1.0,
           dcoeff: float = 0.0, return_stats: bool = False, return_trajectory: bool = False, **cond):
    """Adaptive solve of the EDM probability-flow ODE ``dx/dsigma = (x - D(x; sigma))/sigma``.

    The protocol of ``jaxdiff.samplers.base``, with a grid of which only the ends matter:
    ``x`` (B, ...) at ``sigmas[0]`` is carried to ``sigma_min = sigmas[-2]`` (the last nonzero
    level) by Dormand–Prince, then the step to 0 is ``D(x; sigma_min)``, one more NFE; the
    trajectory (2, B, ...) holds those two states. Integrated in ``u = log sigma``, where
    ``dx/du = x - D(x; sigma)``, which leaves the solution unchanged and keeps step sizes
    comparable across scales. ``rtol``, ``atol``, ``max_steps`` and the PID coefficients are
    ``solve_ode``'s. NFE is data-dependent: ``return_stats`` appends the
    ``ODEStats`` (its ``t_final`` is ``log sigma``).
    """
    del key, noise
    check_sigmas(sigmas)
    if jnp.shape(sigmas)[0] < 3:
        raise ValueError(f"sigmas must hold sigma_max, sigma_min > 0 and 0 (at least 3 levels), got {jnp.shape(sigmas)}")
    sigmas = jnp.asarray(sigmas, x.dtype)
    sigma_min = sigmas[-2]

    def rhs(u, x):
        return x - denoise(denoiser, x, jnp.exp(u), cond)

    x_min, stats = solve_ode(rhs, x, jnp.log(sigmas[0]), jnp.log(sigma_min), rtol=rtol, atol=atol,
                             max_steps=max_steps, pcoeff=pcoeff, icoeff=icoeff, dcoeff=dcoeff)
    x = denoise(denoiser, x_min, sigma_min, cond)
    stats = stats._replace(nfe=stats.nfe + 1)
    out = finish(x, jnp.stack([x_min, x]) if return_trajectory else None, return_trajectory)
    return (*(out if return_trajectory else (out,)), stats) if return_stats else out
