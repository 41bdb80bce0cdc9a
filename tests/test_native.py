"""Building and loading the C++ kernels: cache, fallback without a compiler, opting out."""

from __future__ import annotations

import itertools
import warnings

import pytest

from jaxdiff import _native

_load = _native.load.__wrapped__  # uncached: each call builds or loads anew
_calls = itertools.count()


def load(name: str) -> bool:
    """Registers under a fresh target name: XLA refuses a second library for a registered name."""
    return _load(name, ((f"jaxdiff_test_target_{next(_calls)}", "JaxdiffCorrLookup"),))


def test_builds_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDIFF_CACHE", str(tmp_path))
    assert load("corr_cpu")
    (library,) = (tmp_path / "native").glob("corr_cpu-*.so")
    stamp = library.stat().st_mtime_ns
    assert load("corr_cpu")
    assert library.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_without_a_compiler_warns_and_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDIFF_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="native kernels 'corr_cpu' unavailable, using XLA"):
        assert not load("corr_cpu")
    assert not list((tmp_path / "native").glob("*.so"))


def test_opting_out(monkeypatch):
    monkeypatch.setenv("JAXDIFF_NATIVE", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not load("corr_cpu")
