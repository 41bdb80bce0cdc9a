"""The QM9 graph-diffusion task end to end on a tiny model, and its config errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from experiments import run
from experiments.checks import ConfigError
from experiments.configs import qm9_digress, qm9_graph_dit


def tiny(config):
    config.data.num_train = 2000
    config.model.update(dict(hidden=32, depth=1, num_heads=2))
    config.diffusion.update(dict(num_steps=20, sample_steps=5))
    config.train.update(dict(batch_size=32, num_steps=20, log_every=10, checkpoint_every=20))
    config.eval.update(dict(num_samples=24, batch_size=24, reference_size=200, fcd=False, grid=6,
                            guidance_scales=(1.0, 2.0), shuffle_scale=2.0))
    return config


def test_graph_dit_trains_samples_evaluates_and_restores(tmp_path):
    workdir = str(tmp_path)
    metrics = run.run(tiny(qm9_graph_dit.get_config()), workdir, progress=False)
    settings = metrics["settings"]
    assert set(settings) == {"unconditional", "guidance 1", "guidance 2", "shuffled targets",
                             "held-out real molecules"}
    assert settings["held-out real molecules"]["valid"] == 1.0
    for name in ("unconditional", "guidance 1", "guidance 2"):
        r = settings[name]
        assert 0 <= r["valid"] <= r["valid_corrected"] <= 1
        assert 0 <= r["uniqueness"] <= 1 and np.isfinite(r["logp_mae"]) and 0 <= r["ring_accuracy"] <= 1
    assert metrics["step"] == 20 and metrics["num_params"] > 0
    for name in ("metrics.json", "metrics.md", "molecules.png", "metrics.jsonl", "config.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f)["settings"]["guidance 2"] == settings["guidance 2"]
    # eval restores the checkpoint and draws the same molecules (same keys, same parameters).
    again = run.run(tiny(qm9_graph_dit.get_config()), workdir, mode="eval", progress=False)
    assert again["settings"]["guidance 2"]["valid"] == settings["guidance 2"]["valid"]


def test_digress_unconditional(tmp_path):
    metrics = run.run(tiny(qm9_digress.get_config()), str(tmp_path), progress=False)
    assert set(metrics["settings"]) == {"unconditional", "held-out real molecules"}
    assert 0 <= metrics["settings"]["unconditional"]["valid"] <= 1


@pytest.mark.parametrize("section, field, value, match", [
    ("diffusion", "transition", "absorbing", "config.diffusion.transition: unknown 'absorbing'; choose one of "),
    ("diffusion", "sample_steps", 50, "config.diffusion.sample_steps: 50 exceeds diffusion.num_steps=20"),
    ("model", "arch", "gcn", "config.model.arch: unknown 'gcn'; choose one of graph_dit, digress"),
    ("data", "numeric", ("homo",), "config.data.numeric: unknown 'homo'; choose one of logp, qed"),
    ("data", "name", "zinc", "config.data.name: unknown 'zinc'; choose one of qm9"),
])
def test_bad_config_fails_at_start_up_naming_the_field(tmp_path, section, field, value, match):
    config = tiny(qm9_digress.get_config())
    config[section][field] = value
    with pytest.raises(ConfigError, match=match):
        run.check(config, str(tmp_path), "train")
