"""A property regressor of 3-D molecules: Hoogeboom et al.'s "property classifier", with which a
conditional EDM is scored (the generated molecule's predicted property against its target).

As in their evaluation (after Satorras et al.'s EGNN on QM9): an EGNN reads positions and one-hot
atom types, an MLP per atom, a sum over the atoms and an MLP per molecule give the properties, trained
with an L1 loss on the properties normalised by their mean and mean absolute deviation
(``context.PropertyNorm``). The output is invariant to rotations, reflections, translations and
permutations of the atoms, and padding atoms change nothing.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import in_chunks
from jaxdiff.molecules3d.egnn import EGNN

__all__ = ["PropertyRegressor", "predict", "regressor_loss"]


class PropertyRegressor(nn.Module):
    """``(x (B, n, 3), h (B, n, F), mask (B, n)) -> (B, num_properties)``: the normalised properties.

    Attributes:
        num_properties: C, the properties regressed jointly.
        hidden: width of the EGNN and the read-out MLPs.
        num_blocks: EGNN blocks.
        normalization_factor: the EGNN's sums over neighbours are divided by it.
    """

    num_properties: int = 1
    hidden: int = 128
    num_blocks: int = 4
    normalization_factor: float = 1.0

    @nn.compact
    def __call__(self, x, h, mask):
        h, _ = EGNN(self.hidden, hidden=self.hidden, num_blocks=self.num_blocks, attention=False,
                    normalization_factor=self.normalization_factor)(h, x, mask)
        m = jnp.asarray(mask, h.dtype)[..., None]
        h = nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(h))) * m
        g = jnp.sum(h, axis=1)
        return nn.Dense(self.num_properties)(nn.silu(nn.Dense(self.hidden)(g)))


def regressor_loss(model: PropertyRegressor):
    """``loss_fn(params, batch, key) -> (loss, terms)`` for ``jaxdiff.train``: the mean absolute error of
    the normalised properties.

    ``batch``: ``positions`` (B, n, 3), ``features`` (B, n, F), ``mask`` (B, n), ``targets`` (B, C)
    normalised. Terms ``loss`` (= ``mae``).
    """

    def loss_fn(params, batch, key):
        del key
        pred = model.apply({"params": params}, batch["positions"], batch["features"], batch["mask"])
        loss = jnp.mean(jnp.abs(pred - batch["targets"]))
        return loss, {"loss": loss, "mae": loss}

    return loss_fn


def predict(model: PropertyRegressor, params, positions, features, mask, chunk: int = 500) -> np.ndarray:
    """float64 (N, C) normalised properties of N molecules, in fixed-size chunks (one compilation).

    Args:
        model: the regressor.
        params: its parameters.
        positions: (N, n, 3).
        features: (N, n, F) one-hot atom types.
        mask: (N, n) real atoms.
        chunk: molecules per call.
    """
    return in_chunks(functools.partial(_apply, model, params), positions, features, mask, chunk=chunk).astype(np.float64)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model: PropertyRegressor, params, positions, features, mask):
    """One compilation per regressor and chunk shape, shared by every ``predict`` call."""
    return model.apply({"params": params}, positions, features, mask)
