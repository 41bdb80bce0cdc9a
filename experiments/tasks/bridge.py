"""A DDBM image-to-image bridge on scikit-learn's digits: degraded digit (x_T) -> clean digit (x_0).

The network (``config.model``, with x_T as extra channels) is trained with the DDBM loss
(``config.bridge``: process, degradation, preconditioning). Evaluation runs each sampler of
``config.eval.samplers`` at each NFE budget of ``config.eval.nfes`` on held-out digits: FD in the
digits classifier's features (against the test split), label consistency (classifier label of the
output = the source digit's label) and MSE to the clean digit. Outputs: ``translations.png``,
``metrics.md`` and the metrics (one row per sampler and NFE).
"""

from __future__ import annotations

import time

import numpy as np
from absl import logging

from experiments import networks
from experiments.checks import choose, fail, positive
from experiments.outputs import pyplot
from experiments.tasks import Experiment

MODES = ("train", "eval")
DEGRADATIONS = ("pool2", "mask")
PROCESSES = ("vp", "ve")
SAMPLERS = ("ddbm_heun", "dbim", "dbim_o3_cosine")


def validate(config) -> None:
    networks.check(config)
    choose("bridge.process", config.bridge.process, PROCESSES)
    choose("bridge.degrade", config.bridge.degrade, DEGRADATIONS)
    for name in config.eval.samplers:
        choose("eval.samplers", name, SAMPLERS)
    if not all(n >= 2 for n in config.eval.nfes):
        fail("eval.nfes", f"NFE budgets must be >= 2, got {tuple(config.eval.nfes)}")
    positive(config, "eval", "num_examples")


def degrade(images: np.ndarray, kind: str) -> np.ndarray:
    """(N, H, W, C) clean digits in [-1, 1] -> the source domain x_T, same shape."""
    choose("bridge.degrade", kind, DEGRADATIONS)
    if kind == "pool2":
        n, h, w, c = images.shape
        pooled = images.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        return np.repeat(np.repeat(pooled, 2, axis=1), 2, axis=2)
    out = images.copy()
    out[:, images.shape[1] // 2:] = -1.0
    return out


def build_bridge(cfg, x0: np.ndarray, x_T: np.ndarray):
    """The bridge process and DDBM preconditioning (statistics estimated from the pairs if asked)."""
    from jaxdiff.bridges import DDBMPrecond, VEBridge, VPBridge

    bridge = VPBridge() if cfg.process == "vp" else VEBridge()
    if cfg.estimate_precond:
        a, b = x0.reshape(-1).astype(np.float64), x_T.reshape(-1).astype(np.float64)
        pre = DDBMPrecond(float(a.std()), float(b.std()), float(np.mean((a - a.mean()) * (b - b.mean()))))
    else:
        pre = DDBMPrecond(cfg.sigma_0, cfg.sigma_T, cfg.cov)
    return bridge, pre


def make_sampler(name: str, bridge, nfe: int):
    """``run(D, x_T, key) -> x`` and its actual NFE for a budget ``nfe``."""
    from jaxdiff.bridges import cosine_grid, dbim, ddbm_heun

    choose("eval.samplers", name, SAMPLERS)
    if name == "ddbm_heun":
        n = max(1, round((nfe + 1) / 3))
        return (lambda D, x_T, key: ddbm_heun(D, x_T, n, bridge=bridge, key=key)), 3 * n - 1
    if name == "dbim":
        return (lambda D, x_T, key: dbim(D, x_T, nfe - 1, bridge=bridge, key=key)), nfe
    ts = cosine_grid(bridge, nfe - 1)
    return (lambda D, x_T, key: dbim(D, x_T, ts, bridge=bridge, order=3, key=key)), nfe


def score_samplers(config, net, params, bridge, pre, x0, x_T, labels, key) -> tuple[list[dict], dict]:
    """Metrics rows for every (sampler, NFE) plus the outputs at ``eval.png_nfe`` per sampler."""
    import jax

    from jaxdiff.bridges import bridge_denoiser
    from jaxdiff.metrics import digits_classifier, digits_quality

    clf = digits_classifier.default_classifier()

    def score(name, nfe, out):
        out = np.clip(np.asarray(out), -1, 1)
        return dict(sampler=name, nfe=nfe, fd=digits_quality.digits_fd(out, clf),
                    label_consistency=float(np.mean(clf.logits(out).argmax(-1) == labels)),
                    mse=float(np.mean((out - x0) ** 2)))

    rows = [score("source x_T (no sampling)", 0, x_T), score("target x_0 (also the FD reference)", 0, x0)]
    shown = {}
    D = bridge_denoiser(net, params, bridge, pre)
    for name in config.eval.samplers:
        for nfe in config.eval.nfes:
            run, actual = make_sampler(name, bridge, nfe)
            t0 = time.perf_counter()
            out = jax.device_get(jax.jit(lambda xt, k, run=run: run(D, xt, k))(x_T, key))
            rows.append(dict(score(name, actual, out), seconds=time.perf_counter() - t0))
            if nfe == config.eval.png_nfe:
                shown[f"{name} (NFE {actual})"] = out
            logging.warning("%s", rows[-1])
    return rows, shown


def translations_figure(x_T, shown: dict, x0, count: int = 16):
    """Rows: source, each sampler's translation, target; ``count`` columns."""
    plt = pyplot()
    panels = {"source x_T": x_T, **shown, "target x_0": x0}
    fig, axes = plt.subplots(len(panels), 1, figsize=(count * 0.6, len(panels) * 0.9))
    for ax, (title, imgs) in zip(axes, panels.items()):
        strip = np.concatenate([np.pad(np.clip((im[..., 0] + 1) / 2, 0, 1), 1, constant_values=1)
                                for im in np.asarray(imgs)[:count]], axis=1)
        ax.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8, loc="left")
        ax.axis("off")
    fig.tight_layout()
    return fig


def markdown(rows: list[dict]) -> str:
    lines = ["| sampler | NFE | FD (features) ↓ | label consistency ↑ | MSE ↓ |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['fd']:.2f} | {r['label_consistency']:.3f} | {r['mse']:.4f} |")
    return "\n".join(lines)


def build(config) -> Experiment:
    import jax

    from jaxdiff.bridges import bridge_loss
    from jaxdiff.data import pipeline
    from jaxdiff.data.digits import load_digits

    x0, _ = load_digits("train")
    x_T = degrade(x0, config.bridge.degrade)
    bridge, pre = build_bridge(config.bridge, x0, x_T)
    shape = (*x0.shape[1:-1], 2 * x0.shape[-1])  # x_T rides along as extra channels
    module, net = networks.network(config, shape)

    def evaluate(params, key, outputs) -> dict:
        x0_test, y_test = load_digits("test")
        n = min(config.eval.num_examples, len(x0_test))
        x0_test, y_test = x0_test[:n], y_test[:n]
        xT_test = degrade(x0_test, config.bridge.degrade)
        rows, shown = score_samplers(config, net, jax.device_get(params), bridge, pre, x0_test, xT_test, y_test, key)
        outputs.figure("translations.png", translations_figure(xT_test, shown, x0_test))
        outputs.text("metrics.md", markdown(rows) + "\n")
        return dict(rows=rows, precond=vars(pre))

    return Experiment(source=pipeline.ArraySource(image=x0, source=x_T),
                      init=lambda key: networks.init_params(module, shape, key),
                      loss=bridge_loss(net, bridge, pre), evaluate=evaluate)
