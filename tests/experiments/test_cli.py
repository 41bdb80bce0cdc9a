"""The CLI end to end on tiny configs; bad configs fail at start-up naming the field; TFDS via mock data."""

from __future__ import annotations

import json
import os

import pytest

from experiments import build, main
from experiments.configs import cifar10, digits, mnist, toy2d


def tiny_digits():
    c = digits.get_config()
    c.model.arch = "dit"
    c.model.dit.update(dict(hidden_size=32, depth=1, num_heads=2))
    c.train.update(dict(batch_size=32, num_steps=4, log_every=2, checkpoint_every=4))
    c.sample.num_steps = 2
    c.eval.num_samples = 64
    return c


def test_digits_cli_writes_png_metrics_and_checkpoint(tmp_path, run_cli):
    wd = str(tmp_path / "run")
    c = tiny_digits()
    args = ["--config=experiments/configs/digits.py", "--progress=false"] + [
        f"--config.{k}={v}" for k, v in {
            "model.arch": "dit", "model.dit.hidden_size": 32, "model.dit.depth": 1, "model.dit.num_heads": 2,
            "train.batch_size": 32, "train.num_steps": 4, "train.log_every": 2, "train.checkpoint_every": 4,
            "sample.num_steps": 2, "eval.num_samples": 64}.items()]
    proc = run_cli(wd, *args)
    assert proc.returncode == 0, proc.output
    for name in ("samples.png", "samples.npz", "metrics.json", "metrics.jsonl", "config.json"):
        assert os.path.exists(os.path.join(wd, name)), name
    assert os.path.isdir(os.path.join(wd, "checkpoints", "4"))
    with open(os.path.join(wd, "metrics.json")) as f:
        m = json.load(f)
    assert m["step"] == 4 and m["num_samples"] == 64 and m["nonfinite_samples"] == 0
    assert 0 < m["fd_floor"] < m["fd_noise_baseline"]

    # eval mode restores the checkpoint (in process, same tiny config) and reproduces the samples.
    m2 = main.run(c, wd, "eval", progress=False)
    assert m2["step"] == 4 and m2["fd"] == pytest.approx(m["fd"], rel=1e-4)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("optim.learning_rate", -1e-3, "optim.learning_rate"),
        ("data.source", "imagenet", "data.source"),
        ("train.batch_size", 0, "train.batch_size"),
        ("train.checkpoint_every", 75, "train.checkpoint_every"),
        ("diffusion.precond", "rectified", "diffusion.precond"),
        ("diffusion.sigma_data", -0.5, "diffusion.sigma_data"),
        ("train.nonfinite", "ignore", "train.nonfinite"),
    ],
)
def test_bad_config_fails_naming_the_field(field, value, match):
    c = digits.get_config()
    section, name = field.split(".")
    c[section][name] = value
    with pytest.raises(ValueError, match=match):
        build.validate(c)


def test_unet_that_cannot_downsample_names_the_field():
    c = digits.get_config()
    c.model.arch = "unet"
    c.model.unet.channel_mult = (1, 2, 2, 2, 2)
    with pytest.raises(ValueError, match=r"model.unet.channel_mult.*multiple of 16"):
        build.build_network(c, (8, 8, 1))


def test_unknown_toy_and_sampler():
    c = toy2d.get_config()
    c.data.name = "moons"
    with pytest.raises(ValueError, match="data.name"):
        build.build_data(c)
    c = toy2d.get_config()
    c.sample.sampler = "rk4"
    with pytest.raises(ValueError, match="sample.sampler"):
        build.build_sampler(c, None, None, (2,))


def test_tfds_configs_through_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=64):
        data = build.build_data(cifar10.get_config())
        assert data.shape == (32, 32, 3) and data.train.get([0, 1])["label"].shape == (2,)
        c = mnist.get_config()
        c.model.unet.update(dict(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                                 num_groups=4, dropout=0.1))
        c.train.update(dict(batch_size=8, num_steps=2, log_every=1, checkpoint_every=2))
        c.sample.num_steps = 2
        c.eval.num_samples = 4
        m = main.run(c, str(tmp_path), "train", progress=False)
    assert m["step"] == 2 and m["nonfinite_samples"] == 0
    assert os.path.exists(tmp_path / "samples.png")
