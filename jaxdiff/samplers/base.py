"""The sampler protocol, the registry of samplers, and the step helpers every family shares.

Every registered sampler has one signature::

    sampler(denoiser, x, sigmas, *, key=None, noise=None, return_trajectory=False,
            **options, **cond) -> x   (or (x, trajectory) with return_trajectory)

with ``denoiser(x, sigma, **cond) -> x0_hat`` in the EDM / k-diffusion convention
(``x = y + sigma * n``); ``x`` (B, ...) at noise level ``sigmas[0]``; ``sigmas`` (N+1,) strictly
decreasing and ending with 0 (``jaxdiff.schedules``); the result is a sample at level 0 and the
trajectory (N, B, ...) the state after each step. ``noise`` is a noise source
(``jaxdiff.samplers.noise``; i.i.d. Gaussian draws from ``key`` by default); deterministic
samplers accept and ignore ``key`` and ``noise``. Keywords that are not one of the sampler's
options are conditioning, passed on to the denoiser.

``REGISTRY`` maps each name to a ``SamplerSpec``: the sampler, its family, whether it is
deterministic, its options and its number of function evaluations for a grid.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from jaxdiff._arrays import after, concrete
from jaxdiff._checks import check_denoised, check_finite, check_sigmas
from jaxdiff.samplers.noise import gaussian

Array = Any

__all__ = [
    "Sampler", "SamplerSpec", "REGISTRY", "register", "get", "check_options",
    "denoise", "derivative", "step_levels", "run_steps", "finish", "heun_step", "ancestral_step",
    "noise_source", "check_nonneg",
]

PROTOCOL_KEYWORDS = ("key", "noise", "return_trajectory")


class Sampler(Protocol):
    def __call__(self, denoiser: Callable, x: Array, sigmas: Array, *, key: Array | None = None,
                 noise: Callable | None = None, return_trajectory: bool = False, **options_and_cond) -> Any: ...


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: ``fn`` with the protocol signature, its ``family`` (the module it
    lives in), whether it is ``deterministic`` (draws no noise with its default options), its
    ``options`` (keyword names beyond the protocol's) and ``nfe_rule(num_steps, **options) ->
    int | None`` (None: adaptive)."""

    name: str
    fn: Sampler
    family: str
    deterministic: bool
    options: tuple[str, ...]
    nfe_rule: Callable[..., int | None]

    def nfe(self, sigmas, **options) -> int | None:
        """Denoiser evaluations per sample on the grid ``sigmas`` (N+1,); None when adaptive
        (measured: call ``pf_ode`` with ``return_stats=True``)."""
        check_options(self.name, options)
        return self.nfe_rule(jnp.shape(sigmas)[0] - 1, **options)


REGISTRY: dict[str, SamplerSpec] = {}


def register(*, nfe: Callable[..., int | None], deterministic: bool):
    """Decorator: add a sampler to ``REGISTRY`` under its function name.

    ``nfe(num_steps, **options)`` gives its denoiser evaluations for N steps; the options are read
    from the function's keyword-only parameters (all but ``key``, ``noise``, ``return_trajectory``).
    """

    def add(fn):
        params = inspect.signature(fn).parameters.values()
        options = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in PROTOCOL_KEYWORDS)
        family = fn.__module__.rsplit(".", 1)[-1]
        REGISTRY[fn.__name__] = SamplerSpec(fn.__name__, fn, family, deterministic, options, nfe)
        return fn

    return add


def get(name: str) -> SamplerSpec:
    """The registered sampler ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """``ValueError`` naming any option that sampler ``name`` does not take."""
    spec = get(name)
    unknown = [k for k in options if k not in spec.options]
    if unknown:
        takes = ", ".join(spec.options) or "none"
        raise ValueError(f"sampler {name!r} takes no option {unknown[0]!r}; its options: {takes}")


# -- step helpers -------------------------------------------------------------------------------


def denoise(denoiser: Callable, x: Array, sigma: Array, cond: Mapping) -> Array:
    """``denoiser(x, sigma, **cond)``, checked to have ``x``'s shape. ``sigma`` passes through
    ``jaxdiff._arrays.after(x, sigma)``: no two denoiser calls run at once (on the CPU, two batched
    LAPACK kernels of a denoiser running together can deadlock)."""
    denoised = denoiser(x, after(x, sigma), **cond)
    check_denoised(x, denoised)
    return denoised


def derivative(denoiser: Callable, x: Array, sigma: Array, cond: Mapping) -> Array:
    """The probability-flow ODE's ``dx/dσ = (x - D(x; σ)) / σ``."""
    return (x - denoise(denoiser, x, sigma, cond)) / sigma


def step_levels(x: Array, sigmas: Array) -> tuple[Array, Array]:
    """Validated ``sigmas`` (N+1,) in ``x.dtype`` as per-step ``(sigma, sigma_next)``, each (N,)."""
    check_sigmas(sigmas)
    sigmas = jnp.asarray(sigmas, x.dtype)
    return sigmas[:-1], sigmas[1:]


def run_steps(step: Callable, carry, xs, *, last: Callable | None = None, trajectory: bool = False,
              state: Callable = lambda c: c):
    """``lax.scan`` of ``step(carry, x) -> carry`` over per-step inputs ``xs`` (leading axis N).

    ``last(carry, x) -> carry``, when given, takes the final step (to σ = 0) in place of ``step``,
    outside the loop: solvers drop their correction there without a ``lax.cond`` around the
    denoiser. Returns the final carry and, with ``trajectory``, ``state(carry)`` after every
    step stacked to (N, ...), else None.
    """

    def body(c, x):
        c = step(c, x)
        return c, (state(c) if trajectory else None)

    if last is None:
        return jax.lax.scan(body, carry, xs)
    carry, ys = jax.lax.scan(body, carry, jax.tree.map(lambda a: a[:-1], xs))
    carry = last(carry, jax.tree.map(lambda a: a[-1], xs))
    if trajectory:
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), ys, state(carry))
    return carry, ys


def finish(x: Array, trajectory, return_trajectory: bool):
    """The sampler's result; eager calls with a non-finite ``x`` raise ``ValueError``."""
    check_finite(x, "sampler produced non-finite values: the denoiser returned NaN or inf")
    return (x, trajectory) if return_trajectory else x


def heun_step(denoiser: Callable, x: Array, sigma: Array, sigma_next: Array, cond: Mapping) -> Array:
    """One EDM Heun step from ``sigma`` to ``sigma_next > 0`` (two evaluations)."""
    d = derivative(denoiser, x, sigma, cond)
    x_euler = x + (sigma_next - sigma) * d
    d_next = derivative(denoiser, x_euler, sigma_next, cond)
    return x + (sigma_next - sigma) * 0.5 * (d + d_next)


def ancestral_step(sigma: Array, sigma_next: Array, eta=1.0) -> tuple[Array, Array]:
    """(sigma_down, sigma_up): deterministic target level and noise std of an ancestral step,
    with sigma_down² + sigma_up² = sigma_next² and sigma_up = min(sigma_next, eta·σ_DDPM). Where
    sigma ≫ sigma_next, sigma_up rounds to sigma_next and the difference of squares to 0 or, compiled
    (fused, reassociated), to a tiny negative number: it is clipped at 0."""
    sigma_up = jnp.minimum(sigma_next, eta * jnp.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return jnp.sqrt(jnp.maximum(sigma_next**2 - sigma_up**2, 0)), sigma_up


def noise_source(key, noise, default: Callable = gaussian) -> Callable:
    """``noise``, or ``default`` when None (which then needs ``key``)."""
    if noise is None:
        if key is None:
            raise ValueError("key is required for a stochastic sampler (pass key=jax.random.key(seed))")
        return default
    return noise


def check_nonneg(name: str, value) -> None:
    """``ValueError`` naming ``name`` unless a concrete ``value`` is >= 0."""
    v = concrete(value)
    if v is not None and not (v >= 0).all():
        raise ValueError(f"{name} must be >= 0, got {value!r}")
