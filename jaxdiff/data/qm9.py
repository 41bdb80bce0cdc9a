"""QM9 (130,831 small organic molecules with DFT properties) as shipped in the ``qm9pack`` wheel.

The wheel's CSVs are read directly: importing ``qm9pack`` needs ``pkg_resources``, which may be
absent. Columns include ``SMILES``, ``Elements``, ``XYZ_Ang`` (DFT geometry with hydrogens),
``HOMO_LUMO_gap_au`` and ``Dipole_debye``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


def read_qm9(columns: Sequence[str]):
    """pandas DataFrame of ``Index`` (1-based gdb9 numbering) and ``columns``, one row per molecule, by Index."""
    import pandas as pd

    spec = importlib.util.find_spec("qm9pack")
    if spec is None:
        raise ModuleNotFoundError("QM9 is read from the qm9pack wheel: pip install qm9pack")
    root = Path(spec.submodule_search_locations[0]) / "data"
    usecols = ["Index", *(c for c in columns if c != "Index")]
    frames = [pd.read_csv(root / part, usecols=usecols) for part in _PARTS]
    return pd.concat(frames, ignore_index=True).sort_values("Index", ignore_index=True)
