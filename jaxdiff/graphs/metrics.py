"""RDKit evaluation of generated molecular graphs.

Generated graphs are integer graphs (see :mod:`jaxdiff.graphs.molecules`):
``atoms`` (B, n) and ``bonds`` (B, n, n) arrays, or equal-length lists of per-graph
(n,) / (n, n) arrays. They become SMILES in one of four modes:

- ``"strict"``: sanitise as generated; fragmented molecules count as valid
  (their SMILES contain ".");
- ``"corrected"``: :func:`correct_valence` first, then as ``"strict"``;
- ``"lcc"``: corrected, then :func:`largest_fragment` (the Graph-DiT convention);
- ``"connect"``: corrected, then :func:`connect_fragments`; valid only if a
  single fragment results.

Distribution metrics follow MOSES: internal diversity, fragment (BRICS) and
scaffold (Bemis-Murcko) cosine similarity, and optional FCD.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import QED, rdFingerprintGenerator, rdMolDescriptors
from rdkit.Chem.Scaffolds import MurckoScaffold
from scipy.sparse.csgraph import connected_components

from jaxdiff.graphs.molecules import ATOMS, ints_to_mol, mol_to_smiles
from jaxdiff.metrics.frechet import frechet_distance, gaussian_stats

MODES = ("strict", "corrected", "lcc", "connect")
PROPERTIES = ("logp", "qed", "tpsa", "num_rings", "mol_wt")

RDLogger.DisableLog("rdApp.*")  # sanitisation failures are counted, not logged


# ---------------------------------------------------------------- graph fixes


def _max_valence(atoms: np.ndarray, atom_types: Sequence[str]) -> np.ndarray:
    """(n,) atom classes -> (n,) RDKit default valence, 0 for padding."""
    table = Chem.GetPeriodicTable()
    caps = np.array([table.GetDefaultValence(symbol) for symbol in atom_types])
    return np.where(atoms >= 0, caps[np.maximum(atoms, 0)], 0)


def _clean(atoms, bonds) -> tuple[np.ndarray, np.ndarray]:
    """Copy with bonds symmetrised from the upper triangle and zero on the diagonal and padding."""
    atoms, bonds = np.asarray(atoms), np.asarray(bonds)
    upper = np.triu(bonds, k=1)
    real = atoms >= 0
    return atoms.copy(), (upper + upper.T) * (real[:, None] & real[None, :])


def _components(atoms: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """(n,) component label of every real atom, -1 for padding; labels count from 0."""
    labels = np.full(atoms.shape, -1)
    real = np.flatnonzero(atoms >= 0)
    if real.size:
        labels[real] = connected_components(bonds[np.ix_(real, real)] > 0, directed=False)[1]
    return labels


def correct_valence(atoms, bonds, atom_types: Sequence[str] = ATOMS) -> tuple[np.ndarray, np.ndarray]:
    """Lower bond orders until no atom exceeds its default valence. (n,), (n, n) -> same.

    Repeatedly takes the atom with the largest excess valence and lowers its
    highest-order bond by one step (a single bond is removed), preferring the
    neighbour with the larger excess, then the lower index. Bond class = bond order.
    """
    atoms, bonds = _clean(atoms, bonds)
    caps = _max_valence(atoms, atom_types)
    while True:
        excess = bonds.sum(1) - caps
        i = int(np.argmax(excess))
        if excess[i] <= 0:
            return atoms, bonds
        j = max(np.flatnonzero(bonds[i]), key=lambda k: (bonds[i, k], excess[k], -k))
        bonds[i, j] -= 1
        bonds[j, i] -= 1


def largest_fragment(atoms, bonds) -> tuple[np.ndarray, np.ndarray]:
    """Keep the connected component with the most atoms (ties: the lowest atom index).

    (n,), (n, n) -> same shapes; the dropped atoms become padding (-1).
    """
    atoms, bonds = _clean(atoms, bonds)
    labels = _components(atoms, bonds)
    if labels.max() <= 0:
        return atoms, bonds
    keep = labels == np.argmax(np.bincount(labels[labels >= 0]))
    return np.where(keep, atoms, -1), bonds * (keep[:, None] & keep[None, :])


def connect_fragments(atoms, bonds, atom_types: Sequence[str] = ATOMS) -> tuple[np.ndarray, np.ndarray]:
    """Join fragments by single bonds between atoms with free valence. (n,), (n, n) -> same.

    Components are visited largest first; each join links the atoms with the most
    free valence (ties: lowest index) of the first pair of components that both
    have one. Stops when one fragment is left or no pair can be joined.
    """
    atoms, bonds = _clean(atoms, bonds)
    caps = _max_valence(atoms, atom_types)
    while True:
        labels = _components(atoms, bonds)
        free = caps - bonds.sum(1)
        by_size = np.argsort(-np.bincount(labels[labels >= 0]), kind="stable")
        best = {}
        for c in by_size:
            members = np.flatnonzero((labels == c) & (free > 0))
            if members.size:
                best[c] = members[np.argmax(free[members])]
        pair = next(((a, b) for a, b in itertools.combinations(by_size, 2) if a in best and b in best), None)
        if pair is None:
            return atoms, bonds
        i, j = best[pair[0]], best[pair[1]]
        bonds[i, j] = bonds[j, i] = 1


def _graph_list(atoms, bonds) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(atoms) != len(bonds):
        raise ValueError(f"atoms and bonds must hold the same number of graphs, got {len(atoms)} and {len(bonds)}")
    return [(np.asarray(a), np.asarray(b)) for a, b in zip(atoms, bonds)]


def graph_smiles(atoms, bonds, mode: str = "strict", atom_types: Sequence[str] = ATOMS) -> list[str | None]:
    """Canonical SMILES of each graph after the ``mode`` post-processing (see module doc); None if invalid.

    atoms (B, n), bonds (B, n, n), or lists of per-graph arrays.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out = []
    for a, b in _graph_list(atoms, bonds):
        if mode != "strict":
            a, b = correct_valence(a, b, atom_types)
        if mode == "lcc":
            a, b = largest_fragment(a, b)
        elif mode == "connect":
            a, b = connect_fragments(a, b, atom_types)
        smiles = mol_to_smiles(ints_to_mol(a, b, atom_types=atom_types))
        out.append(None if mode == "connect" and smiles is not None and "." in smiles else smiles)
    return out


def validity(atoms, bonds, atom_types: Sequence[str] = ATOMS) -> dict[str, float]:
    """Fractions of graphs that are valid in each mode, plus ``valid_connected`` (strict and one fragment).

    Keys: valid, valid_connected, valid_corrected, valid_lcc, valid_connect.
    """
    smiles = {mode: graph_smiles(atoms, bonds, mode, atom_types) for mode in MODES}
    return _validity(smiles)


def _validity(smiles: dict[str, list[str | None]]) -> dict[str, float]:
    n = max(len(smiles["strict"]), 1)
    frac = {mode: sum(s is not None for s in values) / n for mode, values in smiles.items()}
    return {"valid": frac["strict"],
            "valid_connected": sum(s is not None and "." not in s for s in smiles["strict"]) / n,
            "valid_corrected": frac["corrected"], "valid_lcc": frac["lcc"], "valid_connect": frac["connect"]}


# ---------------------------------------------------------------- set metrics


def uniqueness(smiles: Sequence[str | None]) -> float:
    """Distinct valid SMILES / valid SMILES (None = invalid); 0.0 when none is valid."""
    valid = [s for s in smiles if s is not None]
    return len(set(valid)) / len(valid) if valid else 0.0


def novelty(generated_smiles: Sequence[str | None], train_smiles: Iterable[str]) -> float:
    """Fraction of the distinct valid generated SMILES not in ``train_smiles``; 0.0 when none is valid.

    Both sides must be canonical SMILES written the same way (e.g. by :func:`graph_smiles`).
    """
    unique = {s for s in generated_smiles if s is not None}
    return len(unique - set(train_smiles)) / len(unique) if unique else 0.0


def _to_mols(smiles_or_mols) -> list[Chem.Mol | None]:
    """SMILES / molecules -> sanitised molecules, None where invalid."""
    out = []
    for x in smiles_or_mols:
        if isinstance(x, Chem.Mol):
            x = mol_to_smiles(x)
        out.append(Chem.MolFromSmiles(x) if x else None)
    return out


def _valid(smiles_or_mols) -> list[Chem.Mol]:
    return [m for m in _to_mols(smiles_or_mols) if m is not None]


def _elements(mols: Sequence[Chem.Mol]) -> set[str]:
    return {a.GetSymbol() for m in mols for a in m.GetAtoms()}


def atom_type_coverage(generated, reference) -> float:
    """Fraction of the elements seen in ``reference`` that valid ``generated`` molecules use.

    Both: sequences of SMILES or molecules (invalid ones ignored).
    """
    return _coverage(_valid(generated), _valid(reference))


def _coverage(gen: Sequence[Chem.Mol], ref: Sequence[Chem.Mol]) -> float:
    ref_elements = _elements(ref)
    if not ref_elements:
        raise ValueError("reference has no valid molecule")
    return len(_elements(gen) & ref_elements) / len(ref_elements)


def internal_diversity(smiles_or_mols) -> float:
    """1 - mean Tanimoto similarity over distinct pairs of valid molecules (Morgan, radius 2, 2048 bits).

    Invalid entries are ignored; NaN with fewer than two valid molecules.
    """
    return _diversity(_valid(smiles_or_mols))


def _diversity(mols: Sequence[Chem.Mol]) -> float:
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [generator.GetFingerprint(m) for m in mols]
    if len(fps) < 2:
        return float("nan")
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fp, fps[i + 1:])) for i, fp in enumerate(fps[:-1]))
    return 1.0 - total / (len(fps) * (len(fps) - 1) / 2)


def _fragment_counts(mols: Sequence[Chem.Mol]) -> Counter:
    """BRICS fragments (SMILES with dummy attachment atoms) counted over ``mols``."""
    return Counter(s for m in mols for s in Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(m)).split("."))


def _scaffold_counts(mols: Sequence[Chem.Mol]) -> Counter:
    """Bemis-Murcko scaffold SMILES counted over ``mols``; acyclic molecules have none."""
    scaffolds = (Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(m)) for m in mols)
    return Counter(s for s in scaffolds if s)


def _cosine(a: Counter, b: Counter) -> float:
    """Cosine similarity of two count vectors; NaN if either is empty."""
    if not a or not b:
        return float("nan")
    dot = sum(a[k] * b[k] for k in a.keys() & b.keys())
    return float(dot / (np.sqrt(sum(v * v for v in a.values())) * np.sqrt(sum(v * v for v in b.values()))))


def fragment_similarity(generated, reference) -> float:
    """MOSES Frag: cosine similarity of BRICS-fragment count vectors. Inputs: SMILES or molecules."""
    return _cosine(_fragment_counts(_valid(generated)), _fragment_counts(_valid(reference)))


def scaffold_similarity(generated, reference) -> float:
    """MOSES Scaf: cosine similarity of Bemis-Murcko scaffold count vectors; NaN if a side has no ring."""
    return _cosine(_scaffold_counts(_valid(generated)), _scaffold_counts(_valid(reference)))


# ---------------------------------------------------------------- oracles


def mol_properties(mol: Chem.Mol) -> dict[str, float]:
    """Exact RDKit oracles of a sanitised molecule: Crippen logP, QED, TPSA, ring count, average mol weight.

    logP, TPSA and weight are the values QED computes (Crippen.MolLogP,
    rdMolDescriptors.CalcTPSA, Descriptors.MolWt), so they are computed once.
    """
    qed_props = QED.properties(mol)
    return {"logp": qed_props.ALOGP, "qed": QED.qed(mol, qedProperties=qed_props), "tpsa": qed_props.PSA,
            "num_rings": float(rdMolDescriptors.CalcNumRings(mol)), "mol_wt": qed_props.MW}


def properties(smiles_or_mols) -> dict[str, np.ndarray]:
    """{name: float64 (N,)} of :data:`PROPERTIES` for SMILES or molecules; NaN where invalid."""
    out = {name: np.full(len(smiles_or_mols), np.nan) for name in PROPERTIES}
    for i, mol in enumerate(_to_mols(smiles_or_mols)):
        if mol is not None:
            for name, value in mol_properties(mol).items():
                out[name][i] = value
    return out


def chemnet_stats(smiles: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Mean (512,) and covariance (512, 512) of ChemNet activations of the valid SMILES (``fcd`` package, CPU).

    Compute a reference set's statistics once and pass them to :func:`fcd` for every generated set.
    """
    try:
        import fcd as fcd_lib
    except ImportError as e:
        raise ImportError("FCD needs the `fcd` package (and torch): pip install torch==2.13.0 fcd") from e
    valid = [s for s in smiles if s is not None]
    if len(valid) < 2:
        raise ValueError(f"smiles needs at least 2 valid SMILES for ChemNet statistics, got {len(valid)}")
    if not hasattr(chemnet_stats, "model"):
        chemnet_stats.model = fcd_lib.load_ref_model()
    # n_jobs=0: no DataLoader worker, so no fork of the multithreaded JAX process
    return gaussian_stats(fcd_lib.get_predictions(chemnet_stats.model, valid, n_jobs=0, device="cpu"))


def fcd(generated_smiles: Sequence[str | None], reference) -> float:
    """Frechet ChemNet Distance of the valid generated SMILES to ``reference``.

    ``reference``: SMILES, or the ``(mean, cov)`` of :func:`chemnet_stats`.
    """
    if isinstance(reference, tuple):
        ref_mu, ref_cov = reference
    else:
        ref_mu, ref_cov = chemnet_stats(list(reference))
    mu, cov = chemnet_stats(generated_smiles)
    return frechet_distance(mu, cov, ref_mu, ref_cov)


# ---------------------------------------------------------------- summary


def evaluate(atoms, bonds, train_smiles: Sequence[str], test_smiles: Sequence[str] | None = None, *,
             mode: str = "lcc", with_fcd: bool | None = None, fcd_reference=None, atom_types: Sequence[str] = ATOMS) -> dict[str, float]:
    """All metrics of generated graphs atoms (B, n), bonds (B, n, n).

    Validity is reported for every mode; uniqueness, novelty (against
    ``train_smiles``) and the distribution metrics use the SMILES of ``mode``.
    The reference for atom coverage, fragment / scaffold similarity and FCD is
    ``test_smiles``, else ``train_smiles``. ``with_fcd``: None = when ``fcd`` is installed;
    ``fcd_reference``: precomputed :func:`chemnet_stats` of the reference (computed here if None).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    smiles = {m: graph_smiles(atoms, bonds, m, atom_types) for m in MODES}
    generated = smiles[mode]
    gen_mols = _valid(generated)
    reference = list(train_smiles if test_smiles is None else test_smiles)
    ref_mols = _valid(reference)
    out = _validity(smiles)
    out.update(uniqueness=uniqueness(generated), novelty=novelty(generated, train_smiles),
               atom_type_coverage=_coverage(gen_mols, ref_mols), internal_diversity=_diversity(gen_mols),
               fragment_similarity=_cosine(_fragment_counts(gen_mols), _fragment_counts(ref_mols)),
               scaffold_similarity=_cosine(_scaffold_counts(gen_mols), _scaffold_counts(ref_mols)))
    if with_fcd or (with_fcd is None and importlib.util.find_spec("fcd") is not None):
        out["fcd"] = fcd(generated, reference if fcd_reference is None else fcd_reference)
    return out
