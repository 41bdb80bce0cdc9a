"""Property conditioning of equivariant diffusion, as Hoogeboom et al.'s conditional EDM.

A molecule's context is its vector of properties (``PROPERTIES``), each normalised by the training
molecules' mean and mean absolute deviation (``PropertyNorm``); ``egnn.EGNNDynamics`` concatenates it
to every atom's features. To sample, target properties are drawn jointly with the atom count
(``draw_targets``: those of a uniformly drawn training molecule, the empirical joint distribution; the
reference bins each property into a histogram per atom count).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxdiff.data.qm9_3d import PROPERTIES as DFT_PROPERTIES
from jaxdiff.data.qm9_3d import load_qm9_properties

PROPERTIES = (*DFT_PROPERTIES, "num_heavy_atoms")


def num_heavy_atoms(atoms, elements: Sequence[str]) -> np.ndarray:
    """int (B,): the atoms of each molecule that are not hydrogen.

    Args:
        atoms: (B, n) indices into ``elements``, negative on padding.
        elements: the element of each atom index.
    """
    atoms = np.asarray(atoms)
    heavy = np.array([e != "H" for e in elements])
    return np.sum((atoms >= 0) & heavy[np.maximum(atoms, 0)], axis=-1)


def molecule_properties(view: dict[str, np.ndarray], names: Sequence[str], elements: Sequence[str]) -> np.ndarray:
    """float64 (N, C): the properties ``names`` of the N molecules of a QM9 point-cloud view.

    Args:
        view: ``index`` (QM9 numbering) and ``atoms`` of a view of ``jaxdiff.data.qm9_3d.load_qm9_3d``.
        names: keys of ``PROPERTIES``: DFT properties of the data set (their units) or ``num_heavy_atoms``.
        elements: the view's vocabulary.
    """
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"names must be among {PROPERTIES}, got {unknown}")
    dft = [n for n in names if n in DFT_PROPERTIES]
    table = load_qm9_properties(dft) if dft else {}
    rows = np.searchsorted(table["index"], view["index"]) if dft else None
    return np.stack([num_heavy_atoms(view["atoms"], elements).astype(np.float64) if n == "num_heavy_atoms"
                     else table[n][rows] for n in names], axis=-1).reshape(len(view["atoms"]), len(names))


@dataclasses.dataclass(frozen=True)
class PropertyNorm:
    """``(values - mean) / mad`` per property, mean and mean absolute deviation of the training values.

    Attributes:
        mean: (C,) training means.
        mad: (C,) training mean absolute deviations, > 0.
    """

    mean: np.ndarray
    mad: np.ndarray

    @classmethod
    def fit(cls, values) -> PropertyNorm:
        """The norm of training ``values`` (N, C), N >= 1; no property may be constant."""
        values = np.asarray(values, np.float64)
        if values.ndim != 2 or len(values) == 0:
            raise ValueError(f"values must have shape (N, C) with N >= 1, got {values.shape}")
        mean = values.mean(axis=0)
        mad = np.abs(values - mean).mean(axis=0)
        if np.any(mad == 0):
            raise ValueError(f"values must vary: property columns {np.flatnonzero(mad == 0).tolist()} are constant")
        return cls(mean, mad)

    def __call__(self, values) -> np.ndarray:
        """float32 (..., C): the normalised context of ``values`` (..., C)."""
        values = np.asarray(values, np.float64)
        if values.shape[-1:] != self.mean.shape:
            raise ValueError(f"values must have shape (..., {len(self.mean)}), got {values.shape}")
        return ((values - self.mean) / self.mad).astype(np.float32)


def draw_targets(rng: np.random.Generator, num: int, num_atoms, values) -> tuple[np.ndarray, np.ndarray]:
    """(atom counts (num,), properties (num, C)) of ``num`` training molecules drawn uniformly with
    replacement: targets drawn jointly with the atom count.

    Args:
        rng: a NumPy generator.
        num: how many targets.
        num_atoms: (N,) the training molecules' atom counts.
        values: (N, C) their properties.
    """
    num_atoms, values = np.asarray(num_atoms), np.asarray(values)
    if num_atoms.ndim != 1 or values.ndim != 2 or len(values) != len(num_atoms) or len(num_atoms) == 0:
        raise ValueError(f"num_atoms (N,) and values (N, C) must describe the same N >= 1 molecules, got "
                         f"{num_atoms.shape} and {values.shape}")
    rows = rng.integers(0, len(num_atoms), num)
    return num_atoms[rows], values[rows]


def shuffle_within_size(values, sizes, rng: np.random.Generator) -> np.ndarray:
    """``values`` (N, ...) permuted among the molecules of each size in ``sizes`` (N,): targets that keep
    only what the atom count says, the baseline of a conditional model whose sampling fixes the count."""
    values, sizes = np.asarray(values), np.asarray(sizes)
    if len(values) != len(sizes):
        raise ValueError(f"values and sizes must describe the same molecules, got {len(values)} and {len(sizes)}")
    out = values.copy()
    for n in np.unique(sizes):
        rows = np.flatnonzero(sizes == n)
        out[rows] = values[rng.permutation(rows)]
    return out
