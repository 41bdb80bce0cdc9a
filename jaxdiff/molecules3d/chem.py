"""RDKit metrics of generated 3-D molecules, as Hoogeboom et al. (2022) compute them.

A point cloud becomes a molecule with explicit hydrogens whose bonds are the distance-rule bond orders
of ``stability.bond_orders``. It is valid when RDKit sanitises it; its SMILES is then that of its
largest fragment (hydrogens folded back into the heavy atoms, canonical, no stereo). Uniqueness and
novelty are those of ``jaxdiff.graphs.metrics`` over these SMILES.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem, RDLogger

from jaxdiff.graphs.metrics import novelty, uniqueness
from jaxdiff.graphs.molecules import ints_to_mol
from jaxdiff.molecules3d.stability import ELEMENTS, bond_orders

RDLogger.DisableLog("rdApp.*")  # sanitisation failures are counted, not logged


def to_mols(positions, atoms, mask=None, elements: Sequence[str] = ELEMENTS) -> list[Chem.Mol]:
    """B unsanitised RDKit molecules (explicit hydrogens, distance-rule bonds) of a padded batch.

    Args:
        positions: (B, n, 3) coordinates in ångström.
        atoms: (B, n) integer indices into ``elements``; -1 (or anything, where ``mask`` is False) on padding.
        mask: (B, n) the real atoms; None means ``atoms >= 0``.
        elements: the element of each atom index, among H C N O F.
    """
    orders = bond_orders(positions, atoms, mask, elements)
    atoms = np.asarray(atoms)
    mask = atoms >= 0 if mask is None else np.asarray(mask).astype(bool)
    return [ints_to_mol(np.where(m, a, -1), o, atom_types=elements) for a, o, m in zip(atoms, orders, mask)]


def mol_smiles(mol: Chem.Mol) -> str | None:
    """Canonical SMILES of the largest fragment of a sanitised copy of ``mol``, hydrogens implicit;
    None when sanitisation fails or ``mol`` is empty."""
    if mol.GetNumAtoms() == 0:
        return None
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except Chem.MolSanitizeException:
        return None
    largest = max(Chem.GetMolFrags(mol, asMols=True), key=lambda m: m.GetNumAtoms())
    return Chem.MolToSmiles(Chem.RemoveHs(largest))


def smiles(positions, atoms, mask=None, elements: Sequence[str] = ELEMENTS) -> list[str | None]:
    """B SMILES (``mol_smiles`` of ``to_mols``), None for invalid molecules. Arguments as ``to_mols``."""
    return [mol_smiles(m) for m in to_mols(positions, atoms, mask, elements)]


def metrics(positions, atoms, mask=None, elements: Sequence[str] = ELEMENTS,
            train_smiles: Iterable[str] | None = None) -> dict[str, float]:
    """Validity, uniqueness (over the valid), their product and, given ``train_smiles``, novelty (over the
    distinct valid), all in [0, 1]. Arguments as ``to_mols``; ``train_smiles`` are SMILES written by
    ``smiles`` (e.g. of the training geometries), so both sides follow the same rule."""
    s = smiles(positions, atoms, mask, elements)
    valid = sum(x is not None for x in s) / max(len(s), 1)
    out = {"validity": valid, "uniqueness": uniqueness(s)}
    out["valid_unique"] = valid * out["uniqueness"]
    if train_smiles is not None:
        out["novelty"] = novelty(s, train_smiles)
    return out
