"""EDM-style diffusion on images or points (digits, toy2d, mnist, cifar10 configs).

The network (``config.model``) is trained with a denoising loss (``config.diffusion``), then the EMA
parameters sample with any registered sampler (``config.sample``: ``jaxdiff.samplers.REGISTRY``
name, grid, options) and the samples are scored against held-out data (``config.eval``).
Outputs: ``samples.png`` (samples beside real data), ``samples.npz`` and the metrics (Fréchet
distance in a digit classifier's features with its floor and baselines for digits; sliced W2 and
MMD with their floors for points), with ``sampler`` and ``sampler_nfe``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from experiments import networks
from experiments.checks import choose, fail, positive
from experiments.outputs import image_grid, pyplot
from experiments.tasks import Experiment
from jaxdiff import losses, precond, samplers, schedules
from jaxdiff.data import pipeline

MODES = ("train", "sample", "eval")
DATA_SOURCES = ("digits", "toy", "tfds")
GRIDS = ("karras", "exponential", "cosine")


@dataclasses.dataclass(frozen=True)
class Data:
    """The training source, held-out reference data and the example shape."""

    train: pipeline.Source
    reference: np.ndarray  # held-out real examples (N, ...) for metrics and pictures
    shape: tuple  # one example's shape, e.g. (8, 8, 1) or (2,)
    kind: str  # "image" or "points"
    transforms: tuple = ()  # applied to training batches where they are built


def validate(config) -> None:
    choose("data.source", config.data.source, DATA_SOURCES)
    networks.check(config)
    build_precond(config)
    d = config.diffusion
    if not 0.0 <= d.label_dropout < 1.0:
        fail("diffusion.label_dropout", f"must be in [0, 1), got {d.label_dropout}")
    if d.precond == "edm":
        positive(config, "diffusion", "P_std")
    check_sampler(config)
    positive(config, "eval", "num_samples")


def check_sampler(config) -> None:
    """``config.sample``: a registered sampler, the options it takes, a valid grid."""
    cfg = config.sample
    try:
        samplers.get(cfg.sampler)
    except ValueError as e:
        fail("sample.sampler", str(e))
    try:
        samplers.check_options(cfg.sampler, dict(cfg.options))
    except ValueError as e:
        fail("sample.options", str(e))
    choose("sample.grid", cfg.grid, GRIDS)
    positive(config, "sample", "num_steps", "num_samples")
    if not 0 < cfg.sigma_min < cfg.sigma_max:
        fail("sample.sigma_min", f"need 0 < sigma_min < sigma_max, got {cfg.sigma_min}, {cfg.sigma_max}")


def build_data(config) -> Data:
    cfg = config.data
    if cfg.source == "digits":
        from jaxdiff.data.digits import load_digits

        x, y = load_digits("train")
        ref, _ = load_digits("test")
        return Data(pipeline.ArraySource(image=x, label=y), ref, x.shape[1:], "image")
    if cfg.source == "toy":
        from jaxdiff.data.toy import TOYS, load_toy

        choose("data.name", cfg.name, TOYS)
        positive(config, "data", "num_examples")
        x = load_toy(cfg.name, cfg.num_examples, seed=config.seed)
        ref = load_toy(cfg.name, cfg.num_examples, seed=config.seed + 1)
        return Data(pipeline.ArraySource(image=x), ref, x.shape[1:], "points")
    from jaxdiff.data.tfds import TFDSImageSource, TFDSSource
    from jaxdiff.data.transforms import ScaleImage

    train = TFDSSource(cfg.name, cfg.get("split", "train"), data_dir=cfg.get("data_dir"))  # uint8, decoded ahead
    test = TFDSImageSource(cfg.name, cfg.get("eval_split", "test"), data_dir=cfg.get("data_dir"))
    ref = test.get(np.arange(min(len(test), 1000)))["image"]
    return Data(train, ref, ref.shape[1:], "image", (ScaleImage("image"),))


def build_precond(config):
    cfg = config.diffusion
    choose("diffusion.precond", cfg.precond, precond.PRECONDITIONINGS)
    if cfg.precond == "edm":
        positive(config, "diffusion", "sigma_data")
        return precond.EDMPrecond(sigma_data=cfg.sigma_data)
    return precond.PRECONDITIONINGS[cfg.precond]()


def build_loss(config, net, pre):
    cfg = config.diffusion
    if cfg.precond == "edm":
        noise = losses.EDMNoise(cfg.P_mean, cfg.P_std, cfg.sigma_data)
    elif cfg.precond in ("vp", "iddpm"):
        noise = losses.VPNoise()
    else:
        noise = losses.VENoise()
    return losses.denoising_loss(net, pre, noise, label_dropout=cfg.label_dropout,
                                 num_classes=config.model.num_classes)


def sigmas(cfg) -> jax.Array:
    """The noise levels (num_steps + 1,) of ``config.sample``'s grid, ending with 0."""
    if cfg.grid == "karras":
        return schedules.karras(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    return getattr(schedules, cfg.grid)(cfg.num_steps, cfg.sigma_min, cfg.sigma_max)


def build_sampler(config, net, pre, shape: tuple) -> Callable[..., tuple[jax.Array, int]]:
    """``sample(params, key, n, labels=None) -> (samples (n, *shape), nfe)`` with the configured sampler.

    ``nfe`` is the sampler's rule on the grid, or the measured count for an adaptive sampler. A
    class-conditional model (``model.num_classes > 0``) samples with ``labels``, or with the null
    label when None.
    """
    cfg = config.sample
    spec = samplers.get(cfg.sampler)
    levels = sigmas(cfg)
    options = dict(cfg.options)
    nfe = spec.nfe(levels, **options)
    if nfe is None:
        options["return_stats"] = True

    @jax.jit
    def draw(params, key, labels, x):
        cond = {} if labels is None else {"labels": labels}
        out = spec.fn(precond.denoiser(net, params, pre), x, levels, key=jax.random.fold_in(key, 1),
                      **options, **cond)
        return out if nfe is None else (out, nfe)

    def sample(params, key, n: int, labels=None):
        x = jax.random.normal(key, (n, *shape)) * levels[0]
        out, count = draw(params, key, labels, x)
        return out, int(count.nfe if nfe is None else count)

    return sample


def save_samples(outputs, samples: np.ndarray, data: Data, *, count: int = 100) -> None:
    """``samples.npz`` (all samples) and ``samples.png`` (samples beside held-out real data)."""
    plt = pyplot()
    outputs.npz("samples.npz", samples=samples)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    if data.kind == "image":
        count = min(count, len(samples), len(data.reference))
        cols = int(np.ceil(np.sqrt(count)))
        for ax, imgs, title in ((axes[0], samples[:count], "samples"),
                                (axes[1], data.reference[:count], "real (held out)")):
            g = image_grid(np.asarray(imgs), cols)
            ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title)
            ax.axis("off")
    else:
        lim = np.abs(data.reference).max() * 1.2
        for ax, pts, title in ((axes[0], samples, "samples"),
                               (axes[1], data.reference[:len(samples)], "real (held out)")):
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
    fig.tight_layout()
    outputs.figure("samples.png", fig)


def score(config, samples: np.ndarray, data: Data) -> dict:
    """Quality of ``samples`` next to the references that make the number readable.

    digits: Fréchet distance in classifier features against the held-out split, with its floor
    (real train digits at the same N) and baselines. points: sliced W2 and MMD against held-out
    points, with the floor (a second real sample of the same size).
    """
    from jaxdiff import metrics

    n = len(samples)
    out = {"num_samples": n, "nonfinite_samples": int(np.sum(~np.isfinite(samples).reshape(n, -1).all(1)))}
    if config.data.source == "digits":
        samples = np.clip(samples, -1.0, 1.0)
        ref = metrics.digits_fd_reference(n, seed=config.seed)
        out.update(fd=metrics.digits_fd(samples), fd_floor=ref["floor"], fd_pixel_baseline=ref["pixel_baseline"],
                   fd_noise_baseline=ref["noise_baseline"], label_entropy=metrics.label_entropy(samples))
        out["fd_over_floor"] = out["fd"] / out["fd_floor"]
    elif data.kind == "points":
        key = jax.random.key(config.seed)
        ref = data.reference[:n]
        floor = data.train.get(np.arange(min(n, len(data.train))))["image"]
        out.update(sliced_w2=float(metrics.sliced_wasserstein(samples, ref, key)),
                   sliced_w2_floor=float(metrics.sliced_wasserstein(floor, ref, key)),
                   mmd=float(metrics.mmd(samples, ref)), mmd_floor=float(metrics.mmd(floor, ref)))
    return out


def build(config) -> Experiment:
    data = build_data(config)
    module, net = networks.network(config, data.shape)
    pre = build_precond(config)
    sample = build_sampler(config, net, pre, data.shape)

    def draw(params, key, n: int, outputs) -> tuple[np.ndarray, dict]:
        labels = jnp.arange(n) % config.model.num_classes if config.model.num_classes else None
        t0 = time.perf_counter()
        samples, nfe = sample(params, key, n, labels)
        samples = jax.device_get(samples)
        record = dict(sampler=config.sample.sampler, sampler_nfe=nfe, sampler_options=dict(config.sample.options),
                      sample_seconds=time.perf_counter() - t0)
        save_samples(outputs, samples, data)
        return samples, record

    def evaluate(params: Any, key, outputs) -> dict:
        samples, record = draw(params, key, config.eval.num_samples, outputs)
        return {**score(config, samples, data), **record}

    def sample_only(params: Any, key, outputs) -> dict:
        samples, record = draw(params, key, config.sample.num_samples, outputs)
        return {"num_samples": len(samples), **record}

    return Experiment(source=data.train, init=lambda key: networks.init_params(module, data.shape, key),
                      loss=build_loss(config, net, pre), evaluate=evaluate, sample=sample_only,
                      transforms=data.transforms)
