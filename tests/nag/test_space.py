"""The NAS-Bench-201 cell space: enumeration, NAS-Bench-201's isomorphism rule and its 6,466 classes, strings."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.nag import space

NONE, SKIP, CONV1, CONV3, POOL = range(5)


def test_enumeration_and_the_published_count_of_unique_cells():
    cells = space.all_cells()
    assert cells.shape == (15625, 6) and len(np.unique(cells, axis=0)) == 15625
    np.testing.assert_array_equal(space.cell_code(cells), np.arange(15625))
    reps = space.unique_cells()
    assert reps.shape == (space.NUM_UNIQUE, 6) == (6466, 6)  # NAS-Bench-201's count of unique architectures
    np.testing.assert_array_equal(space.unique_index(reps), np.arange(6466))  # representatives are their own class
    keys = {space.isomorphism_key(c) for c in reps}
    assert len(keys) == 6466
    # every class's members share the representative's key
    sample = cells[np.random.default_rng(0).choice(15625, 300, replace=False)]
    for c, k in zip(sample, space.unique_index(sample)):
        assert space.isomorphism_key(c) == space.isomorphism_key(reps[k])


def test_isomorphism_rule():
    key = space.isomorphism_key
    # addition commutes: with (0->1) = skip, node 1 is node 0, so the ops of (0->3) and (1->3) may swap
    assert key([SKIP, NONE, NONE, CONV3, POOL, NONE]) == key([SKIP, NONE, NONE, POOL, CONV3, NONE])
    # edges out of a zero node are zero: with (0->1) = none, the ops of (1->2) and (1->3) do not matter
    assert key([NONE, CONV1, CONV3, CONV3, POOL, SKIP]) == key([NONE, CONV1, POOL, CONV3, CONV1, SKIP])
    # skip is the identity, but a convolution is not
    assert key([SKIP, NONE, NONE, NONE, CONV3, NONE]) == key([NONE, NONE, NONE, CONV3, NONE, NONE])
    assert key([SKIP, NONE, NONE, NONE, CONV3, NONE]) != key([CONV1, NONE, NONE, NONE, CONV3, NONE])
    # zero terms stay in sums, and node 2 (two inputs) is "#+#", not "#", when both are zero: NAS-Bench-201's
    # rule keeps these two apart although both cells output zero
    assert key([CONV3, NONE, NONE, NONE, NONE, CONV3]) == "#+#+(#+#)@nor_conv_3x3"
    assert key([CONV3, NONE, NONE, NONE, NONE, NONE]) == "#+#+#"
    assert space.unique_index([[NONE] * 6]) == 0


def test_strings_round_trip_and_a_known_cell():
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    cell = space.parse_cell_string(text)
    np.testing.assert_array_equal(cell, [CONV3, CONV3, POOL, SKIP, CONV3, SKIP])
    assert space.cell_string(cell) == text
    for c in space.unique_cells()[::97]:
        np.testing.assert_array_equal(space.parse_cell_string(space.cell_string(c)), c)


@pytest.mark.parametrize("cells, match", [
    ([0, 1, 2, 3, 4, 5], "cells holds operation index 5 outside the vocabulary"),
    ([[0, 1, 2, 3, 4, -1]], "operation index -1 outside the vocabulary"),
    ([0, 1, 2], r"cells must have shape \(\.\.\., 6\)"),
    ([0.5, 1, 2, 3, 4, 0], "integer operation indices"),
])
def test_bad_cells(cells, match):
    with pytest.raises(ValueError, match=match):
        space.check_cells(cells)


def test_bad_strings():
    with pytest.raises(ValueError, match="text must be a NAS-Bench-201 cell string"):
        space.parse_cell_string("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ValueError, match="text must list the edges"):
        space.parse_cell_string("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|")
