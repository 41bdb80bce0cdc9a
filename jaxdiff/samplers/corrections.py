"""Learned per-step time-step corrections for the Adams-type samplers (AMED-Plugin's per-step form).

A [`StepCorrection`][jaxdiff.samplers.corrections.StepCorrection] holds, for one grid of N steps,
a time scale and direction scales per step: step i queries the denoiser at ``time_scale[i] · σ_i``
instead of σ_i, and its Adams update ``Σ_j c_ij ε_{i-j}`` becomes ``Σ_j dir_scale[i, j] c_ij ε_{i-j}``
(one scale per step, ``dir_scale`` (N, 1), is AMED-Plugin's; one per weight, (N, order), lets the
multistep weights themselves be learned). The grid itself (``sigmas``, typically learned together
with the scales) places the intermediate levels that AMED-Plugin predicts. It is an option of
``ipndm`` and ``deis`` (``correction=``), adds no denoiser call, and is tied to the grid it was
learned on: a sampler given other levels raises ``ValueError``. Learn one with
[`learn_correction`][jaxdiff.samplers.grids.learn_correction].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import concrete

__all__ = ["StepCorrection"]

Array = Any


@dataclasses.dataclass(frozen=True)
class StepCorrection:
    """Per-step corrections learned for one grid (a pytree: it passes through ``jit`` as an argument).

    Attributes:
      sigmas: (N+1,) the grid it was learned on, strictly decreasing and ending with 0; pass
        these same levels to the sampler.
      time_scale: (N,) positive; step i evaluates the denoiser at ``time_scale[i] * sigmas[i]``.
      dir_scale: (N, 1) one factor on step i's update, or (N, K) one per Adams weight c_ij of a
        sampler of order K.
    """

    sigmas: Array
    time_scale: Array
    dir_scale: Array

    @classmethod
    def identity(cls, sigmas, order: int = 1) -> StepCorrection:
        """The correction that changes nothing on grid ``sigmas`` (N+1,), with ``dir_scale`` (N, order)."""
        sigmas = jnp.asarray(sigmas)
        n = sigmas.shape[0] - 1
        return cls(sigmas, jnp.ones(n, sigmas.dtype), jnp.ones((n, order), sigmas.dtype))

    def check(self, sigmas, order: int) -> None:
        """``ValueError`` unless ``sigmas`` are the levels this correction was learned on (checked on
        concrete values, to a relative 1e-5 so a float32 copy of a float64 grid passes) and its
        ``dir_scale`` fits a sampler of ``order``."""
        n = jnp.shape(self.sigmas)[0]
        if jnp.shape(self.time_scale) != (n - 1,) or jnp.ndim(self.dir_scale) != 2 \
                or jnp.shape(self.dir_scale)[0] != n - 1:
            raise ValueError(f"correction: time_scale must have shape ({n - 1},) and dir_scale ({n - 1}, K) for a "
                             f"grid of {n} levels, got {jnp.shape(self.time_scale)} and {jnp.shape(self.dir_scale)}")
        k = jnp.shape(self.dir_scale)[1]
        if k not in (1, order):
            raise ValueError(f"correction has {k} direction scales per step, learned for order {k}; got order={order}")
        if jnp.shape(sigmas)[0] != n:
            raise ValueError(f"correction was learned for a grid of {n - 1} steps (σ {_span(self.sigmas)}); "
                             f"got sigmas with {jnp.shape(sigmas)[0] - 1} steps")
        mine, given = concrete(self.sigmas), concrete(sigmas)
        if mine is None or given is None:
            return
        if not np.allclose(np.asarray(given, np.float64), np.asarray(mine, np.float64), rtol=1e-5, atol=0):
            raise ValueError(f"correction was learned on σ {_span(mine)}; got sigmas {_span(given)} "
                             "(pass correction.sigmas, or learn a correction for these levels)")


def _span(s) -> str:
    s = np.asarray(s, np.float64)
    inner = ", ".join(f"{v:.4g}" for v in s)
    return f"[{inner}]"


jax.tree_util.register_dataclass(StepCorrection, data_fields=["sigmas", "time_scale", "dir_scale"], meta_fields=[])
