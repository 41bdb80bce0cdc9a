"""QM9 as 3-D point clouds: the DFT geometries (``Elements``, ``XYZ_Ang``) of the ``qm9pack`` wheel.

Two views, as in Hoogeboom et al. (2022):

- with hydrogens: up to 29 atoms, types ``H C N O F``;
- heavy atoms only: up to 9 atoms, types ``C N O F`` (hydrogens dropped, the rest in file order).

A view is a dict of N-row NumPy arrays (QM9 index order):
    positions float32 (N, A, 3): coordinates in ångström, centred (mean zero over the real atoms),
        padding slots zero;
    atoms int8 (N, A): index into the view's vocabulary, -1 on padding;
    charges int8 (N, A): atomic number (H 1, C 6, N 7, O 8, F 9), 0 on padding;
    mask bool (N, A): real atoms (the first ``num_atoms`` slots);
    num_atoms int8 (N,);
    index int32 (N,): QM9 molecule index (1-based, gdb9 numbering).

The parsed table is cached as an .npz under ``cache_dir`` (about 6 s to build, then well under a second).
``load_qm9_properties`` reads molecular properties (``PROPERTIES``) in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxdiff.data.cache import cached_arrays
from jaxdiff.data.qm9 import read_qm9

VOCABULARY = ("H", "C", "N", "O", "F")
HEAVY_VOCABULARY = ("C", "N", "O", "F")
ATOMIC_NUMBERS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
MAX_ATOMS = 29
MAX_HEAVY_ATOMS = 9
_VERSION = 1
PROPERTIES = {  # Hoogeboom et al.'s conditioning properties: name -> qm9pack column (its units)
    "alpha": "Polarizability_bohr3", "gap": "HOMO_LUMO_gap_au", "homo": "HOMO_au", "lumo": "LUMO_au",
    "mu": "Dipole_debye", "Cv": "Heatcapacity_Cv_cal_mol_K"}


def pack_point_clouds(elements: Sequence[Sequence[str]], coordinates: Sequence, *,
                      vocabulary: Sequence[str] = VOCABULARY, max_atoms: int = MAX_ATOMS) -> dict[str, np.ndarray]:
    """Pads molecules into a point-cloud view (the arrays of the module docstring).

    Args:
        elements: per molecule, its element symbols (length n_i >= 1), each in ``vocabulary``.
        coordinates: per molecule, finite coordinates of shape (n_i, 3) in ångström.
        vocabulary: the atom types; ``atoms`` indexes into it.
        max_atoms: the padded size A; no molecule may have more atoms.

    Returns:
        dict with ``positions`` (centred), ``atoms``, ``charges``, ``mask`` and ``num_atoms``.
    """
    if max_atoms < 1:
        raise ValueError(f"max_atoms must be >= 1, got {max_atoms}")
    if len(elements) != len(coordinates):
        raise ValueError(f"elements and coordinates must have one entry per molecule, got "
                         f"{len(elements)} and {len(coordinates)}")
    unknown = [e for e in vocabulary if e not in ATOMIC_NUMBERS]
    if unknown:
        raise ValueError(f"vocabulary must hold elements of {tuple(ATOMIC_NUMBERS)}, got {unknown}")
    lookup = {e: i for i, e in enumerate(vocabulary)}
    n_mol = len(elements)
    positions = np.zeros((n_mol, max_atoms, 3))
    atoms = np.full((n_mol, max_atoms), -1, np.int8)
    for m, (els, xyz) in enumerate(zip(elements, coordinates)):
        xyz = np.asarray(xyz, np.float64)
        n = len(els)
        if n == 0:
            raise ValueError(f"elements[{m}] is empty: a molecule needs at least one atom")
        if n > max_atoms:
            raise ValueError(f"elements[{m}] has {n} atoms, more than max_atoms={max_atoms}")
        if xyz.shape != (n, 3):
            raise ValueError(f"coordinates[{m}] must have shape ({n}, 3), got {xyz.shape}")
        if not np.all(np.isfinite(xyz)):
            raise ValueError(f"coordinates[{m}] must be finite, got NaN or inf")
        bad = [e for e in els if e not in lookup]
        if bad:
            raise ValueError(f"elements[{m}] holds {bad}, outside the vocabulary {tuple(vocabulary)}")
        positions[m, :n] = xyz - xyz.mean(axis=0)
        atoms[m, :n] = [lookup[e] for e in els]
    numbers = np.array([ATOMIC_NUMBERS[e] for e in vocabulary], np.int8)
    mask = atoms >= 0
    return {"positions": positions.astype(np.float32), "atoms": atoms,
            "charges": np.where(mask, numbers[atoms], 0).astype(np.int8), "mask": mask,
            "num_atoms": mask.sum(axis=1).astype(np.int8)}


def _parse_qm9() -> tuple[list[list[str]], list[np.ndarray], np.ndarray]:
    df = read_qm9(("Elements", "XYZ_Ang"))
    elements = [s.strip("[]").replace("'", "").split(",") for s in df["Elements"]]
    coords = [np.array(s.replace("[", "").replace("]", "").split(","), np.float64).reshape(-1, 3)
              for s in df["XYZ_Ang"]]
    return elements, coords, df["Index"].to_numpy(np.int32)


def _with_hydrogens(cache_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    def build():
        elements, coords, index = _parse_qm9()
        return {**pack_point_clouds(elements, coords), "index": index}

    return cached_arrays(Path(cache_dir) / f"qm9_3d_v{_VERSION}.npz", build)


def heavy_atom_view(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The heavy-atom view (vocabulary ``HEAVY_VOCABULARY``, A = 9) of a with-hydrogens view, recentred."""
    keep = data["atoms"] > 0  # 0 is H, -1 padding
    if keep.sum(axis=1).max(initial=0) > MAX_HEAVY_ATOMS:
        raise ValueError(f"data holds a molecule with more than {MAX_HEAVY_ATOMS} heavy atoms")
    order = np.argsort(~keep, axis=1, kind="stable")[:, :MAX_HEAVY_ATOMS]
    mask = np.take_along_axis(keep, order, axis=1)
    if not mask.any(axis=1).all():
        raise ValueError("data holds a molecule without heavy atoms")
    atoms = np.where(mask, np.take_along_axis(data["atoms"], order, axis=1) - 1, -1).astype(np.int8)
    pos = np.take_along_axis(data["positions"].astype(np.float64), order[..., None], axis=1) * mask[..., None]
    centre = pos.sum(axis=1, keepdims=True) / mask.sum(axis=1)[:, None, None]
    out = {"positions": ((pos - centre) * mask[..., None]).astype(np.float32), "atoms": atoms,
           "charges": np.where(mask, np.take_along_axis(data["charges"], order, axis=1), 0).astype(np.int8),
           "mask": mask, "num_atoms": mask.sum(axis=1).astype(np.int8)}
    return out | {k: v for k, v in data.items() if k not in out}


def load_qm9_3d(hydrogens: bool = True, *,
                cache_dir: str | os.PathLike = "~/.cache/jaxdiff/qm9") -> dict[str, np.ndarray]:
    """All 130,831 QM9 molecules as point clouds (the module docstring's arrays).

    Args:
        hydrogens: True for the with-hydrogens view (A = 29, ``VOCABULARY``), False for heavy atoms only
            (A = 9, ``HEAVY_VOCABULARY``).
        cache_dir: where the parsed table is cached.
    """
    data = _with_hydrogens(cache_dir)
    return data if hydrogens else heavy_atom_view(data)


def load_qm9_properties(names: Sequence[str]) -> dict[str, np.ndarray]:
    """``index`` int32 (130,831,) and float64 (130,831,) per name of ``PROPERTIES``, in QM9 index order (the
    rows of ``load_qm9_3d``). Read from the wheel's CSVs (under a second).

    Args:
        names: keys of ``PROPERTIES``.
    """
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"names must be among {tuple(PROPERTIES)}, got {unknown}")
    df = read_qm9([PROPERTIES[n] for n in names])
    return {"index": df["Index"].to_numpy(np.int32), **{n: df[PROPERTIES[n]].to_numpy(np.float64) for n in names}}


def one_hot(atoms: np.ndarray, num_types: int) -> np.ndarray:
    """float32 (..., num_types) one-hot of ``atoms`` (..., ) int; rows of padding (-1) are zero."""
    atoms = np.asarray(atoms)
    if atoms.size and (atoms.max() >= num_types or atoms.min() < -1):
        raise ValueError(f"atoms must lie in [-1, {num_types}), got values in [{atoms.min()}, {atoms.max()}]")
    return (atoms[..., None] == np.arange(num_types)).astype(np.float32)


def node_count_distribution(num_atoms: np.ndarray, max_atoms: int) -> np.ndarray:
    """float64 (max_atoms + 1,): the empirical probability of each atom count n = 0..max_atoms."""
    num_atoms = np.asarray(num_atoms)
    if num_atoms.ndim != 1 or num_atoms.size == 0:
        raise ValueError(f"num_atoms must be a non-empty (N,) array, got shape {num_atoms.shape}")
    if num_atoms.min() < 1 or num_atoms.max() > max_atoms:
        raise ValueError(f"num_atoms must lie in [1, max_atoms={max_atoms}], "
                         f"got values in [{num_atoms.min()}, {num_atoms.max()}]")
    counts = np.bincount(num_atoms.astype(np.int64), minlength=max_atoms + 1)
    return counts / counts.sum()


def split_by_index(data: dict[str, np.ndarray], test_index) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, test): the rows whose QM9 ``index`` is in ``test_index`` are test; both keep the row order."""
    is_test = np.isin(data["index"], np.asarray(test_index))
    return ({k: v[~is_test] for k, v in data.items()}, {k: v[is_test] for k, v in data.items()})
