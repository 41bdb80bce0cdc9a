"""The QM9 table read from the qm9pack wheel."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from jaxdiff.data.qm9 import read_qm9


def test_read_qm9_columns_by_index():
    if importlib.util.find_spec("qm9pack") is None:  # importing it needs pkg_resources
        pytest.skip("qm9pack is not installed")
    pytest.importorskip("pandas")
    df = read_qm9(["SMILES", "Dipole_debye"])
    assert list(df.columns) == ["Index", "SMILES", "Dipole_debye"]
    assert len(df) == 130_831  # 133,885 less the 3,054 that failed the geometry consistency check
    assert df["Index"].iloc[0] == 1 and np.all(np.diff(df["Index"]) > 0)
    assert df["SMILES"].iloc[0] == "C" and df["Dipole_debye"].iloc[0] == 0.0  # methane
