"""Pluggable noise sources for the stochastic samplers.

A noise source is any callable ``noise(key, step, sigma, sigma_next, shape, dtype)``
returning standard-normal draws of ``shape``: the noise a sampler injects while
moving from ``sigma`` to ``sigma_next``. ``key`` is the sampler's key (never split by
the sampler) and ``step`` an integer counter, distinct for each call within one
sampling run, so sources may be i.i.d. per call (``gaussian``) or a function of the
noise levels only (``BrownianTreeNoise``), which gives the same path for the same key
whatever the step count.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import jax
import jax.numpy as jnp

__all__ = ["NoiseSource", "gaussian", "BrownianTreeNoise"]


class NoiseSource(Protocol):
    def __call__(self, key, step, sigma, sigma_next, shape: tuple[int, ...], dtype: Any) -> jax.Array: ...


def gaussian(key, step, sigma, sigma_next, shape, dtype):
    """I.i.d. N(0, I) of ``shape`` from ``fold_in(key, step)``; ignores the noise levels."""
    del sigma, sigma_next
    if key is None:
        raise ValueError("key is required for the gaussian noise source (pass key=jax.random.key(seed))")
    return jax.random.normal(jax.random.fold_in(key, step), shape, dtype)


class BrownianTreeNoise:
    """A virtual Brownian motion W(σ) on ``[sigma_min, sigma_max]``, a pure function of (key, σ).

    W(sigma_min) = 0 and W(sigma_max) ~ N(0, sigma_max - sigma_min). W(σ) is found by
    ``depth`` bisections with Brownian-bridge midpoints; the key of each node is the
    ``fold_in`` of its path from the root, and inside a leaf W is the bridge between the
    leaf's ends. Calls return ``(W(sigma_next) - W(sigma)) / sqrt(|sigma_next - sigma|)``
    (k-diffusion's ``BrownianTreeNoiseSampler``), levels clipped to the interval and 0
    for an empty interval. ``sigma_min``/``sigma_max`` may be traced; ``depth`` is static.
    """

    def __init__(self, sigma_min, sigma_max, *, depth: int = 24):
        if not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative int, got {depth!r}")
        self.sigma_min, self.sigma_max, self.depth = sigma_min, sigma_max, depth

    def w(self, key, sigma, shape, dtype) -> jax.Array:
        """W(σ) of ``shape`` for a scalar level ``sigma``."""
        if key is None:
            raise ValueError("key is required for BrownianTreeNoise (pass key=jax.random.key(seed))")
        shape, dtype = tuple(shape), jnp.dtype(dtype)
        return _brownian_w(key, self.sigma_min, self.sigma_max, sigma, depth=self.depth, shape=shape, dtype=dtype)

    def __call__(self, key, step, sigma, sigma_next, shape, dtype):
        del step
        lo = jnp.asarray(self.sigma_min, dtype)
        hi = jnp.asarray(self.sigma_max, dtype)
        dt = jnp.abs(jnp.clip(jnp.asarray(sigma_next, dtype), lo, hi) - jnp.clip(jnp.asarray(sigma, dtype), lo, hi))
        dw = self.w(key, sigma_next, shape, dtype) - self.w(key, sigma, shape, dtype)
        return jnp.where(dt > 0, dw / jnp.sqrt(jnp.where(dt > 0, dt, 1)), 0)


@functools.partial(jax.jit, static_argnames=("depth", "shape", "dtype"))
def _brownian_w(key, sigma_min, sigma_max, sigma, *, depth, shape, dtype):
    lo, hi = jnp.asarray(sigma_min, dtype), jnp.asarray(sigma_max, dtype)
    t = jnp.clip(jnp.asarray(sigma, dtype), lo, hi)

    def draw(k):
        return jax.random.normal(jax.random.fold_in(k, 2), shape, dtype)

    def bisect(_, carry):
        a, b, wa, wb, k = carry
        m = 0.5 * (a + b)
        wm = 0.5 * (wa + wb) + jnp.sqrt(0.25 * (b - a)) * draw(k)
        left = t < m
        a, b = jnp.where(left, a, m), jnp.where(left, m, b)
        wa, wb = jnp.where(left, wa, wm), jnp.where(left, wm, wb)
        return a, b, wa, wb, jax.random.fold_in(k, jnp.where(left, 0, 1))

    w_hi = jnp.sqrt(hi - lo) * jax.random.normal(jax.random.fold_in(key, 3), shape, dtype)
    a, b, wa, wb, k = jax.lax.fori_loop(0, depth, bisect, (lo, hi, jnp.zeros(shape, dtype), w_hi, key))
    width = jnp.where(b > a, b - a, 1)
    bridge_std = jnp.sqrt(jnp.maximum((t - a) * (b - t) / width, 0))
    return wa + (t - a) / width * (wb - wa) + bridge_std * draw(k)
