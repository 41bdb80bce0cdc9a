"""Run records: metrics as JSON lines (and TensorBoard when tensorboardX is installed), training time."""

from __future__ import annotations

import json
import os
import time


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


class TrainTime:
    """Training wall time summed over the runs that built a workdir's state, in ``train_time.json``.

    The file holds ``{"checkpoints": {step: seconds}, "last_run": {"start": step, "seconds": s}}``:
    the total training time behind each checkpoint, across resumes, and the part of the latest run.
    A run that resumes from step k adds its time to that of checkpoint k (or of the latest
    checkpoint before it with a record, when a run died between saving and recording).
    """

    FILE = "train_time.json"

    def __init__(self, workdir: str, start_step: int, *, write: bool = True):
        self.path, self.start, self.write_file = os.path.join(workdir, self.FILE), int(start_step), write
        self.checkpoints = read_train_time(workdir).get("checkpoints", {})
        earlier = [k for k in self.checkpoints if k <= self.start]
        self.before = self.checkpoints[max(earlier)] if earlier else 0.0
        self.t0 = time.perf_counter()

    def record(self, step: int) -> None:
        """Note the total time at checkpoint ``step`` (process 0 writes the file)."""
        now = time.perf_counter() - self.t0
        self.checkpoints[int(step)] = self.before + now
        if self.write_file:
            record = {"checkpoints": {str(k): v for k, v in sorted(self.checkpoints.items())},
                      "last_run": {"start": self.start, "seconds": now}}
            with open(self.path, "w") as f:
                json.dump(record, f, indent=2)


def read_train_time(workdir: str) -> dict:
    """``train_time.json`` of ``workdir`` with integer checkpoint steps; ``{}`` when there is none."""
    path = os.path.join(workdir, TrainTime.FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        record = json.load(f)
    return {**record, "checkpoints": {int(k): v for k, v in record["checkpoints"].items()}}
