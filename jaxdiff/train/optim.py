"""Optimizer and EMA: optax Adam with warm-up and clipping; EDM's EMA half-life."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam(W) with linear warm-up and global-norm clipping."""

    learning_rate: float = 1e-3
    warmup_steps: int = 100
    grad_clip: float = 1.0
    b1: float = 0.9
    b2: float = 0.999
    weight_decay: float = 0.0

    def __post_init__(self):
        if not self.learning_rate > 0:
            raise ValueError(f"optim.learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.grad_clip > 0:
            raise ValueError(f"optim.grad_clip must be > 0, got {self.grad_clip}")
        for name in ("b1", "b2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"optim.{name} must be in [0, 1), got {getattr(self, name)}")


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    schedule = optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1))
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay),
    )


def ema_decay(step, batch_size: int, halflife_nimg: float, rampup_ratio: float | None = 0.05):
    """EDM's EMA decay per step: β = 0.5^(batch / halflife), the half-life measured in images.

    With ``rampup_ratio`` the half-life is capped at ``step * batch * rampup_ratio``,
    so early averages do not remember the random initialisation.
    """
    halflife = jnp.asarray(halflife_nimg, jnp.float32)
    if rampup_ratio is not None:
        halflife = jnp.minimum(halflife, (step + 1) * batch_size * rampup_ratio)
    return 0.5 ** (batch_size / jnp.maximum(halflife, 1e-8))


def ema_update(ema_params, params, decay):
    return jax.tree.map(lambda e, p: p + decay * (e - p), ema_params, params)
