"""RDKit metrics of point clouds: hand-built molecules, real QM9 geometries against their SMILES, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.data.qm9_3d import load_qm9_3d
from jaxdiff.graphs.qm9 import load_qm9
from jaxdiff.molecules3d import chem
from tests.molecules3d.test_stability import C, H, batch, ethene, ethyne, methane, water


def pentavalent_carbon():
    bipyramid = np.array([[0, 0, 1], [0, 0, -1], [1, 0, 0], [-0.5, 0.866, 0], [-0.5, -0.866, 0]])
    return np.vstack([[0, 0, 0], 1.09 * bipyramid]), [C] + [H] * 5


def two_waters():
    (p, a) = water()
    return np.vstack([p, p + [5.0, 0, 0], [[-5.0, 0, 0]]]), a + a + [C]


def test_hand_built_molecules_give_their_smiles_and_overvalence_is_invalid():
    pos, atoms = batch(methane(), water(), ethene(), ethyne(), pentavalent_carbon(), two_waters())
    assert chem.smiles(pos, atoms) == ["C", "O", "C=C", "C#C", None, "O"]  # the largest fragment counts
    m = chem.metrics(pos, atoms, train_smiles=["C", "O"])
    assert m["validity"] == pytest.approx(5 / 6) and m["uniqueness"] == pytest.approx(4 / 5)
    assert m["valid_unique"] == pytest.approx(4 / 6) and m["novelty"] == pytest.approx(2 / 4)
    assert "novelty" not in chem.metrics(pos, atoms)
    mols = chem.to_mols(pos, atoms)
    assert [m.GetNumAtoms() for m in mols] == [5, 3, 6, 4, 6, 7]
    assert mols[2].GetBondBetweenAtoms(0, 1).GetBondTypeAsDouble() == 2.0


def test_real_qm9_geometries_are_valid_and_give_the_dataset_smiles():
    """1,000 random QM9 molecules: 98.0% valid (Hoogeboom et al.: 97.7% of QM9 data), all distinct; 97% of
    the valid give exactly the dataset's SMILES (the rest are mostly aromatic rings the distance rule
    reads as alternating bonds)."""
    data, graphs = load_qm9_3d(), load_qm9()
    idx = np.sort(np.random.default_rng(0).permutation(len(data["index"]))[:1000])
    got = chem.smiles(data["positions"][idx], data["atoms"][idx], data["mask"][idx])
    valid = np.mean([s is not None for s in got])
    assert 0.97 <= valid <= 0.99 and chem.metrics(data["positions"][idx], data["atoms"][idx])["uniqueness"] == 1.0
    reference = dict(zip(graphs["index"].tolist(), graphs["smiles"]))
    same = [s == reference[i] for s, i in zip(got, data["index"][idx].tolist()) if s is not None and i in reference]
    assert len(same) > 950 and np.mean(same) > 0.96
    neopentane = np.flatnonzero(data["index"] == 54)
    assert chem.smiles(data["positions"][neopentane], data["atoms"][neopentane]) == [reference[54]] == ["CC(C)(C)C"]
    assert chem.metrics(data["positions"][idx[:50]], data["atoms"][idx[:50]], train_smiles=got)["novelty"] == 0.0


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="positions must have shape"):
        chem.smiles(np.zeros((3, 3)), np.zeros((1, 3), int))
    with pytest.raises(ValueError, match="atoms must lie in"):
        chem.metrics(np.zeros((1, 2, 3)), np.array([[0, 9]]))
