"""SyCo conformers: ETKDG geometry of known molecules, graph round trips, seeded subsets and their cache,
alignment, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from jaxdiff.graphs.molecules import mol_to_ints
from jaxdiff.graphs.qm9 import load_qm9, split_qm9
from jaxdiff.molecules3d import syco


def bond_lengths(positions, bonds, kind: int) -> np.ndarray:
    i, j = np.nonzero(np.triu(bonds == kind, k=1))
    return np.linalg.norm(positions[i] - positions[j], axis=-1)


def test_conformers_have_chemical_bond_lengths():
    # toluene (aromatic C-C 1.39 A, C-CH3 1.51 A), acetonitrile (C#N 1.16 A), acetone (C=O 1.21 A)
    data = syco.build_conformers(["Cc1ccccc1", "CC#N", "CC(C)=O", "CCO"], seed=0)
    assert data["embedded"].all() and list(data["num_atoms"]) == [7, 3, 4, 3]
    pos, bonds = data["positions"], data["bonds"]
    assert np.abs(pos.sum(axis=1)).max() < 1e-4 and np.all(pos[~data["mask"]] == 0)
    for row, kind, low, high in [(0, 4, 1.36, 1.42), (0, 1, 1.47, 1.55), (1, 3, 1.12, 1.20),
                                 (2, 2, 1.18, 1.25), (3, 1, 1.38, 1.56)]:
        lengths = bond_lengths(pos[row], bonds[row], kind)
        assert lengths.size and lengths.min() > low and lengths.max() < high, (row, kind, lengths)
    again = syco.build_conformers(["Cc1ccccc1", "CC#N", "CC(C)=O", "CCO"], seed=0)
    np.testing.assert_array_equal(again["positions"], pos)


# held-out QM9 molecules whose graph without the nH class decoded to another tautomer (the hydrogen on
# another ring nitrogen) or to no aromatic molecule at all
TAUTOMERS = ["OC1COc2n[nH]cc21", "COc1nc(N)c(C)[nH]1", "CC(C)(C)c1ncn[nH]1", "Nc1cc2nn[nH]c2[nH]1",
             "CNc1cnc(C#N)[nH]1", "c1cc2cncc-2n[nH]1", "Nc1n[nH]c2[nH]ncc12", "Oc1nc2[nH]cnc2[nH]1",
             "CC1(c2nn[nH]n2)CC1", "CCOc1n[nH]c(=O)[nH]1", "N=c1nn[nH]cc1CO", "N=c1nc[nH]ccc1=O"]


def test_graph_round_trip_keeps_aromaticity_and_pyrrole_hydrogen():
    for smiles in ["c1ccccc1", "c1cc[nH]c1", "Cc1ncco1", "N#CC(=O)O", "CC1CC1", "[nH]1cc[nH]c1=O", *TAUTOMERS]:
        atoms, bonds = syco.encode(syco.parse_smiles(smiles), 9)
        assert Chem.MolToSmiles(syco.to_mol(atoms, bonds)) == Chem.CanonSmiles(smiles), smiles
    atoms, bonds = syco.encode(syco.parse_smiles("c1ccccc1"), 9)
    assert set(bonds[bonds > 0].tolist()) == {4} and list(atoms[:6]) == [0] * 6
    # pyrazole: one aromatic N holds the hydrogen (class nH), the other does not; the graph side's encoding
    # is the same without the class
    atoms, bonds = syco.encode(syco.parse_smiles("c1cn[nH]c1"), 9)
    assert sorted(atoms[:5].tolist()) == [0, 0, 0, 1, 4]
    plain_atoms, plain_bonds = mol_to_ints(syco.parse_smiles("c1cn[nH]c1"), 9, kekulize=False)
    np.testing.assert_array_equal(np.where(atoms == 4, 1, atoms), plain_atoms)
    np.testing.assert_array_equal(bonds, plain_bonds)
    assert syco.ELEMENTS[4] == "N" and syco.ATOM_TYPES[4] == "nH"
    five_bonded = np.zeros((9, 9), int)
    five_bonded[0, 1:6] = 1
    assert syco.to_mol(np.array([0] * 6 + [-1] * 3), five_bonded) is None  # carbon of valence 5
    assert syco.to_mol(np.full(9, -1), np.zeros((9, 9), int)) is None


def test_subset_is_seeded_uniform_and_cached(tmp_path):
    first = syco.load_syco_qm9("test", size=6, offset=3, cache_dir=tmp_path / "a")
    second = syco.load_syco_qm9("test", size=6, offset=3, cache_dir=tmp_path / "b")
    cached = syco.load_syco_qm9("test", size=6, offset=3, cache_dir=tmp_path / "a")
    for key in ("positions", "atoms", "bonds", "mask", "embedded", "smiles", "index"):
        np.testing.assert_array_equal(first[key], second[key])
        np.testing.assert_array_equal(first[key], cached[key])
    assert first["positions"].shape == (6, 9, 3) and first["build_seconds"] > 0
    for k in range(6):
        mol = syco.to_mol(first["atoms"][k], first["bonds"][k])
        assert Chem.MolToSmiles(mol) == first["smiles"][k]
    # the graph task's evaluation order of the test split: default_rng(seed).permutation, then a slice
    test = split_qm9(load_qm9(), seed=0, test_fraction=0.1)[1]
    order = np.random.default_rng(0).permutation(len(test["smiles"]))
    np.testing.assert_array_equal(first["index"], test["index"][order[3:9]])
    other = syco.load_syco_qm9("test", size=6, seed=1, offset=3, cache_dir=tmp_path / "a")
    assert not set(other["index"]) & set(first["index"])  # 6 of ~13,000: another seed draws other rows


def test_align_to_graph_recovers_a_permutation():
    data = syco.build_conformers(["OCC1CC(F)C1N"], seed=3)
    atoms, bonds, pos = data["atoms"][0], data["bonds"][0], data["positions"][0]
    order = np.random.default_rng(0).permutation(8)
    cloud_atoms, cloud_pos = np.concatenate([atoms[order], [-1]]), np.concatenate([pos[order], [[0, 0, 0]]])
    perm = syco.align_to_graph(atoms, bonds, cloud_atoms, cloud_pos)
    np.testing.assert_array_equal(cloud_atoms[perm], atoms[:8])
    aligned = cloud_pos[perm]
    i, j = np.nonzero(np.triu(bonds[:8, :8] > 0, k=1))
    assert np.linalg.norm(aligned[i] - aligned[j], axis=-1).max() < 1.6
    stretched = cloud_pos * 1.5  # no bond survives: connectivity differs from the graph
    assert syco.align_to_graph(atoms, bonds, cloud_atoms, stretched) is None


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="smiles must be a SMILES string"):
        syco.embed("C1CC(")
    with pytest.raises(ValueError, match="smiles must hold at least one"):
        syco.build_conformers([])
    with pytest.raises(ValueError, match="more than max_nodes=3"):
        syco.embed("CCCCC", max_nodes=3)
    with pytest.raises(ValueError, match="split must be"):
        syco.load_syco_qm9("valid")
    with pytest.raises(ValueError, match="size must be None or >= 1"):
        syco.load_syco_qm9("test", size=0)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        syco.load_syco_qm9("test", offset=-1)
    with pytest.raises(ValueError, match="bonds must lie in"):
        syco.to_mol(np.zeros(2, int), np.full((2, 2), 7))
    with pytest.raises(ValueError, match="positions must have shape"):
        syco.align_to_graph(np.zeros(2, int), np.zeros((2, 2), int), np.zeros(2, int), np.zeros((3, 3)))
