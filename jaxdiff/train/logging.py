"""Metric writers: JSON lines (always) and TensorBoard (when tensorboardX is installed)."""

from __future__ import annotations

import json
import os


class MetricWriter:
    """Appends ``{"step": s, **metrics}`` lines to ``path``.

    On resume from step ``resume_step`` the file is truncated to the lines with
    ``step <= resume_step``, so a run killed after its last checkpoint leaves a
    log identical to an uninterrupted run.
    """

    def __init__(self, path: str, *, resume_step: int = 0, tensorboard_dir: str | None = None):
        self.path = path
        kept = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    if rec.get("step", 0) <= resume_step:
                        kept.append(line if line.endswith("\n") else line + "\n")
        with open(path, "w") as f:
            f.writelines(kept)
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                pass
            else:
                self._tb = SummaryWriter(tensorboard_dir)

    def write(self, step: int, metrics: dict) -> None:
        rec = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._tb is not None:
            for k, v in rec.items():
                if k != "step":
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
