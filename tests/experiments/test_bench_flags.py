"""Importing a benchmark (or the runner) defines no absl flags: each defines its own only when run as a script."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.experiments.conftest import ROOT

MODULES = ["experiments.run"] + sorted(
    f"experiments.bench.{name[:-3]}" for name in os.listdir(os.path.join(ROOT, "experiments", "bench"))
    if name.endswith(".py") and name != "__init__.py")

CHECK = """
import importlib, sys
from absl import flags
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as e:  # an optional peer (torch, cv2, ...) that this machine lacks
        print(f"skipped {name}: {e}")
        continue
    ours = {m: [f.name for f in fs] for m, fs in flags.FLAGS.flags_by_module_dict().items() if "experiments" in m}
    assert not ours, f"importing {name} defined flags {ours}"
"""

def test_importing_a_benchmark_defines_no_flags():
    proc = subprocess.run([sys.executable, "-c", CHECK, *MODULES], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
