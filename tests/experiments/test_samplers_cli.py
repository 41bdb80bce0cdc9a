"""Every registered sampler runs by name through the runner (``--config.sample.sampler=<name>``): a tiny digits
model is trained once, then each sampler evaluates it from a copy of that workdir and ``metrics.json`` records
its NFE."""

from __future__ import annotations

import json
import shutil

import pytest

from experiments import cli, run
from jaxdiff import samplers
from jaxdiff.schedules import karras

NUM_STEPS = 3
TINY = [
    "--config=experiments/configs/digits.py",
    "--config.model.dit.hidden_size=32", "--config.model.dit.depth=1", "--config.model.dit.num_heads=2",
    "--config.train.batch_size=32", "--config.train.num_steps=2", "--config.train.log_every=1",
    "--config.train.checkpoint_every=2", f"--config.sample.num_steps={NUM_STEPS}", "--config.eval.num_samples=16",
]
OPTIONS = {
    "annealed_langevin": {"n_steps_each": 2},  # its default, 100 Langevin steps per level, is slow
    "ipndm": {"order": 3},  # its default order 4 needs at least 4 steps
}


def config(*overrides):
    rest, fields = cli.split_overrides(list(TINY) + list(overrides))
    c = cli.load_config(rest[0].removeprefix("--config="))
    cli.apply_overrides(c, fields)
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trained")
    run.run(config(), str(workdir), "train", progress=False)
    return workdir


@pytest.mark.parametrize("name", sorted(samplers.REGISTRY))
def test_sampler_runs_by_name_and_records_its_nfe(name, trained, tmp_path):
    workdir = shutil.copytree(trained, tmp_path / "run")
    options = [f"--config.sample.options.{k}={v}" for k, v in OPTIONS.get(name, {}).items()]
    metrics = run.run(config(f"--config.sample.sampler={name}", *options), str(workdir), "eval", progress=False)
    with open(workdir / "metrics.json") as f:
        written = json.load(f)
    assert written["sampler"] == metrics["sampler"] == name
    assert written["nonfinite_samples"] == 0 and written["step"] == 2
    expected = samplers.get(name).nfe(karras(NUM_STEPS, 0.002, 80.0), **OPTIONS.get(name, {}))
    if expected is None:  # adaptive: the measured count, at least one Dormand–Prince step and the final D(x)
        assert isinstance(written["sampler_nfe"], int) and written["sampler_nfe"] >= 7
    else:
        assert written["sampler_nfe"] == expected
