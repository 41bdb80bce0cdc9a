"""Every notebook in colabs/ runs top to bottom with small settings."""

from __future__ import annotations

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "colabs", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXDIFF_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("PYTHONPATH", ROOT)
    # One host device, as in a Colab CPU runtime: the suite's second device is for the data-parallel
    # tests, and a 2-device all-reduce in a notebook's `fit` once waited forever for its second participant.
    flags = os.environ.get("XLA_FLAGS", "").split()
    monkeypatch.setenv("XLA_FLAGS", " ".join(f for f in flags if not f.startswith("--xla_force_host_platform_device_count")))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
