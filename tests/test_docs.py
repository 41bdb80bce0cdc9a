"""The documentation builds without a warning and has a reference page for every public module."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed (pip install -e '.[docs]')")


def public_modules() -> set[str]:
    names = set()
    for path in (ROOT / "jaxdiff").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not any(part.startswith("_") for part in parts):
            names.add(".".join(parts))
    return names


def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    missing = public_modules() - {doc["title"] for doc in index["docs"]}
    assert not missing, f"modules without a reference page: {sorted(missing)}"
