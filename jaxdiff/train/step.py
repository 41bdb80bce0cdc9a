"""The pure training step."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxdiff.train.optim import ema_decay, ema_update
from jaxdiff.train.state import TrainState

LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict]]


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    ema_halflife_nimg: float,
    ema_rampup_ratio: float | None = 0.05,
):
    """Build ``train_step(state, batch) -> (state, metrics)``.

    ``loss_fn(params, batch, key) -> (loss, terms)``; the step key is
    ``fold_in(state.rng, state.step)``, so a resumed run draws the same noise.
    ``batch_size`` is the global batch (for the EMA half-life in images).
    Metrics: the loss terms, ``grad_norm``, ``ema_decay``.
    """

    def train_step(state: TrainState, batch: dict):
        key = jax.random.fold_in(state.rng, state.step)
        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay(state.step, batch_size, ema_halflife_nimg, ema_rampup_ratio)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            ema_params=ema_update(state.ema_params, params, decay),
            opt_state=opt_state,
        )
        metrics = dict(terms, grad_norm=optax.global_norm(grads), ema_decay=jnp.asarray(decay))
        return new_state, metrics

    return train_step
