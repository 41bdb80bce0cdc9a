"""QM9 point clouds: real geometries, the two views, the node-count distribution, the split, the SMILES
of the geometries, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.data import qm9_3d
from jaxdiff.graphs.qm9 import load_qm9, split_qm9
from jaxdiff.molecules3d import qm9
from jaxdiff.molecules3d.qm9 import geometry_smiles, split_qm9_3d, training_half, training_smiles


@pytest.fixture(scope="module")
def with_h():
    return qm9_3d.load_qm9_3d()


@pytest.fixture(scope="module")
def heavy(with_h):
    return qm9_3d.heavy_atom_view(with_h)


def angle(a, centre, b) -> float:
    u, v = a - centre, b - centre
    return float(np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))))


def test_shapes_counts_and_masks(with_h, heavy):
    assert len(with_h["index"]) == 130_831
    assert np.all(np.diff(with_h["index"]) > 0) and with_h["index"][0] == 1
    for view, a, k in ((with_h, 29, 5), (heavy, 9, 4)):
        assert view["positions"].shape == (130_831, a, 3) and view["positions"].dtype == np.float32
        mask = view["mask"]
        np.testing.assert_array_equal(mask, np.arange(a) < view["num_atoms"][:, None])  # real atoms first
        assert view["atoms"][mask].min() == 0 and view["atoms"][mask].max() == k - 1
        assert np.all(view["atoms"][~mask] == -1) and np.all(view["charges"][~mask] == 0)
        assert np.all(view["positions"][~mask] == 0)
        assert np.abs(view["positions"].sum(axis=1)).max() < 1e-4  # centred
    assert with_h["num_atoms"].max() == 29 and heavy["num_atoms"].max() == 9
    numbers = np.array([1, 6, 7, 8, 9])
    np.testing.assert_array_equal(with_h["charges"][with_h["mask"]], numbers[with_h["atoms"][with_h["mask"]]])
    np.testing.assert_array_equal(heavy["charges"][heavy["mask"]], numbers[1:][heavy["atoms"][heavy["mask"]]])
    np.testing.assert_array_equal(heavy["num_atoms"], (with_h["atoms"] > 0).sum(axis=1))
    # the heavy view keeps the heavy atoms' geometry: pairwise distances agree
    row = 1000
    keep = with_h["atoms"][row] > 0
    full = with_h["positions"][row][keep]
    part = heavy["positions"][row][: heavy["num_atoms"][row]]
    np.testing.assert_allclose(np.linalg.norm(full[:, None] - full[None], axis=-1),
                               np.linalg.norm(part[:, None] - part[None], axis=-1), atol=1e-5)


def test_methane_and_water_geometry(with_h):
    methane = with_h["positions"][0, :5].astype(np.float64)  # gdb9 index 1
    np.testing.assert_array_equal(with_h["atoms"][0, :5], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(np.linalg.norm(methane[1:] - methane[0], axis=1), 1.092, atol=2e-3)
    for i in range(1, 5):
        for j in range(i + 1, 5):
            assert abs(angle(methane[i], methane[0], methane[j]) - 109.47) < 0.1  # tetrahedral
    water = with_h["positions"][2, :3].astype(np.float64)  # gdb9 index 3
    np.testing.assert_array_equal(with_h["atoms"][2, :3], [3, 0, 0])
    assert np.all(np.abs(np.linalg.norm(water[1:] - water[0], axis=1) - 0.962) < 0.01)
    assert 102.0 < angle(water[1], water[0], water[2]) < 106.0


def nearest_neighbours(view, rows) -> np.ndarray:
    """Distance from each real atom of ``rows`` to its nearest other atom (inf when alone), (atoms,)."""
    pos, mask = view["positions"][rows].astype(np.float64), view["mask"][rows]
    dist = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
    dist = np.where(mask[:, :, None] & mask[:, None] & ~np.eye(mask.shape[1], dtype=bool), dist, np.inf)
    return dist.min(axis=2)[mask]


def test_bond_lengths_are_plausible(with_h, heavy):
    rows = np.random.default_rng(0).choice(len(with_h["index"]), 1000, replace=False)
    nearest = nearest_neighbours(with_h, rows)
    hydrogen = with_h["atoms"][rows][with_h["mask"][rows]] == 0
    # every hydrogen is bonded (O-H 0.96 to C-H 1.10 A) and nothing is closer than an O-H bond
    assert 0.93 < nearest.min() and nearest[hydrogen].max() < 1.15
    rows = rows[heavy["num_atoms"][rows] > 1]
    nearest = nearest_neighbours(heavy, rows)
    # every heavy atom has a heavy neighbour between a C#N triple (1.15 A) and a C-C single bond (1.54 A)
    assert 1.1 < nearest.min() and nearest.max() < 1.65


def test_node_count_distribution(with_h, heavy):
    p = qm9_3d.node_count_distribution(with_h["num_atoms"], 29)
    assert p.shape == (30,) and abs(p.sum() - 1) < 1e-12
    assert p[:3].sum() == 0 and p[3] == 2 / 130_831  # water and hydrogen cyanide
    assert p.argmax() == 19
    q = qm9_3d.node_count_distribution(heavy["num_atoms"], 9)
    assert q[9] > 0.8 and q[0] == 0


def test_split_holds_out_the_graph_test_set(with_h):
    train, test = split_qm9_3d(with_h)
    _, graph_test = split_qm9(load_qm9(), seed=0, test_fraction=0.1)
    np.testing.assert_array_equal(test["index"], graph_test["index"])
    assert len(train["index"]) + len(test["index"]) == 130_831
    assert not np.intersect1d(train["index"], test["index"]).size
    assert np.all(np.diff(train["index"]) > 0)


def test_training_halves_are_disjoint_random_and_cover_the_split():
    train = {"index": np.arange(10, 21), "atoms": np.arange(11)[:, None] * [1, 1]}
    a, b = training_half(train, "a"), training_half(train, "b")
    assert (len(a["index"]), len(b["index"])) == (5, 6)
    np.testing.assert_array_equal(np.sort(np.concatenate([a["index"], b["index"]])), train["index"])
    np.testing.assert_array_equal(a["atoms"][:, 0], a["index"] - 10)  # rows stay whole
    assert np.all(np.diff(a["index"]) > 0) and not np.array_equal(a["index"], train["index"][:5])
    np.testing.assert_array_equal(training_half(train, "a")["index"], a["index"])
    with pytest.raises(ValueError, match="half must be 'a' or 'b', got 'c'"):
        training_half(train, "c")


def test_geometry_smiles_and_the_training_set_lookup(with_h, monkeypatch):
    rows = [int(np.flatnonzero(with_h["index"] == i)[0]) for i in (1, 3, 54)]  # methane, water, neopentane
    view = {k: v[rows] for k, v in with_h.items()}
    np.testing.assert_array_equal(geometry_smiles(view, chunk=2), ["C", "O", "CC(C)(C)C"])
    table = {"index": np.array([1, 3, 54], np.int32), "smiles": np.array(["C", "", "CC(C)(C)C"])}
    monkeypatch.setattr(qm9, "qm9_smiles", lambda hydrogens, cache_dir: table)
    assert training_smiles(np.array([54, 3])) == {"CC(C)(C)C"}  # '' (invalid) is no training molecule
    with pytest.raises(ValueError, match="index must hold QM9 indices"):
        training_smiles(np.array([1, 2]))


def test_one_hot():
    got = qm9_3d.one_hot(np.array([[0, 2, -1]]), 3)
    np.testing.assert_array_equal(got, [[[1, 0, 0], [0, 0, 1], [0, 0, 0]]])
    with pytest.raises(ValueError, match="atoms must lie in"):
        qm9_3d.one_hot(np.array([3]), 3)


def test_bad_input():
    ok = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"coordinates\[1\] must be finite"):
        qm9_3d.pack_point_clouds([["C", "H"], ["O", "H"]], [ok, np.array([[0, 0, np.nan], [1, 0, 0]])])
    with pytest.raises(ValueError, match=r"elements\[0\] holds \['S'\], outside the vocabulary"):
        qm9_3d.pack_point_clouds([["S", "H"]], [ok])
    with pytest.raises(ValueError, match=r"elements\[0\] holds \['H'\]"):
        qm9_3d.pack_point_clouds([["C", "H"]], [ok], vocabulary=qm9_3d.HEAVY_VOCABULARY, max_atoms=9)
    with pytest.raises(ValueError, match="more than max_atoms=1"):
        qm9_3d.pack_point_clouds([["C", "H"]], [ok], max_atoms=1)
    with pytest.raises(ValueError, match=r"elements\[0\] is empty"):
        qm9_3d.pack_point_clouds([[]], [np.zeros((0, 3))])
    with pytest.raises(ValueError, match=r"coordinates\[0\] must have shape \(2, 3\)"):
        qm9_3d.pack_point_clouds([["C", "H"]], [np.zeros((3, 3))])
    with pytest.raises(ValueError, match="num_atoms must lie in"):
        qm9_3d.node_count_distribution(np.array([3, 30]), 29)
    packed = qm9_3d.pack_point_clouds([["C", "H"]], [np.array([[0.0, 0, 0], [1.0, 0, 0]])], max_atoms=3)
    np.testing.assert_allclose(packed["positions"][0], [[-0.5, 0, 0], [0.5, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(packed["charges"][0], [6, 1, 0])
