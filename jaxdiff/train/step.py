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
    A non-finite loss or gradient leaves params, EMA and optimizer state
    unchanged (the step counter still advances, so the data moves on) and sets
    the metric ``nonfinite`` to 1; ``fit`` can stop on it.
    Metrics: the loss terms, ``grad_norm``, ``ema_decay``, ``nonfinite``.
    """

    def train_step(state: TrainState, batch: dict):
        key = jax.random.fold_in(state.rng, state.step)
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay(state.step, batch_size, ema_halflife_nimg, ema_rampup_ratio)

        def keep(new, old):
            return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

        new_state = state.replace(
            step=state.step + 1,
            params=keep(params, state.params),
            ema_params=keep(ema_update(state.ema_params, params, decay), state.ema_params),
            opt_state=keep(opt_state, state.opt_state),
        )
        metrics = dict(terms, grad_norm=grad_norm, ema_decay=jnp.asarray(decay),
                       nonfinite=1.0 - finite.astype(jnp.float32))
        return new_state, metrics

    return train_step
