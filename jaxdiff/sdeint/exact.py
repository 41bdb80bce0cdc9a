"""Closed forms for testing: geometric Brownian motion, Ornstein–Uhlenbeck, Brownian bridge."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["gbm", "gbm_mean", "ou_moments", "ou_density", "ou_path", "brownian_bridge"]


def gbm(x0, mu, sigma, ts, w):
    """Itô GBM ``dX = μX dt + σX dW`` on a path: ``X_t = x0 exp((μ - σ²/2)(t - t0) + σ(W_t - W_t0))``.

    ``ts`` (n,), ``w`` (n, ...) the path at ``ts``; returns (n, ...).
    """
    ts, w = jnp.asarray(ts), jnp.asarray(w)
    t = (ts - ts[0]).reshape((-1,) + (1,) * (w.ndim - 1))
    return x0 * jnp.exp((mu - 0.5 * sigma**2) * t + sigma * (w - w[:1]))


def gbm_mean(x0, mu, t):
    """``E[X_t] = x0 exp(μ t)`` for GBM started at time 0."""
    return x0 * jnp.exp(mu * t)


def ou_moments(x0, theta, mu, sigma, t):
    """Mean and variance of ``dX = θ(μ - X) dt + σ dW`` at time ``t`` from ``x0`` at 0 (θ > 0)."""
    decay = jnp.exp(-theta * t)
    return mu + (x0 - mu) * decay, -(sigma**2) / (2 * theta) * jnp.expm1(-2 * theta * t)


def ou_density(x, x0, theta, mu, sigma, t):
    """Transition density ``p(x, t | x0, 0)`` of the OU process (a Gaussian)."""
    m, v = ou_moments(x0, theta, mu, sigma, t)
    return jnp.exp(-0.5 * (x - m) ** 2 / v) / jnp.sqrt(2 * jnp.pi * v)


def ou_path(key, x0, theta, mu, sigma, ts, shape=()):
    """Exact OU path on ``ts`` (n,) by its Gaussian transition: returns (n, *shape)."""
    ts = jnp.asarray(ts)
    x0 = jnp.broadcast_to(jnp.asarray(x0, ts.dtype), shape)
    z = jax.random.normal(key, (ts.shape[0] - 1, *shape), ts.dtype)

    def step(x, inp):
        dt, zk = inp
        m, v = ou_moments(x, theta, mu, sigma, dt)
        x = m + jnp.sqrt(v) * zk
        return x, x

    _, xs = jax.lax.scan(step, x0, (jnp.diff(ts), z))
    return jnp.concatenate([x0[None], xs])


def brownian_bridge(key, ts, w0, w1, shape=()):
    """Brownian bridge from ``(ts[0], w0)`` to ``(ts[-1], w1)`` sampled on ``ts`` (n,): (n, *shape)."""
    ts = jnp.asarray(ts)
    dw = jnp.sqrt(jnp.diff(ts)).reshape((-1,) + (1,) * len(shape)) * jax.random.normal(
        key, (ts.shape[0] - 1, *shape), ts.dtype
    )
    w = jnp.concatenate([jnp.zeros((1, *shape), ts.dtype), jnp.cumsum(dw, 0)])
    frac = ((ts - ts[0]) / (ts[-1] - ts[0])).reshape((-1,) + (1,) * len(shape))
    return w0 + w - frac * (w[-1] - (w1 - w0))
