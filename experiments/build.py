"""Wires an ml_collections config to library objects; the only place that does.

Every field is validated here, at start-up, with a message naming it, before
any compilation or training starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import losses, nn, precond, schedules, samplers
from jaxdiff.data import pipeline
from jaxdiff.train import OptimConfig

DATA_SOURCES = ("digits", "toy", "tfds")
ARCHS = ("unet", "dit", "mlp")
SAMPLERS = ("heun", "euler")


def _fail(field: str, message: str):
    raise ValueError(f"config.{field}: {message}")


@dataclasses.dataclass(frozen=True)
class Data:
    """The training source, held-out reference data and the example shape."""

    train: pipeline.Source
    reference: np.ndarray  # held-out real examples (N, ...) for metrics and grids
    shape: tuple  # one example's shape, e.g. (8, 8, 1) or (2,)
    kind: str  # "image" or "points"


def build_data(config) -> Data:
    cfg = config.data
    if cfg.source == "digits":
        from jaxdiff.data.digits import load_digits

        x, y = load_digits("train")
        ref, _ = load_digits("test")
        return Data(pipeline.ArraySource(image=x, label=y), ref, x.shape[1:], "image")
    if cfg.source == "toy":
        from jaxdiff.data.toy import TOYS, load_toy

        if cfg.name not in TOYS:
            _fail("data.name", f"unknown toy data set {cfg.name!r}; choose one of {TOYS}")
        if cfg.num_examples <= 0:
            _fail("data.num_examples", f"must be > 0, got {cfg.num_examples}")
        x = load_toy(cfg.name, cfg.num_examples, seed=config.seed)
        ref = load_toy(cfg.name, cfg.num_examples, seed=config.seed + 1)
        return Data(pipeline.ArraySource(image=x), ref, x.shape[1:], "points")
    if cfg.source == "tfds":
        from jaxdiff.data.tfds import TFDSImageSource

        train = TFDSImageSource(cfg.name, cfg.get("split", "train"), data_dir=cfg.get("data_dir"))
        test = TFDSImageSource(cfg.name, cfg.get("eval_split", "test"), data_dir=cfg.get("data_dir"))
        ref = test.get(np.arange(min(len(test), 1000)))["image"]
        return Data(train, ref, ref.shape[1:], "image")
    _fail("data.source", f"unknown data source {cfg.source!r}; choose one of {DATA_SOURCES}")


def build_network(config, shape: tuple):
    """A Flax module and ``net(params, x, c_noise, *, key=None, **cond)`` around it."""
    cfg = config.model
    if cfg.arch not in ARCHS:
        _fail("model.arch", f"unknown architecture {cfg.arch!r}; choose one of {ARCHS}")
    kwargs = dict(cfg.get(cfg.arch, {}))
    if "dtype" in kwargs:
        if kwargs["dtype"] not in ("float32", "bfloat16", "float16"):
            _fail(f"model.{cfg.arch}.dtype", f"must be float32, bfloat16 or float16, got {kwargs['dtype']!r}")
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    if cfg.arch == "mlp":
        if len(shape) != 1:
            _fail("model.arch", f"mlp needs flat (D,) examples, the data has shape {shape}")
        module = nn.MLP(num_classes=cfg.num_classes, **kwargs)
    elif len(shape) != 3:
        _fail("model.arch", f"{cfg.arch} needs (H, W, C) images, the data has shape {shape}")
    elif cfg.arch == "unet":
        mult = tuple(kwargs.get("channel_mult", nn.UNet.channel_mult))
        try:
            nn.check_unet_image_size(shape[0], mult)
        except ValueError as e:
            _fail("model.unet.channel_mult", str(e))
        module = nn.UNet(num_classes=cfg.num_classes, **kwargs)
    else:
        p = kwargs.get("patch_size", nn.DiT.patch_size)
        if shape[0] % p or shape[1] % p:
            _fail("model.dit.patch_size", f"patch_size={p} must divide the image size {shape[:2]}")
        module = nn.DiT(num_classes=cfg.num_classes, **kwargs)

    def net(params, x, c_noise, *, key=None, **cond):
        rngs = {"dropout": key} if key is not None else {}
        return module.apply({"params": params}, x, c_noise, train=key is not None, rngs=rngs, **cond)

    return module, net


def init_params(module, shape: tuple, key):
    x = jnp.zeros((1, *shape), jnp.float32)
    return jax.jit(lambda k: module.init(k, x, jnp.ones((1,)))["params"])(key)


def build_precond(config):
    cfg = config.diffusion
    if cfg.precond not in precond.PRECONDITIONINGS:
        _fail("diffusion.precond", f"unknown {cfg.precond!r}; choose one of {tuple(precond.PRECONDITIONINGS)}")
    if cfg.precond == "edm":
        if not cfg.sigma_data > 0:
            _fail("diffusion.sigma_data", f"must be > 0, got {cfg.sigma_data}")
        return precond.EDMPrecond(sigma_data=cfg.sigma_data)
    return precond.PRECONDITIONINGS[cfg.precond]()


def build_loss(config, net, pre):
    cfg = config.diffusion
    if not 0.0 <= cfg.label_dropout < 1.0:
        _fail("diffusion.label_dropout", f"must be in [0, 1), got {cfg.label_dropout}")
    if cfg.precond == "edm":
        if not cfg.P_std > 0:
            _fail("diffusion.P_std", f"must be > 0, got {cfg.P_std}")
        noise = losses.EDMNoise(cfg.P_mean, cfg.P_std, cfg.sigma_data)
    elif cfg.precond in ("vp", "iddpm"):
        noise = losses.VPNoise()
    else:
        noise = losses.VENoise()
    return losses.denoising_loss(
        net, pre, noise, label_dropout=cfg.label_dropout, num_classes=config.model.num_classes
    )


def build_optim(config) -> OptimConfig:
    try:
        return OptimConfig(**dict(config.optim))
    except ValueError as e:
        raise ValueError(f"config.{e}") from None


def check_train(config) -> None:
    cfg = config.train
    for name in ("batch_size", "num_steps", "log_every", "checkpoint_every", "max_to_keep"):
        if cfg[name] <= 0:
            _fail(f"train.{name}", f"must be > 0, got {cfg[name]}")
    if cfg.checkpoint_every % cfg.log_every:
        _fail("train.checkpoint_every", f"{cfg.checkpoint_every} must be a multiple of train.log_every={cfg.log_every}")
    if cfg.nonfinite not in ("skip", "stop"):
        _fail("train.nonfinite", f"must be 'skip' or 'stop', got {cfg.nonfinite!r}")
    if cfg.ema_halflife_nimg < 0:
        _fail("train.ema_halflife_nimg", f"must be >= 0, got {cfg.ema_halflife_nimg}")


def build_sampler(config, net, pre, shape: tuple) -> Callable[[Any, jax.Array, int], jax.Array]:
    """``sample(params, key, n, labels=None) -> (n, *shape)``: the configured grid and solver, jitted per n.

    A class-conditional model (``model.num_classes > 0``) samples with the given
    labels, or with the null label when ``labels`` is None.
    """
    cfg = config.sample
    if cfg.sampler not in SAMPLERS:
        _fail("sample.sampler", f"unknown sampler {cfg.sampler!r}; choose one of {SAMPLERS}")
    if cfg.num_steps < 1:
        _fail("sample.num_steps", f"must be >= 1, got {cfg.num_steps}")
    if not 0 < cfg.sigma_min < cfg.sigma_max:
        _fail("sample.sigma_min", f"need 0 < sigma_min < sigma_max, got {cfg.sigma_min}, {cfg.sigma_max}")
    sigmas = schedules.karras(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    solver = getattr(samplers, cfg.sampler)

    def sample(params, key, n: int, labels=None):
        x = jax.random.normal(key, (n, *shape)) * sigmas[0]
        cond = {} if labels is None else {"labels": labels}
        return solver(precond.denoiser(net, params, pre), x, sigmas, **cond)

    return jax.jit(sample, static_argnums=2)


def validate(config) -> None:
    """Every check that needs no data or compilation, so bad configs fail in milliseconds."""
    if config.data.source not in DATA_SOURCES:
        _fail("data.source", f"unknown data source {config.data.source!r}; choose one of {DATA_SOURCES}")
    build_optim(config)
    check_train(config)
    build_precond(config)
    if config.model.num_classes < 0:
        _fail("model.num_classes", f"must be >= 0, got {config.model.num_classes}")


def train_or_restore(config, state, loss_fn, optimizer, source: pipeline.Source, mesh, workdir: str, mode: str,
                     *, progress: bool = True):
    """``train``: run ``fit`` (resuming from ``workdir``) on ``source``; otherwise restore the latest checkpoint."""
    import os

    from jaxdiff.train import Checkpointer, fit, make_train_step, parallel_train_step, shard_batch

    if mode != "train":
        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
        state = ckpt.restore(state)
        ckpt.close()
        return state
    tc = config.train
    step = parallel_train_step(
        make_train_step(loss_fn, optimizer, batch_size=tc.batch_size,
                        ema_halflife_nimg=tc.ema_halflife_nimg, ema_rampup_ratio=tc.ema_rampup_ratio),
        mesh,
    )
    local = pipeline.batch_fn(source, pipeline.EpochSampler(len(source), tc.batch_size, seed=config.seed))
    return fit(state, step, lambda s: shard_batch(local(s), mesh), num_steps=tc.num_steps, workdir=workdir,
               log_every=tc.log_every, checkpoint_every=tc.checkpoint_every, max_to_keep=tc.max_to_keep,
               progress=progress, stop_on_nonfinite=tc.nonfinite == "stop")


def define_cli_flags(config_help: str, modes: tuple[str, ...] = ("train", "eval")) -> None:
    """The flags every experiment CLI takes (``--config``, ``--workdir``, ``--mode``, ``--progress``);
    called only when run as a script, so the modules can import each other."""
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs.")
    flags.DEFINE_enum("mode", "train", list(modes), "What to do.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.mark_flags_as_required(["config", "workdir"])


def start_cli(argv) -> None:
    """The prelude of every experiment CLI's ``main``: no stray arguments, quiet absl logging (orbax logs
    every save at INFO), and a persistent compilation cache (``$JAX_COMPILATION_CACHE_DIR`` or
    ``~/.cache/jaxdiff/xla``)."""
    import os

    from absl import app, logging

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    jax.config.update(
        "jax_compilation_cache_dir",
        os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/jaxdiff/xla")),
    )
