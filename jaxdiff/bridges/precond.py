"""DDBM preconditioning, the bridge denoiser wrapper and the bridge training loss.

With x_t = a_t x_T + b_t x_0 + c_t n, Var x_0 = σ_0², Var x_T = σ_T², Cov(x_0, x_T) = cov:

    A = a²σ_T² + b²σ_0² + 2ab·cov + c²,  c_in = A^−½,  c_skip = (bσ_0² + a·cov)/A,
    c_out = √(a²(σ_T²σ_0² − cov²) + σ_0²c²)·c_in,  weight = 1/c_out²,

so the network input c_in x_t and its target (x_0 − c_skip x_t)/c_out have unit variance
(Zhou et al. 2023, DDBM). c_noise = ¼ ln t, the EDM convention of ``jaxdiff.nn``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff._arrays import bcast
from jaxdiff._checks import check_positive

Array = Any


@dataclasses.dataclass(frozen=True)
class DDBMPrecond:
    """DDBM scalings for data std ``sigma_0`` (x_0), ``sigma_T`` (x_T) and covariance ``cov``."""

    sigma_0: float = 0.5
    sigma_T: float = 0.5
    cov: float = 0.0

    def coefficients(self, bridge, t):
        """(c_skip, c_out, c_in, c_noise) at times ``t`` (any shape).

        A concrete ``t`` must lie in (0, T] (c_noise = ¼ ln t and c_out(0) = 0), else ``ValueError``.
        """
        check_positive(t, "t")
        a, b, c = bridge.abc(t)
        s0, sT, cov = self.sigma_0**2, self.sigma_T**2, self.cov
        A = a**2 * sT + b**2 * s0 + 2 * a * b * cov + c**2
        c_in = 1.0 / jnp.sqrt(A)
        c_skip = (b * s0 + a * cov) / A
        c_out = jnp.sqrt(a**2 * (sT * s0 - cov**2) + s0 * c**2) * c_in
        c_noise = 0.25 * jnp.log(t)
        return c_skip, c_out, c_in, c_noise

    def weight(self, bridge, t):
        """Loss weight 1/c_out² at times ``t``."""
        return 1.0 / self.coefficients(bridge, t)[1] ** 2


def bridge_denoiser(net: Callable[..., Array], params, bridge, precond, *, key=None):
    """Wrap ``net(params, x, c_noise, *, key, **cond)`` into ``D(x_t, t, x_T, **cond) -> x0_hat``.

    The network sees ``concat([c_in x_t, x_T], axis=-1)``: x_T as extra (last-axis) channels,
    so a net for C-channel data takes 2C input channels; of its output the first C channels
    are used (nets such as ``jaxdiff.nn.UNet`` return as many channels as they take).
    x_t, x_T: (B, ..., C); t: scalar or (B,). ``key`` is the dropout key (None: evaluation).
    """

    def D(x_t, t, x_T, **cond):
        if x_T.shape != x_t.shape:
            raise ValueError(f"x_T must have the shape of x_t {x_t.shape}, got {x_T.shape}")
        t = jnp.broadcast_to(jnp.asarray(t, x_t.dtype), x_t.shape[:1])
        c_skip, c_out, c_in, c_noise = precond.coefficients(bridge, t)
        inp = jnp.concatenate([bcast(c_in, x_t) * x_t, x_T], axis=-1)
        F = net(params, inp, c_noise, key=key, **cond)[..., : x_t.shape[-1]].astype(x_t.dtype)
        return bcast(c_skip, x_t) * x_t + bcast(c_out, x_t) * F

    return D


def _pair(batch):
    if "x0" in batch and "xT" in batch:
        return batch["x0"], batch["xT"]
    if "image" in batch and "source" in batch:
        return batch["image"], batch["source"]
    raise ValueError(f"batch must hold 'x0' and 'xT' (or 'image' and 'source'), got keys {sorted(batch)}")


def bridge_loss(net: Callable[..., Array], bridge, precond):
    """DDBM loss E_t,n 1/c_out(t)² ‖D(x_t, t, x_T) − x_0‖², t ~ U(t_min, t_max).

    Returns ``loss_fn(params, batch, key) -> (loss, terms)`` for ``jaxdiff.train.make_train_step``.
    ``batch``: ``"x0"`` (target, B, ..., C) and ``"xT"`` (source, same shape), or equivalently
    ``"image"`` (target) and ``"source"``. Terms: ``loss`` (weighted), ``mse`` (unweighted).
    """

    def loss_fn(params, batch, key):
        x0, x_T = _pair(batch)
        k_t, k_n, k_drop = jax.random.split(key, 3)
        t = jax.random.uniform(k_t, x0.shape[:1], x0.dtype, bridge.t_min, bridge.t_max)
        x_t = bridge.sample(x0, x_T, t, jax.random.normal(k_n, x0.shape, x0.dtype))
        D = bridge_denoiser(net, params, bridge, precond, key=k_drop)
        err = (D(x_t, t, x_T) - x0) ** 2
        per_example = jnp.mean(err.reshape(err.shape[0], -1), axis=1)
        loss = jnp.mean(precond.weight(bridge, t) * per_example)
        return loss, {"loss": loss, "mse": jnp.mean(per_example)}

    return loss_fn
