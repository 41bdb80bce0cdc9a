"""Synthetic coordinates for molecular graphs (SyCo, Kuvshinov et al., 2024, "Lift Your Molecules").

A heavy-atom graph (SMILES) is lifted to a Euclidean point cloud by one RDKit ETKDGv3 conformer
(hydrogens added for the embedding, then dropped; deterministic ``seed``), centred on its heavy atoms.
A point cloud is then a 3-D diffusion model's data, and ``jaxdiff.molecules3d.decoder`` maps generated
point clouds back to graphs.

Graphs here keep aromaticity, so a bond is one of ``BOND_TYPES``: the graph side's kekulised classes
(``jaxdiff.graphs.molecules.BONDS``: none, single, double, triple) followed by aromatic (class 4). A
benzene ring's Kekulé pattern is not a function of its geometry (all its bonds have one length), its
aromatic class is. An atom is one of ``ATOM_TYPES``: the graph side's ``ATOMS`` (C, N, O, F) followed
by ``nH`` (class 4), an aromatic nitrogen carrying a hydrogen, which the heavy-atom graph cannot
otherwise place (pyrrole-type rings with several nitrogens). ``encode`` gives such a graph
(``jaxdiff.graphs.molecules.mol_to_ints(mol, n, kekulize=False)`` with the ``nH`` class); ``to_mol``
turns a graph back into a sanitised RDKit molecule (or None), whose kekulised integer graph
(``jaxdiff.graphs.molecules.mol_to_ints``) the graph metrics read.

Arrays of a conformer set (N rows): positions float32 (N, n, 3) in ångström, centred, padding zero;
atoms int8 (N, n) index into ``ATOM_TYPES``, -1 padding; bonds int8 (N, n, n) index into ``BOND_TYPES``;
mask bool (N, n); num_atoms int8 (N,); embedded bool (N,): False where ETKDG found no conformer (those
rows keep their graph and zero positions; they are counted, never dropped silently).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem

from jaxdiff.data.cache import cached_arrays
from jaxdiff.graphs.molecules import AROMATIC_BONDS, ATOMS, mol_to_ints
from jaxdiff.graphs.qm9 import load_qm9, split_qm9

BOND_TYPES = ("none", "single", "double", "triple", "aromatic")
ATOM_TYPES = (*ATOMS, "nH")
ELEMENTS = (*ATOMS, "N")  # the element of each of ATOM_TYPES
_VERSION = 3


def parse_smiles(smiles: str) -> Chem.Mol:
    """The sanitised RDKit molecule of ``smiles``; ValueError if RDKit cannot parse it."""
    mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles else None
    if mol is None:
        raise ValueError(f"smiles must be a SMILES string RDKit can parse, got {smiles!r}")
    return mol


def encode(mol: Chem.Mol, max_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """(atoms (max_nodes,) into ``ATOM_TYPES``, -1 padding; bonds (max_nodes, max_nodes) into ``BOND_TYPES``)
    of a sanitised molecule (hydrogen atoms dropped): ``mol_to_ints(mol, max_nodes, kekulize=False)``
    with every aromatic nitrogen that carries a hydrogen in class ``nH``.

    Args:
        mol: the molecule (atoms among C N O F).
        max_nodes: the padded size.
    """
    mol = Chem.RemoveHs(mol)
    atoms, bonds = mol_to_ints(mol, max_nodes, kekulize=False)
    for a in mol.GetAtoms():
        if a.GetSymbol() == "N" and a.GetIsAromatic() and a.GetTotalNumHs() > 0:
            atoms[a.GetIdx()] = ATOM_TYPES.index("nH")
    return atoms, bonds


def to_mol(atoms, bonds, atom_types: Sequence[str] = ATOM_TYPES) -> Chem.Mol | None:
    """The sanitised RDKit molecule of a graph (atoms (n,), bonds (n, n) of ``BOND_TYPES``, upper triangle
    read), or None where RDKit rejects it (valence, an aromatic ring it cannot kekulise even with
    one pyrrole-type ``[nH]`` more). An ``nH`` atom is a nitrogen with one explicit hydrogen.

    Args:
        atoms: (n,) int, index into ``atom_types``, -1 padding.
        bonds: (n, n) int in [0, 5).
        atom_types: the atom classes: element symbols, and ``nH``.
    """
    atoms, bonds = np.asarray(atoms), np.asarray(bonds)
    if atoms.ndim != 1 or bonds.shape != atoms.shape * 2:
        raise ValueError(f"atoms must be (n,) and bonds (n, n), got {atoms.shape} and {bonds.shape}")
    if bonds.size and (bonds.min() < 0 or bonds.max() >= len(BOND_TYPES)):
        raise ValueError(f"bonds must lie in [0, {len(BOND_TYPES)}), got [{bonds.min()}, {bonds.max()}]")
    if atoms.size and (atoms.min() < -1 or atoms.max() >= len(atom_types)):
        raise ValueError(f"atoms must lie in [-1, {len(atom_types)}), got [{atoms.min()}, {atoms.max()}]")
    mol, index = Chem.RWMol(), {}
    for i, a in enumerate(atoms.tolist()):
        if a >= 0:
            atom = Chem.Atom("N" if atom_types[a] == "nH" else atom_types[a])
            if atom_types[a] == "nH":
                atom.SetNumExplicitHs(1)
            index[i] = mol.AddAtom(atom)
    for i, j in zip(*np.nonzero(np.triu(bonds, k=1))):
        if i in index and j in index:
            mol.AddBond(index[i], index[j], AROMATIC_BONDS[bonds[i, j]])
            if bonds[i, j] == 4:
                for k in (i, j):
                    mol.GetAtomWithIdx(index[k]).SetIsAromatic(True)
                mol.GetBondBetweenAtoms(index[i], index[j]).SetIsAromatic(True)
    if not index:
        return None
    mol = mol.GetMol()
    # A pyrrole-type aromatic nitrogen may carry a hydrogen the graph does not hold: try each in turn.
    trials = [None] + [a.GetIdx() for a in mol.GetAtoms() if a.GetIsAromatic() and a.GetSymbol() == "N"
                       and a.GetDegree() == 2 and a.GetNumExplicitHs() == 0]
    for i in trials:
        trial = Chem.Mol(mol)
        if i is not None:
            trial.GetAtomWithIdx(i).SetNumExplicitHs(1)
        try:
            Chem.SanitizeMol(trial)
        except (Chem.MolSanitizeException, RuntimeError):
            continue
        return trial
    return None


def embed(smiles: str, seed: int = 0, max_nodes: int = 9) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """One ETKDGv3 conformer of ``smiles``: (positions (max_nodes, 3) float64 centred on the heavy atoms,
    padding zero, or None if embedding fails; atoms and bonds of ``encode(mol, max_nodes)``).

    Hydrogens are added for the embedding. ETKDG fails on some strained cages of QM9 (retrying from
    random coordinates does not rescue the ones tried and costs seconds each).

    Args:
        smiles: the molecule.
        seed: ETKDG's random seed (the conformer is a deterministic function of it).
        max_nodes: the padded size.
    """
    mol = parse_smiles(smiles)
    atoms, bonds = encode(mol, max_nodes)
    mol_h = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol_h, params) != 0:
        return None, atoms, bonds
    xyz = mol_h.GetConformer().GetPositions()[:mol.GetNumAtoms()]  # AddHs appends hydrogens after heavy atoms
    positions = np.zeros((max_nodes, 3))
    positions[:len(xyz)] = xyz - xyz.mean(axis=0)
    return positions, atoms, bonds


def build_conformers(smiles: Sequence[str], seed: int = 0, max_nodes: int = 9) -> dict[str, np.ndarray]:
    """The conformer set (module docstring's arrays) of ``smiles``, one ETKDG conformer each, in order.

    Args:
        smiles: N SMILES strings (each parsable, at most ``max_nodes`` heavy atoms among C N O F).
        seed: ETKDG's random seed, the same for every molecule.
        max_nodes: the padded size n.
    """
    if len(smiles) == 0:
        raise ValueError("smiles must hold at least one molecule, got none")
    RDLogger.DisableLog("rdApp.*")
    n = len(smiles)
    positions = np.zeros((n, max_nodes, 3), np.float32)
    atoms = np.zeros((n, max_nodes), np.int8)
    bonds = np.zeros((n, max_nodes, max_nodes), np.int8)
    embedded = np.zeros(n, bool)
    for k, smi in enumerate(smiles):
        xyz, atoms[k], bonds[k] = embed(smi, seed, max_nodes)
        if xyz is not None:
            positions[k], embedded[k] = xyz, True
    mask = atoms >= 0
    return {"positions": positions, "atoms": atoms, "bonds": bonds, "mask": mask,
            "num_atoms": mask.sum(axis=1).astype(np.int8), "embedded": embedded}


def load_syco_qm9(split: str = "train", size: int | None = None, seed: int = 0, *, offset: int = 0,
                  conformer_seed: int = 0, cache_dir: str | os.PathLike = "~/.cache/jaxdiff/qm9") -> dict[str, np.ndarray]:
    """ETKDG conformers of a uniformly random subset of QM9's graphs (``jaxdiff.graphs.qm9``), split as the
    graph benchmarks split.

    The split is ``split_qm9(load_qm9(), seed=0, test_fraction=0.1)``; the subset is the rows
    ``default_rng(seed).permutation(len(split))[offset:offset + size]``, in that order. This is the
    graph task's own evaluation order of the test split (``experiments/tasks/graph.py``): with seed 0 and
    1,000 samples, a 2,000-molecule reference, its held-out real molecules are ``size=1000, offset=3000``.
    Embedding takes about 10 ms per molecule on one core, so the whole split takes over 20 minutes. Cached
    per (split, size, seed, offset, conformer_seed); the build prints its time per molecule and its
    embedding failures.

    Returns:
        the conformer set of the module docstring plus ``smiles`` (N,) (the graph's canonical SMILES),
        ``index`` int32 (N,) (QM9 index) and ``build_seconds`` float64 () (the time of the build).

    Args:
        split: "train" or "test".
        size: at most this many molecules (None: the rest of the permutation from ``offset``).
        seed: seed of the permutation that draws the subset.
        offset: how many molecules of the permutation to skip (disjoint subsets of one seed).
        conformer_seed: ETKDG's random seed.
        cache_dir: where the conformers are cached.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if size is not None and size < 1:
        raise ValueError(f"size must be None or >= 1, got {size}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    name = f"syco_v{_VERSION}_{split}_n{size or 'all'}_seed{seed}_offset{offset}_etkdg{conformer_seed}.npz"
    path = Path(cache_dir).expanduser() / name

    def build():
        graphs = dict(zip(("train", "test"), split_qm9(load_qm9(), seed=0, test_fraction=0.1)))[split]
        rows = np.random.default_rng(seed).permutation(len(graphs["smiles"]))[offset:]
        rows = rows[:size]
        if len(rows) == 0:
            raise ValueError(f"offset must be below the {split} split's {len(graphs['smiles'])} molecules, got {offset}")
        smiles = graphs["smiles"][rows]
        start = time.perf_counter()
        data = build_conformers(list(smiles), conformer_seed)
        seconds = time.perf_counter() - start
        print(f"SyCo {split}: {len(smiles)} conformers in {seconds:.1f} s ({1e3 * seconds / len(smiles):.1f} ms "
              f"each), {int((~data['embedded']).sum())} failed to embed; cached at {path}")
        return data | {"smiles": smiles, "index": graphs["index"][rows], "build_seconds": np.float64(seconds)}

    return cached_arrays(path, build)


def align_to_graph(atoms, bonds, cloud_atoms, positions, scale: float = 1.2) -> np.ndarray | None:
    """The atom order of a point cloud in its graph's order, found from the cloud's geometry.

    Two atoms of the cloud are connected when their distance is below ``scale`` times the sum of their
    covalent radii; the graph's atoms are matched to that connectivity (same element, same edges, bond
    orders ignored).

    Returns:
        perm int (n_real,) with cloud atom ``perm[i]`` = graph atom i, or None where the cloud's
        connectivity is not the graph's.

    Args:
        atoms: (n,) the graph's atoms (``ATOM_TYPES`` index, -1 padding).
        bonds: (n, n) the graph's bonds (any class > 0 is a bond).
        cloud_atoms: (m,) the cloud's atoms (``ATOM_TYPES`` index, -1 padding; real atoms first).
        positions: (m, 3) the cloud's coordinates in ångström.
        scale: tolerance on the covalent-radius sum.
    """
    atoms, bonds, cloud_atoms, positions = map(np.asarray, (atoms, bonds, cloud_atoms, positions))
    real, cloud_real = atoms[atoms >= 0], cloud_atoms[cloud_atoms >= 0]
    if positions.shape != cloud_atoms.shape + (3,):
        raise ValueError(f"positions must have shape {cloud_atoms.shape + (3,)}, got {positions.shape}")
    if len(real) != len(cloud_real):
        return None
    n = len(real)
    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRcovalent(ELEMENTS[a]) for a in cloud_real])
    dist = np.linalg.norm(positions[:n, None] - positions[None, :n], axis=-1)
    linked = (dist < scale * (radii[:, None] + radii[None, :])) & ~np.eye(n, dtype=bool)
    query, target = Chem.RWMol(), Chem.RWMol()
    for a in real:
        query.AddAtom(Chem.Atom(ELEMENTS[a]))
    for a in cloud_real:
        target.AddAtom(Chem.Atom(ELEMENTS[a]))
    for i, j in zip(*np.nonzero(np.triu(bonds[:n, :n] > 0, k=1))):
        query.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    for i, j in zip(*np.nonzero(np.triu(linked, k=1))):
        target.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    if query.GetNumBonds() != target.GetNumBonds():
        return None
    for mol in (query, target):
        mol.UpdatePropertyCache(strict=False)
    match = target.GetSubstructMatch(query)
    return np.array(match) if len(match) == n else None
