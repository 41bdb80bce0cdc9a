"""Metrics tests train the digits classifier once per session, in a temporary cache."""

from __future__ import annotations

import pytest

from jaxdiff.metrics import load_digits_classifier


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Point $JAXDIFF_CACHE at a temporary directory so tests never touch ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXDIFF_CACHE", str(tmp_path_factory.mktemp("jaxdiff_cache")))
        yield


@pytest.fixture(scope="session")
def digits_classifier(_isolated_cache):
    return load_digits_classifier()
