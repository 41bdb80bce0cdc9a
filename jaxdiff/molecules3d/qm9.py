"""QM9 point clouds (``jaxdiff.data.qm9_3d``) held out exactly where the graph benchmarks hold out."""

from __future__ import annotations

import numpy as np

from jaxdiff.data.qm9_3d import split_by_index
from jaxdiff.graphs.qm9 import load_qm9, split_qm9


def split_qm9_3d(data: dict[str, np.ndarray], seed: int = 0,
                 test_fraction: float = 0.1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, test) of a point-cloud view: test is the molecules of the graph test set of
    ``jaxdiff.graphs.qm9.split_qm9(load_qm9(), seed, test_fraction)``.

    Molecules the graph set skips (charged atoms, unparsable SMILES) go to train: no molecule a graph
    model is evaluated on is trained on here.

    Args:
        data: a view of ``jaxdiff.data.qm9_3d.load_qm9_3d`` (or a row subset of one).
        seed: the graph split's seed.
        test_fraction: the graph split's test fraction, in (0, 1).
    """
    _, graph_test = split_qm9(load_qm9(), seed=seed, test_fraction=test_fraction)
    return split_by_index(data, graph_test["index"])
