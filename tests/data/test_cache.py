"""cached_arrays: built once, then read back; a build that fails leaves no cache."""

import multiprocessing

import numpy as np
import pytest

from jaxdiff.data.cache import cached_arrays


def test_builds_once_then_reads(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(3), "s": np.array(["a", "b"])}

    path = tmp_path / "sub" / "c.npz"
    first, second = cached_arrays(path, build), cached_arrays(path, build)
    assert calls == [1]
    for out in (first, second):
        np.testing.assert_array_equal(out["x"], np.arange(3))
        np.testing.assert_array_equal(out["s"], ["a", "b"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.lock", "c.npz"]


def test_failed_build_leaves_nothing(tmp_path):
    def build():
        raise RuntimeError("no data")

    with pytest.raises(RuntimeError):
        cached_arrays(tmp_path / "c.npz", build)
    assert not (tmp_path / "c.npz").exists()


def _build_in_process(args):
    path, log = args

    def build():
        with open(log, "a") as f:
            f.write("built\n")
        return {"x": np.ones(4)}

    return float(cached_arrays(path, build)["x"].sum())


def test_concurrent_processes_build_once(tmp_path):
    path, log = tmp_path / "c.npz", tmp_path / "log"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(_build_in_process, [(path, log)] * 3) == [4.0] * 3
    assert log.read_text() == "built\n"
