"""The training state pytree."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly: a pytree of arrays.

    Fields: ``step`` (int32 scalar), ``params``, ``ema_params``, ``opt_state``,
    ``rng`` (the run's base PRNG key; step keys are ``fold_in(rng, step)``).
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    rng: jax.Array


def create_train_state(params, optimizer: optax.GradientTransformation, rng) -> TrainState:
    """A fresh state at step 0 with EMA parameters equal to ``params``."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema_params=jax.tree.map(jnp.copy, params),
        opt_state=optimizer.init(params),
        rng=rng,
    )
