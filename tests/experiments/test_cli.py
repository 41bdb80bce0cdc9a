"""The runner end to end on a tiny digits config; --help; bad input fails at start-up naming the field; TFDS
through mock data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from experiments import cli, networks, run
from experiments.checks import ConfigError
from experiments.configs import cifar10, digits, mnist, toy2d
from experiments.tasks import diffusion
from tests.experiments.conftest import ROOT

TINY_DIGITS = {
    "model.dit.hidden_size": 32, "model.dit.depth": 1, "model.dit.num_heads": 2, "train.batch_size": 32,
    "train.num_steps": 4, "train.log_every": 2, "train.checkpoint_every": 4, "sample.num_steps": 2,
    "eval.num_samples": 64,
}


def tiny_digits():
    c = digits.get_config()
    cli.apply_overrides(c, [f"{k}={v}" for k, v in TINY_DIGITS.items()])
    return c


def test_digits_cli_writes_png_metrics_and_checkpoint(tmp_path, run_cli):
    wd = str(tmp_path / "run")
    proc = run_cli(wd, "--progress=false", *(f"--config.{k}={v}" for k, v in TINY_DIGITS.items()))
    assert proc.returncode == 0, proc.output
    for name in ("samples.png", "samples.npz", "metrics.json", "metrics.jsonl", "config.json", "train_time.json"):
        assert os.path.exists(os.path.join(wd, name)), name
    assert os.path.isdir(os.path.join(wd, "checkpoints", "4"))
    with open(os.path.join(wd, "metrics.json")) as f:
        m = json.load(f)
    assert m["step"] == 4 and m["num_samples"] == 64 and m["nonfinite_samples"] == 0
    assert 0 < m["fd_floor"] < m["fd_noise_baseline"]
    assert m["sampler"] == "heun" and m["sampler_nfe"] == 3  # 2 Heun steps, the last one Euler
    assert m["train_seconds"] == m["train_seconds_this_run"] > 0
    with open(os.path.join(wd, "config.json")) as f:
        assert json.load(f)["task"] == "diffusion"

    # eval restores the checkpoint (in process, same tiny config), reproduces the samples and keeps the training time.
    m2 = run.run(tiny_digits(), wd, "eval", progress=False)
    assert m2["step"] == 4 and m2["fd"] == pytest.approx(m["fd"], rel=1e-4)
    assert m2["train_seconds"] == m["train_seconds"] and "train_seconds_this_run" not in m2
    sampled = run.run(tiny_digits(), wd, "sample", progress=False)
    assert sampled["num_samples"] == 100 and sampled["sampler_nfe"] == 3
    assert os.path.exists(os.path.join(wd, "samples.json"))


def start(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    return subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_help_and_bad_input_on_the_command_line(tmp_path):
    """--help lists the runner's flags and the config's fields; bad input: one line on stderr, exit status 2."""
    wd = f"--workdir={tmp_path}"
    bad = {
        "config.optim.lr: no such field; config.optim has b1, b2, grad_clip, learning_rate": ("--config.optim.lr=1",),
        "--config=experiments/configs/nope.py: no such file; the configs in experiments/configs: cifar10.py":
            ("--config=experiments/configs/nope.py",),
        "config.sample.sampler: unknown sampler 'rk4'; choose one of ": ("--config.sample.sampler=rk4",),
        "config.sample.options: sampler 'heun' takes no option 'eta'": ("--config.sample.options.eta=0.5",),
        "config.task: unknown 'gan'; choose one of bridge, diffusion, graph": ("--config.task=gan",),
        "config.train.batch_size: expected an integer, got 'many'": ("--config.train.batch_size=many",),
    }
    procs = {"help": start("--help", "--config=experiments/configs/toy2d.py")}
    procs.update({match: start(wd, *args) for match, args in bad.items()})
    out = {k: p.communicate(timeout=300) + (p.returncode,) for k, p in procs.items()}

    stdout, _, rc = out.pop("help")
    assert rc == 0
    for text in ("--config:", "--workdir:", "--mode: <train|sample|eval>", "--debug", "Config fields of",
                 "train.num_steps = 3000", "data.name = 'swiss_roll'", "sample.sampler = 'heun'", "Samplers ("):
        assert text in stdout, text
    assert "orbax_use_distributed" not in stdout and "alsologtostderr" not in stdout  # only the runner's flags
    for match, (stdout, stderr, rc) in out.items():
        assert rc == 2 and stderr.startswith("error: ") and match in stderr, (match, stderr)
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr


def test_debug_shows_the_traceback(tmp_path):
    stdout, stderr = start(f"--workdir={tmp_path}", "--debug", "--config.sample.sampler=rk4").communicate(timeout=300)
    assert "Traceback" in stderr and "ConfigError: config.sample.sampler" in stderr


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
        ("sample.grid", "linear", "sample.grid: unknown 'linear'; choose one of karras, exponential, cosine"),
        ("sample.sampler", "rk4", "sample.sampler: unknown sampler 'rk4'; choose one of .*heun"),
        ("model.arch", "gan", "model.arch: unknown 'gan'; choose one of unet, dit, mlp"),
    ],
)
def test_bad_config_fails_at_start_up_naming_the_field(tmp_path, field, value, match):
    c = digits.get_config()
    section, name = field.split(".")
    c[section][name] = value
    with pytest.raises(ConfigError, match=match):
        run.check(c, str(tmp_path), "train")


def test_bad_options_mode_and_missing_checkpoint(tmp_path):
    c = digits.get_config()
    c.sample.options.s_churn = 40.0
    with pytest.raises(ConfigError, match="config.sample.options: sampler 'heun' takes no option 's_churn'"):
        run.check(c, str(tmp_path), "train")
    c.sample.sampler = "edm"
    run.check(c, str(tmp_path), "train")
    with pytest.raises(ConfigError, match=r"--mode=eval: no checkpoint in .*; train first"):
        run.check(c, str(tmp_path), "eval")
    c.task = "graph"
    with pytest.raises(ConfigError, match="--mode=sample: task 'graph' runs train, eval"):
        run.check(c, str(tmp_path), "sample")


def test_overrides_parse_to_the_field_type_and_name_unknown_fields():
    c = digits.get_config()
    cli.apply_overrides(c, ["--config.train.num_steps=10", "--config.optim.learning_rate=1e-3",
                            "--config.model.unet.channel_mult=1,2,2", "--config.train.nonfinite=stop",
                            "--config.sample.options.s_churn=40", "--config.sample.options={'s_noise': 1.1}"])
    assert c.train.num_steps == 10 and c.optim.learning_rate == 1e-3 and c.train.nonfinite == "stop"
    assert c.model.unet.channel_mult == (1, 2, 2) and dict(c.sample.options) == {"s_noise": 1.1}
    for arg, match in [("--config.train.num_steps=1.5", "config.train.num_steps: expected an integer"),
                       ("--config.model.dit.foo=1", "config.model.dit.foo: no such field; config.model.dit has "),
                       ("--config.nope.x=1", r"config.nope: no such field; config has .*train"),
                       ("--config.train.num_steps", "give a value")]:
        with pytest.raises(ConfigError, match=match):
            cli.apply_overrides(c, [arg])
    with pytest.raises(ConfigError, match="no such file"):
        cli.load_config("experiments/configs/nope.py")


def test_unet_that_cannot_downsample_names_the_field():
    c = digits.get_config()
    c.model.arch = "unet"
    c.model.unet.channel_mult = (1, 2, 2, 2, 2)
    with pytest.raises(ValueError, match=r"model.unet.channel_mult.*multiple of 16"):
        networks.network(c, (8, 8, 1))


def test_unknown_toy():
    c = toy2d.get_config()
    c.data.name = "moons"
    with pytest.raises(ConfigError, match="data.name: unknown 'moons'"):
        diffusion.build_data(c)


def test_tfds_configs_through_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=64):
        data = diffusion.build_data(cifar10.get_config())
        assert data.shape == (32, 32, 3) and data.train.get([0, 1])["label"].shape == (2,)
        c = mnist.get_config()
        c.model.unet.update(dict(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                                 num_groups=4, dropout=0.1))
        c.train.update(dict(batch_size=8, num_steps=2, log_every=1, checkpoint_every=2))
        c.sample.num_steps = 2
        c.eval.num_samples = 4
        m = run.run(c, str(tmp_path), "train", progress=False)
    assert m["step"] == 2 and m["nonfinite_samples"] == 0
    assert os.path.exists(tmp_path / "samples.png")
