"""FSDP: the sharding rule, meshes and their bad settings, and (on 4 host devices, in a process of
their own) a data x fsdp step against the replicated one, per-device bytes and resharding restores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxdiff.train import check_batch_size, data_mesh, fsdp_shardings, make_mesh
from jaxdiff.train.parallel import fsdp_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shape,fsdp,min_size,spec", [
    ((64, 128), 4, 0, P(None, "fsdp")),
    ((128, 64), 4, 0, P("fsdp")),
    ((64, 64), 4, 0, P(None, "fsdp")),  # among equal axes, the last
    ((3, 3, 8, 64), 4, 0, P(None, None, None, "fsdp")),
    ((6, 10), 4, 0, P()),  # no axis divides
    ((), 4, 0, P()),
    ((64, 64), 4, 2**14, P()),  # below min_size
    ((64, 128), 1, 0, P()),
])
def test_fsdp_rule(shape, fsdp, min_size, spec):
    assert fsdp_spec(shape, fsdp, min_size) == spec


def test_a_mesh_without_fsdp_axis_replicates_everything():
    tree = {"w": np.zeros((64, 64), np.float32), "step": np.int32(0)}
    assert all(s.spec == P() for s in jax.tree.leaves(fsdp_shardings(tree, data_mesh(), min_size=0)))


@pytest.mark.parametrize("call,message", [
    (lambda: make_mesh(fsdp=4), r"fsdp=4 exceeds the device count \(2\)"),
    (lambda: make_mesh(fsdp=0), r"fsdp must be >= 1, got 0"),
    (lambda: make_mesh(data=2, fsdp=2), r"data=2 times fsdp=2 must equal the device count \(2\)"),
    (lambda: check_batch_size(3, make_mesh(fsdp=2)), r"batch_size=3 must be divisible by the device count \(2\)"),
])
def test_bad_settings_name_themselves(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """The measurements of ``tests/train/fsdp_run.py`` on 4 host devices."""
    tmp = tmp_path_factory.mktemp("fsdp")
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", os.environ.get("XLA_FLAGS", ""))
    env = dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "tests.train.fsdp_run", str(tmp / "out.json"), str(tmp / "workdir")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads((tmp / "out.json").read_text())


def test_data_by_fsdp_steps_equal_replicated_steps(four_devices):
    # Gradient sums split over two mesh axes add in another order: float32 rounding, which Adam's
    # m / (sqrt(v) + eps) can magnify where a gradient is near eps. Parameters are of scale 0.2.
    assert four_devices["fsdp2"]["abs"] <= 1e-5, four_devices["fsdp2"]
    assert four_devices["fsdp4"]["abs"] <= 1e-5, four_devices["fsdp4"]
    assert four_devices["fsdp2_metrics"]["rel"] <= 1e-6, four_devices["fsdp2_metrics"]


def test_fsdp_divides_the_state_bytes_per_device(four_devices):
    shapes = four_devices["shard_shapes"].values()
    ratio = sum(np.prod(shard) for _, shard in shapes) / sum(np.prod(full) for full, _ in shapes)
    nbytes = four_devices["bytes"]
    print(f"per-device bytes of params + EMA + Adam state: {nbytes}; fsdp=4 kept {ratio:.3f} of the params")
    for full, shard in shapes:  # fsdp_run's min_size is 1024 elements; every large kernel has an axis divisible by 4
        assert np.prod(shard) * (4 if np.prod(full) >= 1024 else 1) == np.prod(full), (full, shard)
    assert nbytes["fsdp4"] / nbytes["replicated"] == pytest.approx(ratio, abs=0.01)
    assert nbytes["fsdp4"] < 0.3 * nbytes["replicated"] and nbytes["data2_fsdp2"] < 0.55 * nbytes["replicated"]


def test_sharded_checkpoint_restores_onto_other_meshes(four_devices):
    restore = four_devices["restore"]
    assert restore["step"] == 3 and restore["fsdp2_equal"] and restore["one_device_equal"]
    assert restore["fsdp2_bytes"] == four_devices["bytes"]["data2_fsdp2"]  # laid out by the new mesh
    assert len(restore["one_device_devices"]) == 1


def test_fsdp_must_divide_the_device_count(four_devices):
    errors = four_devices["errors"]
    assert errors["fsdp=3"] == "fsdp=3 must divide the device count (4)"
    assert errors["fsdp=8"] == "fsdp=8 exceeds the device count (4)"
    assert errors["batch_size=6"].startswith("batch_size=6 must be divisible by the device count (4)")
