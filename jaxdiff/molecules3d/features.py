"""Continuous atom features for equivariant diffusion: Hoogeboom et al. (2022) scale the one-hot atom
types by 0.25 and the atomic numbers (charges) by 0.1 so that positions dominate the early denoising
(their Table 10: the scaling decides molecule stability)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

ONE_HOT_SCALE = 0.25
CHARGE_SCALE = 0.1


def scale_features(one_hot, charges) -> jax.Array:
    """(..., K + 1): ``one_hot`` (..., K) × 0.25 next to ``charges`` (...) × 0.1.

    Args:
        one_hot: atom types, one-hot (..., K).
        charges: atomic numbers (...), 0 on padding.
    """
    one_hot, charges = jnp.asarray(one_hot), jnp.asarray(charges)
    if one_hot.shape[:-1] != charges.shape:
        raise ValueError(f"charges must have shape one_hot.shape[:-1] = {one_hot.shape[:-1]}, got {charges.shape}")
    dtype = one_hot.dtype if jnp.issubdtype(one_hot.dtype, jnp.floating) else jnp.float32
    return jnp.concatenate([one_hot.astype(dtype) * ONE_HOT_SCALE,
                            charges.astype(dtype)[..., None] * CHARGE_SCALE], axis=-1)


def unscale_features(h) -> tuple[jax.Array, jax.Array]:
    """(one_hot (..., K), charges (...)) in their original units from ``h`` (..., K + 1) of ``scale_features``.

    Args:
        h: scaled features (..., K + 1), K >= 1.
    """
    h = jnp.asarray(h)
    if h.ndim < 1 or h.shape[-1] < 2:
        raise ValueError(f"h must have shape (..., K + 1) with K >= 1, got {h.shape}")
    return h[..., :-1] / ONE_HOT_SCALE, h[..., -1] / CHARGE_SCALE
