"""The inverse map of SyCo: point cloud -> molecular graph (atom types and bond types).

``GraphDecoder`` reads positions x (B, n, 3), invariant atom features h (B, n, F) (e.g. the one-hot
types a 3-D diffusion model generated, possibly noisy) and the mask (B, n). An ``EGNN`` gives invariant
atom embeddings e; every pair (i, j) gets logits over ``syco.BOND_TYPES`` from an MLP of
(e_i + e_j, e_i · e_j, radial basis of |x_i - x_j|), and every atom logits over its type. The logits are
invariant under rotations, reflections and translations of x, equivariant under permutations of the
atoms, and the bond logits are symmetric in (i, j); logits touching padding are zero.

``decoder_loss`` is the cross-entropy of atom and bond classes for ``jaxdiff.train.make_train_step``;
``decode`` takes the most likely graph, which ``syco.to_mol`` turns into an RDKit molecule.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff.molecules3d.com import check_point_cloud
from jaxdiff.molecules3d.egnn import EGNN
from jaxdiff.molecules3d.syco import ATOM_TYPES, BOND_TYPES


class GraphDecoder(nn.Module):
    """``(x, h, mask) -> (atom_logits (B, n, num_atom_types), bond_logits (B, n, n, num_bond_types))``.

    Attributes:
        num_atom_types: atom classes (5: ``syco.ATOM_TYPES``, C N O F and the aromatic nH).
        num_bond_types: bond classes (5: ``syco.BOND_TYPES``).
        hidden: width of the EGNN and the pair MLP.
        num_blocks: EGNN blocks.
        num_rbf: Gaussian radial basis functions of the distance, centres evenly on [0, cutoff].
        cutoff: the largest centre in ångström.
    """

    num_atom_types: int = len(ATOM_TYPES)
    num_bond_types: int = len(BOND_TYPES)
    hidden: int = 64
    num_blocks: int = 3
    num_rbf: int = 32
    cutoff: float = 3.0

    @nn.compact
    def __call__(self, x, h, mask):
        x, m = check_point_cloud(x, mask)
        e, _ = EGNN(self.hidden, self.hidden, self.num_blocks, coords_range=1.0)(h, x, m)
        dist = jnp.sqrt(jnp.sum(jnp.square(x[:, :, None] - x[:, None]), axis=-1, keepdims=True) + 1e-8)
        centres = jnp.linspace(0.0, self.cutoff, self.num_rbf, dtype=x.dtype)
        width = self.cutoff / (self.num_rbf - 1)
        rbf = jnp.exp(-0.5 * jnp.square((dist - centres) / width))
        ei, ej = e[:, :, None], e[:, None]
        pair = jnp.concatenate([jnp.broadcast_to(ei + ej, rbf.shape[:3] + e.shape[-1:]), ei * ej, rbf], axis=-1)
        pair = nn.silu(nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(pair))))
        bond_logits = nn.Dense(self.num_bond_types)(pair) * (m[:, :, None] * m[:, None])[..., None]
        atom_logits = nn.Dense(self.num_atom_types)(nn.silu(nn.Dense(self.hidden)(e))) * m[..., None]
        return atom_logits, bond_logits


def decoder_loss(model: GraphDecoder, *, position_noise: float = 0.0, feature_noise: float = 0.0):
    """``loss_fn(params, batch, key) -> (loss, terms)`` for ``jaxdiff.train``: mean cross-entropy of the real
    atoms' types plus that of the bonds of real pairs i != j.

    ``batch``: ``positions`` (B, n, 3), ``features`` (B, n, F), ``mask`` (B, n), ``atoms`` (B, n) int
    (-1 padding), ``bonds`` (B, n, n) int. Terms ``loss``, ``atom_ce``, ``bond_ce``.

    Args:
        model: the decoder.
        position_noise: std of Gaussian noise added to the positions (ångström), for robustness to
            generated point clouds.
        feature_noise: std of Gaussian noise added to the real atoms' features.
    """
    if position_noise < 0 or feature_noise < 0:
        raise ValueError(f"position_noise and feature_noise must be >= 0, got {position_noise}, {feature_noise}")

    def loss_fn(params, batch, key):
        x, h, mask = batch["positions"], batch["features"], batch["mask"]
        m = jnp.asarray(mask, x.dtype)
        k_x, k_h = jax.random.split(key)
        x = x + position_noise * jax.random.normal(k_x, x.shape, x.dtype) * m[..., None]
        h = h + feature_noise * jax.random.normal(k_h, h.shape, h.dtype) * m[..., None]
        atom_logits, bond_logits = model.apply({"params": params}, x, h, mask)
        atom_ce = optax.softmax_cross_entropy_with_integer_labels(atom_logits, jnp.maximum(batch["atoms"], 0))
        atom_ce = jnp.sum(atom_ce * m) / jnp.sum(m)
        pairs = m[:, :, None] * m[:, None] * (1 - jnp.eye(m.shape[1], dtype=m.dtype))
        bond_ce = optax.softmax_cross_entropy_with_integer_labels(bond_logits, batch["bonds"])
        bond_ce = jnp.sum(bond_ce * pairs) / jnp.maximum(jnp.sum(pairs), 1)
        loss = atom_ce + bond_ce
        return loss, {"loss": loss, "atom_ce": atom_ce, "bond_ce": bond_ce}

    return loss_fn


def decode(atom_logits, bond_logits, mask) -> tuple[np.ndarray, np.ndarray]:
    """The most likely graph: (atoms int32 (B, n), -1 on padding; bonds int32 (B, n, n), symmetric, the
    argmax of the symmetrised logits, 0 on the diagonal and at padding).

    Args:
        atom_logits: (B, n, K).
        bond_logits: (B, n, n, C).
        mask: (B, n) the real atoms.
    """
    atom_logits, bond_logits, mask = np.asarray(atom_logits), np.asarray(bond_logits), np.asarray(mask, bool)
    if atom_logits.ndim != 3 or mask.shape != atom_logits.shape[:2]:
        raise ValueError(f"atom_logits must be (B, n, K) and mask (B, n), got {atom_logits.shape} and {mask.shape}")
    if bond_logits.shape[:3] != mask.shape + mask.shape[1:]:
        raise ValueError(f"bond_logits must have shape (B, n, n, C) = {mask.shape + mask.shape[1:]} + (C,), "
                         f"got {bond_logits.shape}")
    atoms = np.where(mask, np.argmax(atom_logits, -1), -1).astype(np.int32)
    bonds = np.argmax(bond_logits + np.swapaxes(bond_logits, 1, 2), -1).astype(np.int32)
    pairs = mask[:, :, None] & mask[:, None] & ~np.eye(mask.shape[1], dtype=bool)
    return atoms, np.where(pairs, bonds, 0)
