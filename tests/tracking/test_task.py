"""The runner's tracking task end to end on a tiny model, and its config errors."""

from __future__ import annotations

import json
import os

import jax
import pytest

from experiments import run
from experiments.checks import ConfigError
from experiments.configs import tracking
from jaxdiff.train import make_mesh


@pytest.fixture
def one_device(monkeypatch):
    """The runner on one of the two test devices. On two devices this task's step, on two loaded cores, aborted
    in XLA's CPU collective rendezvous (its 40 s timeout) in 2 of 3 runs; multi-device training is tested in
    tests/train."""
    monkeypatch.setattr(run, "make_mesh", lambda fsdp: make_mesh(fsdp=fsdp, devices=jax.devices()[:1]))


def tiny():
    c = tracking.get_config()
    c.model.update(dict(window=4, iters=2, levels=2, dim=16, width=8, hidden=16, heads=2, depth=1, virtual=4))
    c.data.update(dict(size=(32, 32), num_frames=8, num_points=6, num_train=64))
    c.train.update(dict(batch_size=2, num_steps=4, log_every=2, checkpoint_every=4))
    c.eval.update(dict(num_videos=2, num_frames=8, num_points=6))
    return c


def test_trains_evaluates_and_restores(tmp_path, one_device):
    workdir = str(tmp_path)
    metrics = run.run(tiny(), workdir, progress=False)
    rows = metrics["rows"]
    assert set(rows) == {"CoTracker (this run)", "zero motion"}
    for r in rows.values():
        assert 0 <= r["AJ"] <= r["delta_avg"] <= 1 and 0 <= r["OA"] <= 1
    assert metrics["step"] == 4 and metrics["num_params"] > 0
    for name in ("metrics.json", "metrics.md", "tracks.png", "metrics.jsonl", "config.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.dumps(json.load(f)["rows"]) == json.dumps(rows)  # NaN (no hidden frame) compares as text
    again = run.run(tiny(), workdir, mode="eval", progress=False)
    assert json.dumps(again["rows"]) == json.dumps(rows)


@pytest.mark.parametrize("section, field, value, match", [
    ("model", "window", 5, "config.model.window: must be even and >= 2, got 5"),
    ("model", "hiden", 32, "config.model.hiden: no such field; config.model has "),
    ("model", "corr", "dense", "config.model.corr: must be one of"),
    ("model", "stride", 3, "config.model.stride: must be one of"),
    ("data", "num_frames", 3, "config.data.num_frames: 3 is shorter than one window"),
    ("eval", "num_frames", 2, "config.eval.num_frames: 2 is shorter than one window"),
    ("data", "size", (12, 32), "config.data.size: must be"),
    ("eval", "num_videos", 0, "config.eval.num_videos: must be > 0"),
])
def test_bad_config_fails_at_start_up_naming_the_field(tmp_path, section, field, value, match):
    config = tiny()
    config[section][field] = value
    with pytest.raises(ConfigError, match=match):
        run.check(config, str(tmp_path), "train")
