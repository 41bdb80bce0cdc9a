"""QM9 point clouds (``jaxdiff.data.qm9_3d``) held out exactly where the graph benchmarks hold out, and
the SMILES of their geometries (the training side of novelty)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxdiff.data.cache import cached_arrays
from jaxdiff.data.qm9_3d import HEAVY_VOCABULARY, VOCABULARY, load_qm9_3d, split_by_index
from jaxdiff.graphs.qm9 import load_qm9, split_qm9

_SMILES_VERSION = 1  # bump when chem.smiles or the point clouds change


def split_qm9_3d(data: dict[str, np.ndarray], seed: int = 0,
                 test_fraction: float = 0.1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, test) of a point-cloud view: test is the molecules of the graph test set of
    ``jaxdiff.graphs.qm9.split_qm9(load_qm9(), seed, test_fraction)``.

    Molecules the graph set skips (charged atoms, unparsable SMILES) go to train: no molecule a graph
    model is evaluated on is trained on here.

    Args:
        data: a view of ``jaxdiff.data.qm9_3d.load_qm9_3d`` (or a row subset of one).
        seed: the graph split's seed.
        test_fraction: the graph split's test fraction, in (0, 1).
    """
    _, graph_test = split_qm9(load_qm9(), seed=seed, test_fraction=test_fraction)
    return split_by_index(data, graph_test["index"])


def geometry_smiles(view: dict[str, np.ndarray], elements: Sequence[str] = VOCABULARY,
                    chunk: int = 10_000) -> np.ndarray:
    """str (N,): ``chem.smiles`` of every molecule of a point-cloud view, '' where invalid.

    Args:
        view: ``positions``, ``atoms`` and ``mask`` of N molecules (a view of ``load_qm9_3d`` or rows of one).
        elements: the view's vocabulary.
        chunk: molecules per call of ``chem.smiles`` (bounds the (chunk, A, A) pair arrays).
    """
    from jaxdiff.molecules3d.chem import smiles

    out = []
    for i in range(0, len(view["atoms"]), chunk):
        rows = slice(i, i + chunk)
        out += [s or "" for s in smiles(view["positions"][rows], view["atoms"][rows], view["mask"][rows], elements)]
    return np.array(out, dtype=str)


def qm9_smiles(hydrogens: bool = True, *, cache_dir: str | os.PathLike = "~/.cache/jaxdiff/qm9") -> dict[str, np.ndarray]:
    """``index`` int32 (130,831,) and ``smiles`` str (130,831,): ``geometry_smiles`` of every QM9 geometry of
    a view, '' where invalid. Cached under ``cache_dir`` (about 35 s to build on one CPU core).

    Args:
        hydrogens: the with-hydrogens view (True) or heavy atoms only.
        cache_dir: where the table (and the point clouds) are cached.
    """
    def build():
        data = load_qm9_3d(hydrogens, cache_dir=cache_dir)
        return {"index": data["index"], "smiles": geometry_smiles(data, VOCABULARY if hydrogens else HEAVY_VOCABULARY)}

    name = f"qm9_3d_smiles_{'h' if hydrogens else 'heavy'}_v{_SMILES_VERSION}.npz"
    return cached_arrays(Path(cache_dir) / name, build)


def training_smiles(index, hydrogens: bool = True, *, cache_dir: str | os.PathLike = "~/.cache/jaxdiff/qm9") -> set[str]:
    """The distinct valid ``qm9_smiles`` of the QM9 molecules ``index`` (e.g. a training split's ``index``).

    Args:
        index: QM9 indices (1-based gdb9 numbering), each in the data set.
        hydrogens: the view the SMILES are read from.
        cache_dir: as ``qm9_smiles``.
    """
    table = qm9_smiles(hydrogens, cache_dir=cache_dir)
    index = np.asarray(index)
    rows = np.searchsorted(table["index"], index)
    if index.size and (rows.max() >= len(table["index"]) or np.any(table["index"][rows] != index)):
        raise ValueError("index must hold QM9 indices (1-based gdb9 numbering) of the data set")
    return set(table["smiles"][rows].tolist()) - {""}


def training_half(train: dict[str, np.ndarray], half: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows of a training view in one of two disjoint random halves, as Hoogeboom et al. split QM9's
    training set: ``"a"`` trains the property regressor that scores a conditional model, ``"b"`` the model.

    Args:
        train: a point-cloud view (every array indexed by molecule first).
        half: ``"a"`` or ``"b"``.
        seed: the permutation's seed.
    """
    if half not in ("a", "b"):
        raise ValueError(f"half must be 'a' or 'b', got {half!r}")
    n = len(train["index"])
    perm = np.random.default_rng(seed).permutation(n)
    pick = np.sort(perm[:n // 2] if half == "a" else perm[n // 2:])
    return {k: v[pick] for k, v in train.items()}
