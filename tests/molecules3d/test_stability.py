"""Hoogeboom's distance rule: hand-built molecules, real QM9 geometries at the published floor, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.data.qm9_3d import load_qm9_3d
from jaxdiff.molecules3d.stability import ELEMENTS, bond_orders, stability

H, C, N, O = (ELEMENTS.index(e) for e in "HCNO")
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)


def methane(ch=1.09):
    return np.vstack([[0, 0, 0], ch * TETRAHEDRON]), [C, H, H, H, H]


def water():
    a = np.radians(104.5) / 2
    return np.array([[0, 0, 0], [0.96 * np.sin(a), 0.96 * np.cos(a), 0], [-0.96 * np.sin(a), 0.96 * np.cos(a), 0]]), [O, H, H]


def ethene():
    c = np.array([[0.665, 0, 0], [-0.665, 0, 0]])
    a = np.radians(121.5)
    hs = [[s * (0.665 - 1.09 * np.cos(a)), t * 1.09 * np.sin(a), 0] for s in (1, -1) for t in (1, -1)]
    return np.vstack([c, hs]), [C, C, H, H, H, H]


def ethyne():
    return np.array([[0.6, 0, 0], [-0.6, 0, 0], [1.66, 0, 0], [-1.66, 0, 0]]), [C, C, H, H]


def batch(*molecules):
    """Pads molecules (positions, atoms) into (B, n, 3), (B, n) with -1 padding."""
    n = max(len(a) for _, a in molecules)
    pos = np.zeros((len(molecules), n, 3))
    atoms = np.full((len(molecules), n), -1)
    for i, (p, a) in enumerate(molecules):
        pos[i, :len(a)], atoms[i, :len(a)] = p, a
    return pos, atoms


def test_hand_built_molecules_are_stable_and_a_stretched_bond_is_not():
    stretched = methane()
    stretched[0][1] *= 1.3 / 1.09  # one C-H at 1.30 A, beyond 1.09 + 0.10
    pos, atoms = batch(methane(), water(), ethene(), ethyne(), stretched)
    s = stability(pos, atoms)
    np.testing.assert_array_equal(s["molecule_stable"], [True, True, True, True, False])
    np.testing.assert_array_equal(s["valence"][4, :5], [3, 0, 1, 1, 1])
    assert s["atom_stability"] == pytest.approx((5 + 3 + 6 + 4 + 3) / (5 + 3 + 6 + 4 + 5))
    orders = bond_orders(pos, atoms)
    assert orders[2, 0, 1] == 2 and orders[3, 0, 1] == 3 and orders[0, 0, 1] == 1 and orders[1, 1, 2] == 0
    np.testing.assert_array_equal(orders, np.swapaxes(orders, 1, 2))
    assert np.all(orders[:, np.arange(6), np.arange(6)] == 0) and np.all(orders[1, 3:] == 0)


def test_padding_and_explicit_mask_agree_and_positions_on_padding_are_ignored():
    pos, atoms = batch(methane(), water())
    mask = atoms >= 0
    pos[1, 3:] = 0.3  # garbage on padding
    a, b = stability(pos, atoms), stability(pos, np.where(mask, atoms, 7), mask)
    np.testing.assert_array_equal(a["atom_stable"], b["atom_stable"])
    assert a["molecule_stability"] == 1.0


def test_real_qm9_molecules_reach_the_published_floor():
    """1,000 random QM9 molecules with hydrogens: atom 99.3%, molecule 95.3% here (all 130,831: 99.36%,
    95.28%); Hoogeboom et al. report 99.0% and 95.2% for QM9 data."""
    data = load_qm9_3d()
    idx = np.sort(np.random.default_rng(0).permutation(len(data["index"]))[:1000])
    s = stability(data["positions"][idx], data["atoms"][idx], data["mask"][idx])
    assert s["atom_stability"] == pytest.approx(0.9935, abs=0.002)
    assert s["molecule_stability"] == pytest.approx(0.953, abs=0.005)
    assert s["atom_stability"] >= 0.990 and s["molecule_stability"] >= 0.945


@pytest.mark.parametrize("kwargs, match", [
    (dict(positions=np.zeros((2, 3))), "positions must have shape"),
    (dict(atoms=np.zeros((1, 4), int)), "atoms must be integers of shape"),
    (dict(atoms=np.zeros((1, 3))), "atoms must be integers"),
    (dict(atoms=np.array([[0, 5, 1]])), r"atoms must lie in \[0, 5\)"),
    (dict(mask=np.ones((1, 2), bool)), "mask must have shape"),
    (dict(positions=np.full((1, 3, 3), np.nan)), "positions must be finite"),
    (dict(elements=("H", "Cl")), "elements must be among"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(positions=np.zeros((1, 3, 3)), atoms=np.zeros((1, 3), int))
    with pytest.raises(ValueError, match=match):
        stability(**(args | kwargs))
