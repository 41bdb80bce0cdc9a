"""Array helpers: ``in_chunks`` cuts, pads the last part to the chunk size, and joins the outputs."""

from __future__ import annotations

import numpy as np

from jaxdiff._arrays import in_chunks


def test_in_chunks_pads_the_last_part_and_joins_single_and_tuple_outputs():
    x, y = np.arange(7.0), np.arange(14.0).reshape(7, 2)
    sizes = []

    def fn(a, b):
        sizes.append(len(a))
        return a * 2, b.sum(1)

    doubled, sums = in_chunks(fn, x, y, chunk=3)
    assert sizes == [3, 3, 3]  # the last part (one row) padded to three: one shape for a jitted fn
    np.testing.assert_array_equal(doubled, x * 2)
    np.testing.assert_array_equal(sums, y.sum(1))
    np.testing.assert_array_equal(in_chunks(lambda a: a + 1, x, chunk=4), x + 1)
