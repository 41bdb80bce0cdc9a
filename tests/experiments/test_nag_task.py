"""The DiffusionNAG score-model task end to end on a tiny model, and its config errors."""

from __future__ import annotations

import pytest

from experiments import run
from experiments.checks import ConfigError
from experiments.configs import nag


def tiny():
    c = nag.get_config()
    c.model.update(dict(hidden=16, depth=1, num_heads=2))
    c.sde.num_steps = 5
    c.train.update(dict(batch_size=32, num_steps=10, log_every=5, checkpoint_every=10))
    c.eval.num_samples = 32
    return c


def test_trains_samples_and_scores(tmp_path):
    metrics = run.run(tiny(), str(tmp_path), progress=False)
    gen, real = metrics["generated"], metrics["held-out cells"]
    assert metrics["step"] == 10 and metrics["train_classes"] == 5819 and gen["num_samples"] == 32
    assert 0 <= gen["validity"] <= 1
    # the floor: real held-out cells are valid, distinct and all novel
    assert real["validity"] == 1.0 and real["uniqueness"] == 1.0 and real["novelty"] == 1.0
    assert real["op_tv"] < 0.2


@pytest.mark.parametrize("section, field, value, match", [
    ("data", "train_fraction", 1.5, r"config.data.train_fraction: must be in \(0, 1\]"),
    ("model", "hidden", 18, "config.model.hidden: 18 must be an even multiple of model.num_heads=4"),
    ("sde", "sigma_max", 0.001, "config.sde.sigma_max: must exceed sde.sigma_min=0.01"),
    ("sde", "n_corrector", -1, "config.sde.n_corrector: must be >= 0"),
    ("eval", "num_samples", 0, "config.eval.num_samples: must be > 0"),
])
def test_bad_config_fails_at_start_up_naming_the_field(tmp_path, section, field, value, match):
    c = nag.get_config()
    c[section][field] = value
    with pytest.raises(ConfigError, match=match):
        run.run(c, str(tmp_path), progress=False)
