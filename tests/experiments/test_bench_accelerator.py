"""``experiments/bench/accelerator.py --smoke`` runs end to end on the CPU and writes its record."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.experiments.conftest import ROOT


def test_smoke_run_writes_every_part(tmp_path):
    out = tmp_path / "accelerator.json"
    cmd = [sys.executable, "-m", "experiments.bench.accelerator", "--smoke", "--dtypes=bfloat16", f"--out={out}"]
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["platform"] == "cpu" and record["jax"] and record["smoke"]
    assert not record["errors"], record["errors"]
    assert record["tests"]["passed"] == 1 and record["tests"]["failed"] == [], record["tests"]
    assert set(record["matmul_peak_tflop_per_s"]) == {"bfloat16", "float32", "float32_highest"}
    for name in ("dit/bfloat16", "unet/bfloat16"):
        train, sampling = record["train"][name], record["sampling"][name]
        assert train["loss_finite"] and train["tflop_per_step"] > 0 and 0 < train["mfu"], train
        assert sampling["nfe"] == 3 and sampling["images_per_s"] > 0, sampling  # Heun, 2 steps
        assert f"| {name.replace('/', ' | ')} |" in proc.stdout
    assert record["correlation"]["build_ms"] > 0
