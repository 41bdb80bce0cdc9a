"""Bond orders from interatomic distances and the stability of generated molecules (Hoogeboom et al., 2022).

A pair of atoms is bonded when its distance is under the typical single-bond length plus a margin of
0.10 Å; the bond is double under the double-bond length plus 0.05 Å and triple under the triple-bond
length plus 0.03 Å, where such bonds exist for the pair (the lengths in ``SINGLE``, ``DOUBLE``,
``TRIPLE``, in picometres, are the tables of Hoogeboom et al.; the margins were tuned by them to the
QM9 geometries). An atom is stable when the sum of its bond orders equals its valency (``VALENCY``:
H 1, C 4, N 3, O 2, F 1); a molecule is stable when all its atoms are. Charged atoms (zwitterions,
nitro groups) are unstable under this rule, which is why real QM9 molecules score below 100%.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ELEMENTS = ("H", "C", "N", "O", "F")
VALENCY = {"H": 1, "C": 4, "N": 3, "O": 2, "F": 1}
SINGLE = {("H", "H"): 74, ("H", "C"): 109, ("H", "N"): 101, ("H", "O"): 96, ("H", "F"): 92,
          ("C", "C"): 154, ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135,
          ("N", "N"): 145, ("N", "O"): 140, ("N", "F"): 136,
          ("O", "O"): 148, ("O", "F"): 142, ("F", "F"): 142}
DOUBLE = {("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("N", "N"): 125, ("N", "O"): 121, ("O", "O"): 121}
TRIPLE = {("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110}
MARGINS = (10, 5, 3)  # pm, added to the single, double and triple bond lengths


def _table(lengths: dict, margin: int, elements: Sequence[str]) -> np.ndarray:
    """(K, K) thresholds in Å (symmetric); -inf where the pair has no such bond."""
    k = len(elements)
    out = np.full((k, k), -np.inf)
    for i, a in enumerate(elements):
        for j, b in enumerate(elements):
            pm = lengths.get((a, b), lengths.get((b, a)))
            if pm is not None:
                out[i, j] = (pm + margin) / 100.0
    return out


def _check(positions, atoms, mask, elements) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    unknown = [e for e in elements if e not in VALENCY]
    if unknown:
        raise ValueError(f"elements must be among {tuple(VALENCY)}, got {unknown}")
    positions = np.asarray(positions, np.float64)
    atoms = np.asarray(atoms)
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (B, n, 3), got {positions.shape}")
    if atoms.shape != positions.shape[:2] or not np.issubdtype(atoms.dtype, np.integer):
        raise ValueError(f"atoms must be integers of shape (B, n) = {positions.shape[:2]}, got "
                         f"{atoms.dtype} {atoms.shape}")
    mask = atoms >= 0 if mask is None else np.asarray(mask).astype(bool)
    if mask.shape != atoms.shape:
        raise ValueError(f"mask must have shape (B, n) = {atoms.shape}, got {mask.shape}")
    real = atoms[mask]
    if real.size and (real.min() < 0 or real.max() >= len(elements)):
        raise ValueError(f"atoms must lie in [0, {len(elements)}) on real atoms, got values in "
                         f"[{real.min()}, {real.max()}]")
    if not np.all(np.isfinite(positions[mask])):
        raise ValueError("positions must be finite on real atoms, got NaN or inf")
    return positions, np.where(mask, atoms, 0), mask


def bond_orders(positions, atoms, mask=None, elements: Sequence[str] = ELEMENTS) -> np.ndarray:
    """int8 (B, n, n) bond orders 0-3 by Hoogeboom's distance rule; zero on the diagonal and padding.

    Args:
        positions: (B, n, 3) coordinates in ångström.
        atoms: (B, n) integer indices into ``elements``; -1 (or anything, where ``mask`` is False) on padding.
        mask: (B, n) the real atoms; None means ``atoms >= 0``.
        elements: the element of each atom index, among H C N O F.
    """
    positions, atoms, mask = _check(positions, atoms, mask, elements)
    dist = np.sqrt(np.sum(np.square(positions[:, :, None] - positions[:, None]), axis=-1))
    pair = (atoms[:, :, None], atoms[:, None, :])
    order = sum((dist < _table(t, m, elements)[pair]).astype(np.int8)
                for t, m in zip((SINGLE, DOUBLE, TRIPLE), MARGINS))
    n = atoms.shape[1]
    keep = mask[:, :, None] & mask[:, None, :] & ~np.eye(n, dtype=bool)
    return np.where(keep, order, 0).astype(np.int8)


def stability(positions, atoms, mask=None, elements: Sequence[str] = ELEMENTS) -> dict:
    """Atom and molecule stability of a padded batch.

    Args:
        positions: (B, n, 3) coordinates in ångström.
        atoms: (B, n) integer indices into ``elements``; -1 (or anything, where ``mask`` is False) on padding.
        mask: (B, n) the real atoms; None means ``atoms >= 0``.
        elements: the element of each atom index, among H C N O F.

    Returns:
        dict with ``valence`` int (B, n) (sum of bond orders, 0 on padding), ``atom_stable`` bool (B, n)
        (False on padding), ``molecule_stable`` bool (B,), ``atom_stability`` (stable atoms over all real
        atoms) and ``molecule_stability`` (stable molecules over B) as floats.
    """
    orders = bond_orders(positions, atoms, mask, elements)
    _, atoms, mask = _check(positions, atoms, mask, elements)
    valence = orders.astype(np.int32).sum(axis=2)
    wanted = np.array([VALENCY[e] for e in elements])[atoms]
    atom_stable = (valence == wanted) & mask
    molecule_stable = np.all(atom_stable | ~mask, axis=1)
    return {"valence": valence, "atom_stable": atom_stable, "molecule_stable": molecule_stable,
            "atom_stability": float(atom_stable.sum() / max(mask.sum(), 1)),
            "molecule_stability": float(molecule_stable.mean()) if len(molecule_stable) else 0.0}
