"""Noise sources: the standard-normal draws a stochastic sampler injects.

A noise source is any callable ``noise(key, step, level, level_next, shape, dtype)`` returning
standard-normal draws of ``shape``: the noise a sampler injects while moving from noise level
``level`` to ``level_next`` (bridge samplers pass their times t). ``key`` is the sampler's key
(never split by the sampler) and ``step`` an integer counter, distinct for each call within one
sampling run, so sources may be i.i.d. per call (``gaussian``) or a function of the levels only
(``BrownianTreeNoise``), which gives the same path for the same key whatever the step count.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp

from jaxdiff.sdeint.brownian import VirtualBrownianTree

__all__ = ["NoiseSource", "gaussian", "BrownianTreeNoise"]


class NoiseSource(Protocol):
    def __call__(self, key, step, level, level_next, shape: tuple[int, ...], dtype: Any) -> jax.Array: ...


def gaussian(key, step, level, level_next, shape, dtype):
    """I.i.d. N(0, I) of ``shape`` from ``fold_in(key, step)``; ignores the levels."""
    del level, level_next
    if key is None:
        raise ValueError("key is required for the gaussian noise source (pass key=jax.random.key(seed))")
    return jax.random.normal(jax.random.fold_in(key, step), shape, dtype)


class BrownianTreeNoise:
    """Brownian motion W(σ) on ``[sigma_min, sigma_max]`` as a noise source: one path per key.

    An adapter over ``jaxdiff.sdeint.VirtualBrownianTree``, the one Brownian tree of jaxdiff: the
    tree lives on [0, 1] and σ maps to ``u = (σ - sigma_min) / (sigma_max - sigma_min)``. Calls
    return ``(W(σ') - W(σ)) / sqrt(|σ' - σ|)`` (k-diffusion's ``BrownianTreeNoiseSampler``), which
    equals the tree's normalised increment over ``[u, u']``; levels are clipped to the interval
    and an empty interval gives 0. ``sigma_min``/``sigma_max`` may be traced; ``depth`` (static,
    at most 30) sets the resolution ``(sigma_max - sigma_min) / 2**depth``.
    """

    def __init__(self, sigma_min, sigma_max, *, depth: int = 24):
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 30:
            raise ValueError(f"depth must be an int in [0, 30], got {depth!r}")
        self.sigma_min, self.sigma_max, self.depth = sigma_min, sigma_max, depth

    def tree(self, key, shape, dtype) -> VirtualBrownianTree:
        """The standard Brownian motion B(u), u in [0, 1], behind this source for ``key``."""
        if key is None:
            raise ValueError("key is required for BrownianTreeNoise (pass key=jax.random.key(seed))")
        return VirtualBrownianTree(0.0, 1.0, key, shape=tuple(shape), depth=self.depth, dtype=dtype)

    def _u(self, sigma, dtype):
        lo, hi = jnp.asarray(self.sigma_min, dtype), jnp.asarray(self.sigma_max, dtype)
        return jnp.clip((jnp.asarray(sigma, dtype) - lo) / (hi - lo), 0, 1)

    def w(self, key, sigma, shape, dtype) -> jax.Array:
        """W(σ) of ``shape`` for a scalar level ``sigma``: ``sqrt(sigma_max - sigma_min) B(u)``."""
        scale = jnp.sqrt(jnp.asarray(self.sigma_max, dtype) - jnp.asarray(self.sigma_min, dtype))
        return scale * self.tree(key, shape, dtype).evaluate(self._u(sigma, dtype))

    def __call__(self, key, step, level, level_next, shape, dtype):
        del step
        u, u_next = self._u(level, dtype), self._u(level_next, dtype)
        du = jnp.abs(u_next - u)
        db = self.tree(key, shape, dtype).increment(u, u_next)
        return jnp.where(du > 0, db / jnp.sqrt(jnp.where(du > 0, du, 1)), 0)
