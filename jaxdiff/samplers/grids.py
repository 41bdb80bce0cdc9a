"""Noise-level grids optimised for one sampler (in the spirit of AYS and DPM-Solver-v3's time grids).

``optimise_sigmas`` tunes the interior levels of a grid by gradient descent through the jitted
sampler, minimising the mean L2 distance of its samples to reference samples (typically an
accurate solve of the same ODE from the same initial noise). The grid is parametrised by its
gaps in log σ, each ``softplus(u_k) > 0``, so every iterate is strictly decreasing; ``σ_max``
(the first level) and the final 0 stay fixed. With ``fix_sigma_min=False`` (the default) the
last nonzero level moves too; with ``fix_sigma_min=True`` the gaps are a softmax share of
``log σ_max - log σ_min`` and both ends stay put.

``learn_correction`` fits, with the same loop, a
[`StepCorrection`][jaxdiff.samplers.corrections.StepCorrection] for ``ipndm`` or ``deis``: per-step
time and direction scales (AMED-Plugin's corrections as per-step scalars), together with the grid.

Start from a grid whose last nonzero level is ~0.05 or more, fit on training noise draws and
measure on held-out ones: see [Optimised grids](../../design/samplers.md#optimised-grids).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff.samplers.corrections import StepCorrection

__all__ = ["optimise_sigmas", "learn_correction", "sample_error"]


def _distance(a, b):
    """Per-sample L2 distance of (B, ...) arrays, with a finite gradient where they coincide."""
    d = (a - b).reshape(a.shape[0], -1)
    sq = jnp.sum(d * d, axis=-1)
    ok = sq > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def sample_error(samples, reference):
    """Mean over the batch of the L2 distance between ``samples`` and ``reference`` (B, ...); a scalar."""
    return jnp.mean(_distance(samples, reference))


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_grid(sigmas_init, fix_sigma_min):
    try:
        s = np.asarray(sigmas_init, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"sigmas_init must be a 1-D array of noise levels: {e}") from None
    if s.ndim != 1:
        raise ValueError(f"sigmas_init must be 1-D, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("sigmas_init must be finite")
    if s.shape[0] < 2 or s[-1] != 0:
        raise ValueError("sigmas_init must end with 0 (as jaxdiff.schedules.karras)")
    if np.any(s < 0) or np.any(np.diff(s) >= 0):
        raise ValueError("sigmas_init must be non-negative and strictly decreasing")
    free = s.shape[0] - 2 - (1 if fix_sigma_min else 0)
    if free < 1:
        raise ValueError(f"sigmas_init has no free level to optimise: got {s.shape[0]} levels "
                         f"(need at least {3 + int(bool(fix_sigma_min))} with fix_sigma_min={fix_sigma_min})")
    return s


def _parametrise(s, fix_sigma_min):
    """(u, to_sigmas): unconstrained parameters of grid ``s`` (N+1,) and their map back to a grid."""
    log_s = np.log(s[:-1])
    gaps = -np.diff(log_s)  # (N-1,) > 0
    log_max, log_min = log_s[0], log_s[-1]
    if fix_sigma_min:
        u0 = np.log(gaps)  # softmax(u0) * total = gaps

        def to_sigmas(u):
            cum = jnp.cumsum(jax.nn.softmax(u)[:-1]) * (log_max - log_min)
            inner = jnp.exp(log_max - cum)
            return jnp.concatenate([jnp.full((1,), s[0], u.dtype), inner,
                                    jnp.full((1,), s[-2], u.dtype), jnp.zeros((1,), u.dtype)])
    else:
        u0 = gaps + np.log(-np.expm1(-gaps))  # softplus⁻¹(gaps)

        def to_sigmas(u):
            inner = jnp.exp(log_max - jnp.cumsum(jax.nn.softplus(u)))
            return jnp.concatenate([jnp.full((1,), s[0], u.dtype), inner, jnp.zeros((1,), u.dtype)])

    return u0, to_sigmas


def _check_fit_args(sampler, denoiser, x_train, reference, steps, lr, final_lr_fraction, options):
    """Validated ``(x_train, reference, options)`` of a fit; ``ValueError`` naming a bad argument."""
    if not callable(sampler):
        raise ValueError(f"sampler must be callable, got {type(sampler).__name__}")
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable, got {type(denoiser).__name__}")
    x_train, reference = jnp.asarray(x_train), jnp.asarray(reference)
    if not jnp.issubdtype(x_train.dtype, jnp.floating):
        raise ValueError(f"x_train must be a float array, got dtype {x_train.dtype}")
    if x_train.ndim < 2 or x_train.shape[0] < 1:
        raise ValueError(f"x_train must be (B, ...) with B >= 1, got shape {x_train.shape}")
    if reference.shape != x_train.shape:
        raise ValueError(f"reference must have x_train's shape {x_train.shape}, got {reference.shape}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not (_is_real(lr) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite float > 0, got {lr!r}")
    if not (_is_real(final_lr_fraction) and 0 < final_lr_fraction <= 1):
        raise ValueError(f"final_lr_fraction must be in (0, 1], got {final_lr_fraction!r}")
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"options must be a mapping of sampler keyword arguments, got {type(options).__name__}")
    return x_train, reference, dict(options or {})


def _fit(loss_fn, p0, x, ref, steps, lr, final_lr_fraction):
    """Adam on ``loss_fn(params, x, ref)`` from the pytree ``p0`` with a cosine-decayed learning rate.

    Returns the iterate with the lowest loss (``p0`` included) and the (steps,) losses, ``losses[k]``
    the loss of iterate k. A non-finite gradient entry leaves its parameter unchanged."""
    steps = int(steps)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=final_lr_fraction))

    @jax.jit
    def step(p, state, x, ref):
        loss, grad = jax.value_and_grad(loss_fn)(p, x, ref)
        finite = jax.tree.map(jnp.isfinite, grad)
        grad = jax.tree.map(lambda g, f: jnp.where(f, g, 0.0), grad, finite)
        updates, state = opt.update(grad, state, p)
        any_finite = jnp.any(jnp.stack([jnp.any(f) for f in jax.tree.leaves(finite)]))
        grad_max = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(grad)]))
        return optax.apply_updates(p, updates), state, loss, any_finite, grad_max

    p, state = p0, opt.init(p0)
    best_p, best_loss, losses = p0, np.inf, []
    for k in range(steps):
        new_p, state, loss, any_finite, grad_max = step(p, state, x, ref)
        if k == 0 and not bool(any_finite):
            raise ValueError("sampler: the loss has no finite gradient in the noise levels at sigmas_init "
                             "(is the sampler differentiable in sigmas? e.g. sqrt(0) in a zero noise term)")
        if k == 0 and float(grad_max) <= 1e-8 * float(loss):  # relative to the loss; a zero loss is left alone
            raise ValueError("sigmas_init: the loss is flat there (gradient ~0); typically its last nonzero "
                             "level is so small that the denoiser's output is saturated: start from a larger one")
        loss = float(loss)
        losses.append(loss)
        if np.isfinite(loss) and loss < best_loss:  # the loss belongs to p, before this update
            best_p, best_loss = p, loss
        p = new_p
    final_loss = float(step(p, state, x, ref)[2])  # the last iterate's loss (update unused)
    if np.isfinite(final_loss) and final_loss < best_loss:
        best_p = p
    return best_p, np.asarray(losses)


def optimise_sigmas(
    sampler: Callable,
    denoiser: Callable,
    x_train,
    reference,
    sigmas_init,
    *,
    steps: int = 200,
    lr: float = 0.05,
    final_lr_fraction: float = 0.05,
    fix_sigma_min: bool = False,
    options: Mapping[str, Any] | None = None,
    return_losses: bool = False,
):
    """Noise levels for ``sampler`` fitted to ``reference`` by Adam on log-σ gaps.

    Args:
      sampler: ``sampler(denoiser, x, sigmas, **options) -> x0`` (the ``jaxdiff.samplers`` contract).
      denoiser: ``denoiser(x, sigma) -> x0_hat``, differentiable in ``x`` and ``sigma``.
      x_train: (B, ...) initial noise at level ``sigmas_init[0]`` (training draws).
      reference: (B, ...) target samples from the same noise, e.g. a 1,000-step Heun solve.
      sigmas_init: (N+1,) strictly decreasing grid ending with 0; the starting point. Its first
        level (σ_max) and the final 0 are kept; so is ``sigmas_init[-2]`` with ``fix_sigma_min``.
      steps: Adam steps (each one sampler call and its gradient on the whole batch).
      lr: peak learning rate on the log-gap parameters; cosine-decayed to
        ``lr * final_lr_fraction`` over ``steps``.
      fix_sigma_min: keep the last nonzero level; otherwise it is optimised too.
      options: extra keyword arguments for ``sampler`` (e.g. ``{"order": 3}``).
      return_losses: also return the (steps,) training losses.

    Returns:
      The (N+1,) grid (dtype of ``x_train``) with the lowest training loss among the iterates
      (the initial grid included), strictly decreasing and ending with 0; with
      ``return_losses``, ``(sigmas, losses)``, ``losses[k]`` the loss of iterate k.
    """
    x_train, reference, options = _check_fit_args(sampler, denoiser, x_train, reference, steps, lr,
                                                  final_lr_fraction, options)
    s = _check_grid(sigmas_init, fix_sigma_min)
    u0, to_sigmas = _parametrise(s, fix_sigma_min)

    def loss_fn(u, x, ref):
        return sample_error(sampler(denoiser, x, to_sigmas(u), **options), ref)

    best_u, losses = _fit(loss_fn, jnp.asarray(u0, x_train.dtype), x_train, reference, steps, lr, final_lr_fraction)
    sigmas = to_sigmas(best_u)
    return (sigmas, losses) if return_losses else sigmas


def learn_correction(
    sampler: Callable,
    denoiser: Callable,
    x_train,
    reference,
    sigmas_init,
    *,
    steps: int = 200,
    lr: float = 0.05,
    final_lr_fraction: float = 0.05,
    per_weight: bool = True,
    learn_sigmas: bool = True,
    fix_sigma_min: bool = False,
    options: Mapping[str, Any] | None = None,
    return_losses: bool = False,
):
    """A ``StepCorrection`` for ``sampler`` (``ipndm``, ``deis``, or ``unipc`` with ``per_weight=False``)
    fitted to ``reference`` by Adam.

    AMED-Plugin's time-step corrections as per-step scalars: step i queries the denoiser at
    ``time_scale[i] · σ_i`` and scales its update by ``dir_scale[i]``, or with ``per_weight`` each
    of its Adams weights by ``dir_scale[i, j]`` (scales start at 1; the time scale is learned as a
    logarithm); with ``learn_sigmas`` the grid (its intermediate levels) is learned with them, as
    in ``optimise_sigmas``. No denoiser call is added: NFE stays the sampler's.

    Args:
      sampler: a sampler taking ``correction=`` (``jaxdiff.samplers.ipndm``, ``deis``, ``unipc``).
      denoiser: ``denoiser(x, sigma) -> x0_hat``, differentiable in ``x`` and ``sigma``.
      x_train: (B, ...) initial noise at level ``sigmas_init[0]`` (training draws).
      reference: (B, ...) target samples from the same noise, e.g. a 1,000-step Heun solve.
      sigmas_init: (N+1,) strictly decreasing grid ending with 0; the starting grid (kept as is
        without ``learn_sigmas``; σ_max and the final 0 are always kept).
      steps: Adam steps (each one sampler call and its gradient on the whole batch).
      lr: peak learning rate, cosine-decayed to ``lr * final_lr_fraction`` over ``steps``.
      per_weight: one direction scale per Adams weight, ``dir_scale`` (N, order); else one per
        step, (N, 1).
      learn_sigmas: learn the grid's levels too.
      fix_sigma_min: with ``learn_sigmas``, keep the last nonzero level.
      options: other keyword arguments for ``sampler`` (e.g. ``{"order": 3}``; the order
        defaults to the sampler's).
      return_losses: also return the (steps,) training losses.

    Returns:
      The ``StepCorrection`` (its ``sigmas`` the grid to sample with) with the lowest training loss
      among the iterates, the identity on ``sigmas_init`` included; with ``return_losses``,
      ``(correction, losses)``.
    """
    if callable(sampler) and "correction" not in _parameters(sampler):
        raise ValueError(f"sampler must take a correction= option (ipndm, deis, unipc), got {_name(sampler)}")
    x_train, reference, options = _check_fit_args(sampler, denoiser, x_train, reference, steps, lr,
                                                  final_lr_fraction, options)
    if "correction" in options:
        raise ValueError("options must not hold 'correction': it is what learn_correction fits")
    s = _check_grid(sigmas_init, fix_sigma_min)
    dtype, n = x_train.dtype, s.shape[0] - 1
    params = inspect.signature(sampler).parameters
    order = int(options.get("order", params["order"].default if "order" in params else 1))
    u0, to_sigmas = _parametrise(s, fix_sigma_min)
    p0 = {"log_time_scale": jnp.zeros(n, dtype), "dir_scale": jnp.ones((n, order if per_weight else 1), dtype)}
    if learn_sigmas:
        p0["u"] = jnp.asarray(u0, dtype)

    def build(p):
        sigmas = to_sigmas(p["u"]) if learn_sigmas else jnp.asarray(s, dtype)
        return StepCorrection(sigmas, jnp.exp(p["log_time_scale"]), p["dir_scale"])

    def loss_fn(p, x, ref):
        correction = build(p)
        return sample_error(sampler(denoiser, x, correction.sigmas, correction=correction, **options), ref)

    best, losses = _fit(loss_fn, p0, x_train, reference, steps, lr, final_lr_fraction)
    correction = build(best)
    return (correction, losses) if return_losses else correction


def _parameters(fn) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


def _name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)
