"""Property tables: look-ups through isomorphism classes, files, targets; the committed digits subset."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxdiff.nag import space
from jaxdiff.nag.skeleton import count_flops, count_params
from jaxdiff.nag.table import PropertyTable, load_table

SUBSET = os.path.join(os.path.dirname(__file__), "data", "nb201_digits_subset.npz")


def test_lookup_through_classes_files_and_targets(synthetic_table, tmp_path):
    t = synthetic_table
    cells = space.all_cells()[::501]
    np.testing.assert_array_equal(t.rows(cells), space.unique_index(cells))
    np.testing.assert_allclose(t.lookup(cells, "val_acc"), t.val_acc.mean(1)[space.unique_index(cells)])
    sub = t.subset([5, 2, 9])
    np.testing.assert_array_equal(sub.classes, [2, 5, 9])
    assert sub.rows(space.unique_cells()[[9]])[0] == 2
    assert sub.rows(space.unique_cells()[[3]], strict=False)[0] == -1
    with pytest.raises(ValueError, match="cells holds .* whose isomorphism class is not in this table"):
        sub.rows(space.unique_cells()[[3]])
    t.save(tmp_path / "t.npz")
    again = load_table(tmp_path / "t.npz")
    np.testing.assert_array_equal(again.val_acc, t.val_acc)
    assert again.info == t.info
    lo, hi = t.value_range("val_acc")
    assert t.check_target("val_acc", hi) == hi
    with pytest.raises(ValueError, match=r"target must lie in the table's range of val_acc"):
        t.check_target("val_acc", hi + 0.1)
    with pytest.raises(ValueError, match="name must be one of"):
        t.values("latency")
    with pytest.raises(FileNotFoundError, match="python -m experiments.bench.nb201_digits"):
        load_table(tmp_path / "missing.npz")


def test_values_average_the_seeds_that_trained_every_cell():
    acc = np.array([[0.5, 0.7], [0.6, np.nan], [0.8, 0.6]])
    t = PropertyTable([0, 1, 2], acc, acc, np.ones(3), np.ones(3))
    np.testing.assert_allclose(t.values("val_acc"), [0.5, 0.6, 0.8])
    with pytest.raises(ValueError, match=r"val_acc must have shape \(3, num_seeds\)"):
        PropertyTable([0, 1, 2], acc[:2], acc, np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="classes must be sorted distinct"):
        PropertyTable([0, 0, 2], acc, acc, np.ones(3), np.ones(3))


def test_the_committed_digits_subset():
    """Rows of the table built by ``python -m experiments.bench.nb201_digits``: accuracies in [0, 1],
    most cells well above chance (10%), parameters and FLOPs those of the skeleton's formulas."""
    t = load_table(SUBSET)
    c = t.info["skeleton"]["channels"]
    assert len(t) >= 100 and t.val_acc.shape[1] == 2 and np.isfinite(t.val_acc).all()
    acc = t.values("val_acc")
    assert np.all((acc >= 0) & (acc <= 1)) and np.median(acc) > 0.3
    np.testing.assert_array_equal(t.params, count_params(t.cells, c))
    np.testing.assert_array_equal(t.flops, count_flops(t.cells, c))
