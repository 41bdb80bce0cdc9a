"""DiffusionNAG on the NAS-Bench-201 space: score model, noisy-cell property predictor, guided sampling.

Data are the operator-type matrices of ``jaxdiff.nag.encoding`` shifted to ``±1/2`` (``to_data``),
``(B, 8, 7)``. The score model is any denoiser ``D(x, sigma)`` (``jaxdiff.precond`` over
``nets.CellTransformer``, trained with ``jaxdiff.losses.denoising_loss``); sampling is
``jaxdiff.samplers.predictor_corrector`` on a VE SDE (``jaxdiff.sde.VESDE``), and a property
predictor ``f(x, sigma)`` trained on noisy cells guides it through
``jaxdiff.samplers.gradient_guidance`` with the Gaussian log-likelihood
``log p(y* | x, sigma) = -(f(x, sigma) - y*)^2 / (2 tau^2)`` of a target ``y*``, or the probability of
improvement ``log Phi((f(x, sigma) - y*) / tau)`` over a value ``y*`` to beat. Generated matrices
become cells by the argmax per edge (``encoding.decode``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.stats import norm

from jaxdiff import samplers, schedules
from jaxdiff._arrays import bcast, concrete
from jaxdiff.nag.encoding import NUM_NODES, NUM_TYPES, decode, encode
from jaxdiff.sde import VESDE

__all__ = ["to_data", "to_cells", "sample_sigmas", "Predictor", "train_predictor", "fit_predictor", "target_log_prob",
           "improvement_log_prob", "sample"]


def to_data(cells) -> np.ndarray:
    """Cells ``(B, 6)`` -> ``encode(cells) - 1/2``, ``(B, 8, 7)`` float32 with entries ``±1/2``."""
    return encode(cells) - 0.5


def to_cells(x) -> tuple[np.ndarray, np.ndarray]:
    """Generated matrices ``(B, 8, 7)`` -> ``(cells (B, 6), valid (B,))`` (``encoding.decode``)."""
    return decode(np.asarray(x))


def sample_sigmas(process: VESDE, num_steps: int) -> jax.Array:
    """The log-uniform grid from the process's ``sigma_max`` to ``sigma_min``, then 0: ``(num_steps + 1,)``."""
    return schedules.exponential(num_steps, process.sigma_min, process.sigma_max)


def _inputs(x, sigma, sigma_data: float):
    """The predictor's inputs at level ``sigma`` (B,): ``x / sqrt(sigma^2 + sigma_data^2)`` and ``ln(sigma)/4``."""
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return x * bcast(jax.lax.rsqrt(sigma**2 + sigma_data**2), x), jnp.log(sigma) / 4


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A property predictor on noisy cells: ``predictor(params, x (B, 8, 7), sigma) -> (B,)`` in the
    property's units (the network regresses the standardised property).

    Attributes:
        module: a Flax module ``(x (B, 8, 7), c_noise (B,)) -> (B,)``, e.g. ``nets.PropertyPredictor``.
        mean: the property's mean over the training cells.
        std: its standard deviation.
        sigma_data: the data's scale in the input normalisation (1/2 for ``to_data``).
    """

    module: object
    mean: float = 0.0
    std: float = 1.0
    sigma_data: float = 0.5

    def raw(self, params, x, sigma):
        """The standardised prediction ``(B,)``."""
        return self.module.apply({"params": params}, *_inputs(x, sigma, self.sigma_data))

    def __call__(self, params, x, sigma):
        return self.mean + self.std * self.raw(params, x, sigma)


@functools.partial(jax.jit, static_argnames=("module", "steps", "batch_size", "sigma_min", "sigma_max"))
def train_predictor(module, init_params, x, y, weight, key, *, steps: int, batch_size: int, learning_rate,
                    sigma_min: float, sigma_max: float):
    """The jitted training loop of ``fit_predictor`` on arrays (``vmap`` it to train several at once).

    Args:
        module: the predictor network.
        init_params: its initial parameters.
        x: ``(N, 8, 7)`` clean matrices (``to_data``).
        y: ``(N,)`` standardised property.
        weight: ``(N,)`` sampling weights (0: padding).
        key: the batches' and noises' randomness.
        steps: AdamW steps (cosine decay).
        batch_size: cells per step.
        learning_rate: peak learning rate.
        sigma_min: lowest noise level.
        sigma_max: highest noise level.

    Returns:
        ``(params, losses (steps,))``.
    """
    optimizer = optax.adamw(optax.cosine_decay_schedule(learning_rate, steps), weight_decay=1e-4)
    pred = Predictor(module)
    lo, hi = jnp.log(sigma_min), jnp.log(sigma_max)
    prob = weight / weight.sum()

    def loss(params, key):
        ki, ks, kn = jax.random.split(key, 3)
        idx = jax.random.choice(ki, x.shape[0], (batch_size,), p=prob)
        sigma = jnp.exp(jax.random.uniform(ks, (batch_size,), minval=lo, maxval=hi))
        xt = x[idx] + bcast(sigma, x[idx]) * jax.random.normal(kn, (batch_size,) + x.shape[1:])
        return jnp.mean((pred.raw(params, xt, sigma) - y[idx]) ** 2)

    def step(carry, key):
        params, opt = carry
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, opt = optimizer.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), value

    (params, _), losses = jax.lax.scan(step, (init_params, optimizer.init(init_params)), jax.random.split(key, steps))
    return params, losses


def fit_predictor(module, cells, values, key, *, weight=None, steps: int = 300, batch_size: int = 64,
                  learning_rate: float = 3e-3, sigma_min: float = 0.01, sigma_max: float = 5.0):
    """Train a property predictor on noisy cells: ``sigma`` log-uniform in ``[sigma_min, sigma_max]``,
    ``x = to_data(cell) + sigma n``, squared error against the standardised property.

    Args:
        module: the predictor network (``nets.PropertyPredictor``).
        cells: ``(N, 6)`` evaluated cells.
        values: ``(N,)`` their property.
        key: initialisation and training randomness.
        weight: ``(N,)`` nonnegative sampling weights (0 leaves a row out: padding), default all 1.
        steps: AdamW steps (cosine decay).
        batch_size: cells per step, drawn with replacement.
        learning_rate: peak learning rate.
        sigma_min: lowest training noise level.
        sigma_max: highest training noise level.

    Returns:
        ``(Predictor, params, losses (steps,))``. Jitted once per module, ``N`` and budget.
    """
    values = np.asarray(values, np.float64)
    cells = np.asarray(cells)
    if values.shape != cells.shape[:1]:
        raise ValueError(f"values must have shape ({len(cells)},) (one per cell), got {values.shape}")
    weight = np.ones(len(values)) if weight is None else np.asarray(weight, np.float64)
    if weight.shape != values.shape or np.any(weight < 0) or not weight.sum() > 0:
        raise ValueError(f"weight must be ({len(values)},) nonnegative with a positive sum, got {weight}")
    mean = float(np.average(values, weights=weight))
    std = float(np.sqrt(np.average((values - mean) ** 2, weights=weight))) or 1.0
    x = jnp.asarray(to_data(cells))
    k_init, k_fit = jax.random.split(key)
    pred = Predictor(module, mean, std)
    init = module.init(k_init, *_inputs(x[:1], jnp.ones(1), pred.sigma_data))["params"]
    params, losses = train_predictor(module, init, x, jnp.asarray((values - mean) / std, jnp.float32),
                                     jnp.asarray(weight, jnp.float32), k_fit, steps=steps, batch_size=batch_size,
                                     learning_rate=learning_rate, sigma_min=sigma_min, sigma_max=sigma_max)
    return pred, params, losses


def target_log_prob(predictor: Callable, target, temperature: float = 1.0) -> Callable:
    """``log_prob(x, sigma) = -(predictor(x, sigma) - target)^2 / (2 temperature^2)``, ``(B,)``, for
    ``samplers.gradient_guidance``; ``predictor(x, sigma) -> (B,)`` closes over its parameters."""
    if concrete(temperature) is not None and not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")

    def log_prob(x, sigma, **_):
        return -0.5 * ((predictor(x, sigma) - target) / temperature) ** 2

    return log_prob


def improvement_log_prob(predictor: Callable, best, temperature: float = 1.0) -> Callable:
    """``log_prob(x, sigma) = log Phi((predictor(x, sigma) - best) / temperature)``, ``(B,)``: the log
    probability that the property exceeds ``best`` under a Gaussian of std ``temperature`` around the
    prediction. Unlike ``target_log_prob`` it stops pulling once a cell is predicted above ``best``, and
    never pulls back. Same signature and use as ``target_log_prob``."""
    if concrete(temperature) is not None and not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")

    def log_prob(x, sigma, **_):
        return norm.logcdf((predictor(x, sigma) - best) / temperature)

    return log_prob


def sample(denoiser: Callable, key, num: int, *, process: VESDE, num_steps: int = 50, n_corrector: int = 1,
           snr: float = 0.16, log_prob: Callable | None = None, scale: float = 0.0):
    """Draw ``num`` operator-type matrices ``(num, 8, 7)`` with the predictor–corrector sampler on
    ``process``, guided by ``log_prob(x, sigma) -> (B,)`` with weight ``scale`` when given.

    Args:
        denoiser: ``D(x (B, 8, 7), sigma) -> x0_hat``.
        key: randomness of the prior and the sampler.
        num: matrices to draw.
        process: the VE SDE; the grid is ``sample_sigmas(process, num_steps)``.
        num_steps: predictor steps (NFE ``num_steps (1 + n_corrector)``).
        n_corrector: Langevin corrector steps per level.
        snr: the corrector's signal-to-noise ratio.
        log_prob: the guidance's log-likelihood (``target_log_prob``, ``improvement_log_prob``), None
            for unguided sampling.
        scale: guidance weight (``samplers.gradient_guidance``'s ``scale``).
    """
    if log_prob is not None:
        denoiser = samplers.gradient_guidance(denoiser, log_prob, scale)
    k_prior, k_sample = jax.random.split(key)
    sigmas = sample_sigmas(process, num_steps)
    x = sigmas[0] * jax.random.normal(k_prior, (num, NUM_NODES, NUM_TYPES))
    return samplers.predictor_corrector(denoiser, x, sigmas, key=k_sample, process=process,
                                        n_corrector=n_corrector, snr=snr)
