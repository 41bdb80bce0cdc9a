"""DiffusionNAG's operator-type matrices over the fixed 8-node DAG."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.nag import encoding, space


def test_the_dag():
    a = encoding.ADJACENCY
    edges = {tuple(map(int, e)) for e in np.argwhere(a)}
    assert edges == {(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 6), (3, 6), (4, 7), (5, 7), (6, 7)}
    assert not np.tril(a).any()  # the node order is topological
    r = encoding.reachability()
    assert r[0, 1:].all() and r[:-1, 7].all() and not r[1, 2] and not r[2, 1]  # input reaches all, all reach output
    m = encoding.attention_mask()
    np.testing.assert_array_equal(m, m.T)
    assert m[1, 3] and m[1, 6] and not m[1, 2] and not m[1, 4] and m[0].all()
    g = encoding.to_networkx(space.parse_cell_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"))
    assert g.number_of_edges() == 10 and g.nodes[3]["op"] == "avg_pool_3x3" and g.nodes[7]["op"] == "output"


def test_encode_decode_round_trip_and_noise():
    cells = space.unique_cells()
    x = encoding.encode(cells)
    assert x.shape == (6466, 8, 7) and np.all(x.sum(-1) == 1)
    assert np.all(x[:, 0, 0] == 1) and np.all(x[:, 7, 1] == 1)
    got, valid = encoding.decode(x)
    np.testing.assert_array_equal(got, cells)
    assert valid.all()
    noisy = 2 * x - 1 + 0.3 * np.random.default_rng(0).normal(size=x.shape)  # centred, noisy: argmax survives mostly
    got, valid = encoding.decode(noisy)
    assert np.mean(np.all(got == cells, 1)) > 0.9
    bad = x[:3].copy()
    bad[0, 0] = [0, 0, 0, 0, 1, 0, 0]  # the input row reads as an operation
    bad[1, 3] = [1, 0, 0, 0, 0, 0, 0]  # an operation row reads as input: decoded to its best operation, not valid
    _, valid = encoding.decode(bad)
    np.testing.assert_array_equal(valid, [False, False, True])


def test_bad_input():
    with pytest.raises(ValueError, match="cells holds operation index 7 outside the vocabulary"):
        encoding.encode([[0, 1, 2, 3, 4, 7]])
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, 7\)"):
        encoding.decode(np.zeros((2, 8, 6)))
    with pytest.raises(ValueError, match="x must be finite"):
        encoding.decode(np.full((1, 8, 7), np.nan))
    a = np.array(encoding.ADJACENCY)
    np.testing.assert_array_equal(encoding.check_adjacency(a), a)
    a[1, 2] = 1
    with pytest.raises(ValueError, match=r"adjacency is not the NAS-Bench-201 DAG .*edge \(1, 2\) is not in it"):
        encoding.check_adjacency(a)
    with pytest.raises(ValueError, match="edge .* is missing"):
        encoding.check_adjacency(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="adjacency must be the 8x8"):
        encoding.check_adjacency(np.zeros((4, 4)))
