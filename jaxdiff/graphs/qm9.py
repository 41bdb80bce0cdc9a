"""QM9 (130,831 small organic molecules, <= 9 heavy atoms C, N, O, F) as integer graphs.

Each SMILES of :func:`jaxdiff.data.qm9.read_qm9` is parsed once, encoded by
:func:`jaxdiff.graphs.molecules.mol_to_ints` (kekulised heavy-atom graph, implicit hydrogens),
rebuilt from the graph and sanitised; the SMILES and the RDKit property oracles are computed
from that rebuilt molecule, so they are exactly those of the graph. Molecules with a formally
charged atom (zwitterions) or more than ``max_nodes`` heavy atoms are skipped and counted.

The processed arrays are cached as an uncompressed .npz (plus a .json with the
build statistics) under ``cache_dir``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from jaxdiff.data.cache import cached_arrays
from jaxdiff.data.qm9 import read_qm9
from jaxdiff.graphs.metrics import PROPERTIES, mol_properties
from jaxdiff.graphs.molecules import ints_to_mol, mol_to_ints

HARTREE_EV = 27.211386245988  # CODATA 2018
_VERSION = 1


def _skip_reason(mol, max_nodes: int) -> str | None:
    if mol is None:
        return "unparsable SMILES"
    if any(atom.GetFormalCharge() for atom in mol.GetAtoms()):
        return "charged atom"
    if mol.GetNumHeavyAtoms() > max_nodes:
        return f"more than {max_nodes} heavy atoms"
    return None


def build_qm9(max_nodes: int = 9) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Parse and encode QM9 (about a minute or two on one core). Returns (data, skipped counts by reason)."""
    RDLogger.DisableLog("rdApp.*")
    df = read_qm9(("SMILES", "HOMO_LUMO_gap_au", "Dipole_debye"))
    skipped = Counter()
    rows, atoms, bonds, smiles = [], [], [], []
    props = {name: [] for name in PROPERTIES}
    for row, smi in enumerate(df["SMILES"].tolist()):
        mol = Chem.MolFromSmiles(smi)
        reason = _skip_reason(mol, max_nodes)
        if reason is not None:
            skipped[reason] += 1
            continue
        a, b = mol_to_ints(mol, max_nodes)
        graph_mol = ints_to_mol(a, b, sanitize=True)
        for name, value in mol_properties(graph_mol).items():
            props[name].append(value)
        rows.append(row)
        atoms.append(a)
        bonds.append(b)
        smiles.append(Chem.MolToSmiles(graph_mol))
    data = {"atoms": np.stack(atoms).astype(np.int8), "bonds": np.stack(bonds).astype(np.int8),
            "smiles": np.array(smiles), "index": df["Index"].to_numpy(np.int32)[rows]}
    data.update({name: np.array(values, np.float64) for name, values in props.items()})
    data["homo_lumo_gap"] = df["HOMO_LUMO_gap_au"].to_numpy(np.float64)[rows] * HARTREE_EV
    data["dipole"] = df["Dipole_debye"].to_numpy(np.float64)[rows]
    return data, dict(skipped)


def load_qm9(max_nodes: int = 9, *, cache_dir: str | os.PathLike = "~/.cache/jaxdiff/qm9") -> dict[str, np.ndarray]:
    """QM9 as arrays, built on first use (a minute or two) and cached (then about a second).

    Returns a dict of N-row arrays, in QM9 index order:
        atoms int8 (N, max_nodes): index into ``molecules.ATOMS``, -1 padding;
        bonds int8 (N, max_nodes, max_nodes): index into ``molecules.BONDS``;
        smiles str (N,): canonical RDKit SMILES of the graph (no stereo, no charges);
        index int32 (N,): QM9 molecule index (1-based, gdb9 numbering);
        logp, qed, tpsa, num_rings, mol_wt float64 (N,): RDKit oracles of the graph;
        homo_lumo_gap float64 (N,): DFT B3LYP HOMO-LUMO gap in eV;
        dipole float64 (N,): DFT dipole moment in debye.
    """
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
    path = Path(cache_dir).expanduser() / f"qm9_v{_VERSION}_n{max_nodes}.npz"
    return cached_arrays(path, lambda: _build(path, max_nodes))


def _build(path: Path, max_nodes: int) -> dict[str, np.ndarray]:
    start = time.perf_counter()
    data, skipped = build_qm9(max_nodes)
    seconds = time.perf_counter() - start
    info = {"kept": len(data["index"]), "skipped": skipped, "build_seconds": round(seconds, 1)}
    path.with_suffix(".json").write_text(json.dumps(info, indent=1))
    print(f"QM9: built in {seconds:.1f} s, kept {info['kept']}, skipped {skipped}; cached at {path}")
    return data


def subset(data: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    """The rows ``idx`` (indices or a boolean mask) of every array in ``data``."""
    return {k: v[idx] for k, v in data.items()}


def split_qm9(data: dict[str, np.ndarray], seed: int = 0,
              test_fraction: float = 0.1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, test): the first ``round(test_fraction * N)`` rows of ``default_rng(seed).permutation(N)`` are test.

    Deterministic for a given N and seed; both halves keep the original row order.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(data["index"])
    perm = np.random.default_rng(seed).permutation(n)
    is_test = np.zeros(n, bool)
    is_test[perm[:round(test_fraction * n)]] = True
    return subset(data, ~is_test), subset(data, is_test)
