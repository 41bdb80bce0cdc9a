"""Molecule <-> integer graph <-> networkx conversions and the QM9 loader."""

from __future__ import annotations

import importlib.util

import chex
import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("pandas")
from rdkit import Chem  # noqa: E402

from jaxdiff.data.qm9 import read_qm9  # noqa: E402
from jaxdiff.graphs import qm9  # noqa: E402
from jaxdiff.graphs.molecules import (  # noqa: E402
    ATOMS, from_networkx, ints_to_mol, mol_to_ints, mol_to_smiles, smiles_to_ints, to_networkx)

QM9_SIZE = 130_831


@pytest.fixture(scope="session")
def qm9_data():
    if importlib.util.find_spec("qm9pack") is None:  # importing it needs pkg_resources
        pytest.skip("qm9pack is not installed")
    return qm9.load_qm9()


def test_qm9_arrays(qm9_data):
    n = len(qm9_data["index"])
    assert QM9_SIZE - 1000 < n < QM9_SIZE  # only the few hundred zwitterions are skipped
    chex.assert_shape([qm9_data["atoms"], qm9_data["bonds"]], [(n, 9), (n, 9, 9)])
    chex.assert_type([qm9_data["atoms"], qm9_data["bonds"]], np.int8)
    keys = ("smiles", "logp", "qed", "tpsa", "num_rings", "mol_wt", "homo_lumo_gap", "dipole")
    chex.assert_shape([qm9_data[key] for key in keys], (n,))
    assert np.all(np.diff(qm9_data["index"]) > 0)
    assert not any("+" in s or "-]" in s for s in qm9_data["smiles"])  # no charged atom
    bonds = qm9_data["bonds"]
    assert np.array_equal(bonds, bonds.transpose(0, 2, 1))
    assert qm9_data["atoms"].min() == -1 and qm9_data["atoms"].max() == len(ATOMS) - 1
    assert 2.0 < np.median(qm9_data["homo_lumo_gap"]) < 10.0  # eV


def test_round_trip_qm9(qm9_data):
    """QM9 SMILES -> ints -> mol -> canonical SMILES is the input's canonical SMILES (2,000+ molecules)."""
    df = read_qm9(["SMILES"])
    rows = np.arange(0, len(qm9_data["index"]), 60)
    assert len(rows) >= 2000
    original = dict(zip(df["Index"].tolist(), df["SMILES"].tolist()))
    for row in rows:
        smiles = original[int(qm9_data["index"][row])]
        atoms, bonds = smiles_to_ints(smiles, 9)
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
        assert mol_to_smiles(ints_to_mol(atoms, bonds)) == canonical == qm9_data["smiles"][row]
        chex.assert_trees_all_equal((atoms, bonds), (qm9_data["atoms"][row], qm9_data["bonds"][row]))


def test_split_is_deterministic_and_disjoint(qm9_data):
    train, test = qm9.split_qm9(qm9_data, seed=0, test_fraction=0.1)
    again, _ = qm9.split_qm9(qm9_data, seed=0, test_fraction=0.1)
    n = len(qm9_data["index"])
    assert len(test["index"]) == round(0.1 * n) and len(train["index"]) + len(test["index"]) == n
    assert np.array_equal(train["index"], again["index"])
    assert not set(train["index"].tolist()) & set(test["index"].tolist())
    other, _ = qm9.split_qm9(qm9_data, seed=1)
    assert not np.array_equal(train["index"], other["index"])
    with pytest.raises(ValueError, match="test_fraction"):
        qm9.split_qm9(qm9_data, test_fraction=1.5)


def test_subset(qm9_data):
    sub = qm9.subset(qm9_data, np.array([3, 1]))
    assert sub["atoms"].shape == (2, 9) and sub["smiles"][1] == qm9_data["smiles"][1]


def test_encoding_layout():
    atoms, bonds = smiles_to_ints("c1ccccc1O", 9)  # phenol, kekulised
    assert atoms.dtype == np.int32 and atoms.tolist() == [0, 0, 0, 0, 0, 0, 2, -1, -1]
    assert np.array_equal(bonds, bonds.T) and np.all(np.diag(bonds) == 0)
    ring = bonds[:6, :6][np.triu(bonds[:6, :6], 1) > 0]
    assert sorted(ring.tolist()) == [1, 1, 1, 2, 2, 2]
    assert mol_to_smiles(ints_to_mol(atoms, bonds)) == "Oc1ccccc1"


def test_explicit_hydrogens_are_removed():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    atoms, _ = mol_to_ints(mol, 4)
    assert atoms.tolist() == [0, 0, 2, -1]


def test_ints_to_mol_skips_padding_and_does_not_sanitise():
    atoms = np.array([0, -1, 0, 0, 0, 0, 0])
    bonds = np.zeros((7, 7), int)
    for j in range(2, 7):  # five single bonds on carbon 0: not sanitisable
        bonds[0, j] = bonds[j, 0] = 1
    mol = ints_to_mol(atoms, bonds)
    assert mol.GetNumAtoms() == 6 and mol.GetNumBonds() == 5
    assert mol_to_smiles(mol) is None
    with pytest.raises(Chem.MolSanitizeException):
        ints_to_mol(atoms, bonds, sanitize=True)


@pytest.mark.parametrize("smiles, match", [
    ("C1CC", "invalid SMILES 'C1CC'"),
    ("CCS", r"'S' is not in the atom vocabulary \('C', 'N', 'O', 'F'\)"),
    ("C" * 10, "10 heavy atoms, more than max_nodes=9"),
    ("C[NH3+]", "formal charge"),
])
def test_bad_inputs(smiles, match):
    with pytest.raises(ValueError, match=match):
        smiles_to_ints(smiles, 9)


def test_bad_shapes():
    with pytest.raises(ValueError, match="bonds"):
        ints_to_mol(np.zeros(3, int), np.zeros((3, 4), int))


def test_networkx_round_trip(qm9_data):
    for row in range(0, len(qm9_data["index"]), 1000):
        atoms, bonds = qm9_data["atoms"][row], qm9_data["bonds"][row]
        g = to_networkx(atoms, bonds)
        assert g.number_of_nodes() == int((atoms >= 0).sum())
        assert {d for _, d in g.nodes(data="atom")} <= set(ATOMS)
        chex.assert_trees_all_equal(from_networkx(g, 9), (atoms, bonds))


def test_from_networkx_errors():
    g = to_networkx(*smiles_to_ints("CCO", 3))
    with pytest.raises(ValueError, match="max_nodes=2"):
        from_networkx(g, 2)
    g.nodes[0]["atom"] = "S"
    with pytest.raises(ValueError, match="'S'"):
        from_networkx(g, 3)
