"""RDKit metrics of integer molecular graphs."""

from __future__ import annotations

import importlib.util
import math

import chex
import numpy as np
import pytest

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402
from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors  # noqa: E402

from jaxdiff.graphs import metrics  # noqa: E402
from jaxdiff.graphs.molecules import smiles_to_ints  # noqa: E402


@pytest.fixture(scope="session")
def qm9_split():
    if importlib.util.find_spec("qm9pack") is None:  # importing it needs pkg_resources
        pytest.skip("qm9pack is not installed")
    pytest.importorskip("pandas")
    from jaxdiff.graphs import qm9

    return qm9.split_qm9(qm9.load_qm9())


def _batch(*smiles, n=9):
    atoms, bonds = zip(*(smiles_to_ints(s, n) for s in smiles))
    return np.stack(atoms), np.stack(bonds)


def _pentavalent_carbon():
    """C bonded to five carbons: invalid as generated, CC(C)(C)C + C after correction."""
    atoms = np.array([0, 0, 0, 0, 0, 0, -1, -1, -1])
    bonds = np.zeros((9, 9), int)
    for j in range(1, 6):
        bonds[0, j] = bonds[j, 0] = 1
    return atoms, bonds


def test_pentavalent_carbon_is_invalid_strictly_and_valid_after_correction():
    atoms, bonds = _pentavalent_carbon()
    v = metrics.validity([atoms], [bonds])
    assert v == {"valid": 0.0, "valid_connected": 0.0, "valid_corrected": 1.0, "valid_lcc": 1.0,
                 "valid_connect": 1.0}
    assert metrics.graph_smiles([atoms], [bonds], "corrected") == ["C.CC(C)(C)C"]
    assert metrics.graph_smiles([atoms], [bonds], "lcc") == ["CC(C)(C)C"]
    assert metrics.graph_smiles([atoms], [bonds], "connect") == ["CCC(C)(C)C"]


def test_known_graphs():
    atoms, bonds = _batch("c1ccccc1", "CC#N", "O=C=O", "CC.OC=O")
    assert metrics.validity(atoms, bonds)["valid"] == 1.0
    assert metrics.validity(atoms, bonds)["valid_connected"] == 0.75
    bad = bonds.copy()
    bad[1, 0, 1] = bad[1, 1, 0] = 2  # C=C#N: the middle carbon has valence 5
    assert metrics.graph_smiles(atoms[1:2], bad[1:2]) == [None]
    _, fixed = metrics.correct_valence(atoms[1], bad[1])
    assert fixed[1, 2] == 2 and fixed[0, 1] == 2  # the highest-order bond loses one step
    assert metrics.graph_smiles(atoms[1:2], fixed[None], "strict") == ["C=C=N"]


def test_correct_valence_keeps_valid_graphs_and_caps_valence():
    atoms, bonds = _batch("c1ccccc1", "OC(=O)C#N", "CN=C=O")
    for a, b in zip(atoms, bonds):
        chex.assert_trees_all_equal(metrics.correct_valence(a, b), (a, b))
    rng = np.random.default_rng(0)
    caps = np.array([4, 3, 2, 1])
    for _ in range(50):
        a = rng.integers(-1, 4, 9)
        b = np.triu(rng.integers(0, 4, (9, 9)), 1)
        fixed_atoms, fixed_bonds = metrics.correct_valence(a, b + b.T)
        real = fixed_atoms >= 0
        assert np.all(fixed_bonds.sum(1)[real] <= caps[fixed_atoms[real]])
        assert np.all(fixed_bonds[~real] == 0)
    random_atoms = rng.integers(0, 4, (50, 9))
    random_bonds = np.triu(rng.integers(0, 4, (50, 9, 9)), 1)
    assert metrics.validity(random_atoms, random_bonds + random_bonds.transpose(0, 2, 1))["valid_corrected"] == 1.0


def test_fragments():
    (atoms,), (bonds,) = _batch("CC.OC=O")
    lcc_atoms, lcc_bonds = metrics.largest_fragment(atoms, bonds)
    assert (lcc_atoms >= 0).sum() == 3 and lcc_bonds[:2].sum() == 0
    assert metrics.graph_smiles([atoms], [bonds], "lcc") == ["O=CO"]
    joined = metrics.graph_smiles([atoms], [bonds], "connect")[0]
    assert "." not in joined and Chem.MolFromSmiles(joined).GetNumAtoms() == 5
    stuck = _batch("FC(F)(F)F.FC(F)(F)F", n=10)  # no free valence anywhere: cannot be joined
    assert metrics.graph_smiles(*stuck, mode="connect") == [None]
    assert metrics.validity(*stuck)["valid_lcc"] == 1.0


def test_graph_smiles_errors():
    atoms, bonds = _batch("CC")
    with pytest.raises(ValueError, match="mode"):
        metrics.graph_smiles(atoms, bonds, "fix")
    with pytest.raises(ValueError, match="same number of graphs"):
        metrics.graph_smiles(atoms, np.concatenate([bonds, bonds]))


def test_uniqueness_and_novelty():
    assert metrics.uniqueness(["CCO", "CCO", "C", None]) == pytest.approx(2 / 3)
    assert metrics.uniqueness([None]) == 0.0
    assert metrics.novelty(["CCO", "C", "N", "C", None], ["C", "CC"]) == pytest.approx(2 / 3)
    assert metrics.novelty([None], ["C"]) == 0.0


def test_diversity_and_coverage():
    assert metrics.internal_diversity(["CCO"] * 5) == pytest.approx(0.0)
    assert 0.5 < metrics.internal_diversity(["CCO", "c1ccccc1", "FC(F)F", None]) <= 1.0
    assert math.isnan(metrics.internal_diversity(["CCO", None]))
    assert metrics.atom_type_coverage(["CCO", "CC"], ["CN", "CO", "CF"]) == pytest.approx(2 / 4)


def test_self_similarity(qm9_split):
    _, test = qm9_split
    smiles = list(test["smiles"][:300])
    assert metrics.fragment_similarity(smiles, smiles) == pytest.approx(1.0)
    assert metrics.scaffold_similarity(smiles, smiles) == pytest.approx(1.0)
    assert metrics.fragment_similarity(["CCO"], ["c1ccccc1"]) == 0.0
    assert math.isnan(metrics.scaffold_similarity(["CCO"], ["CCN"]))  # acyclic: no scaffolds


def test_properties_match_rdkit(qm9_split):
    _, test = qm9_split
    smiles = list(test["smiles"][:200])
    props = metrics.properties(smiles + ["C1CC", None])
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    direct = {"logp": Crippen.MolLogP, "qed": QED.qed, "tpsa": rdMolDescriptors.CalcTPSA,
              "num_rings": rdMolDescriptors.CalcNumRings, "mol_wt": Descriptors.MolWt}
    for name, oracle in direct.items():
        np.testing.assert_allclose(props[name][:200], [oracle(m) for m in mols], rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(test[name][:200], props[name][:200], rtol=1e-12, err_msg=name)
        assert np.isnan(props[name][200:]).all()
    atoms, bonds = _batch("OCC=O")
    mol_props = metrics.properties([metrics.ints_to_mol(atoms[0], bonds[0])])
    assert mol_props["tpsa"][0] == pytest.approx(rdMolDescriptors.CalcTPSA(Chem.MolFromSmiles("OCC=O")))


def test_qm9_test_set_is_a_perfect_sample(qm9_split):
    """Sanity anchor: 500 held-out QM9 graphs score as real molecules against train."""
    train, test = qm9_split
    result = metrics.evaluate(test["atoms"][:500], test["bonds"][:500], train["smiles"],
                              test["smiles"][500:2500], with_fcd=False)
    for key in ("valid", "valid_connected", "valid_corrected", "valid_lcc", "valid_connect", "atom_type_coverage"):
        assert result[key] == 1.0, key
    assert result["uniqueness"] > 0.99 and result["novelty"] > 0.9
    assert 0.8 < result["internal_diversity"] < 1.0
    # MOSES similarities grow with sample size: ~0.8 for 500 vs 2,000, ~0.96 for 2,000 vs 11,000
    assert result["fragment_similarity"] > 0.7 and result["scaffold_similarity"] > 0.7
    assert all(0.0 <= v <= 1.0 for v in result.values())


def test_fcd():
    pytest.importorskip("fcd")
    reference = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCC", "OCC=O", "C1CC1", "CC#N"]
    assert metrics.fcd(reference, reference) == pytest.approx(0.0, abs=1e-3)
    assert metrics.fcd(["FC(F)(F)F", "FCF", "FF", None], reference) > 1.0
