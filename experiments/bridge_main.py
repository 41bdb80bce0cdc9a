r"""Train and evaluate a DDBM image-to-image bridge from a config (degraded digit -> clean digit).

    python -m experiments.bridge_main --config=experiments/configs/digits_bridge.py \
        --workdir=/tmp/digits_bridge [--mode=train|eval]

``train`` fits the DDBM loss with ``jaxdiff.train.fit`` (resuming from ``workdir``), then
evaluates the EMA parameters; ``eval`` restores the latest checkpoint and evaluates. For each
sampler and NFE, on held-out digits: FD in the digits classifier's features (against the test
split), label consistency (classifier label of the output = the source digit's label) and MSE
to the clean digit. Outputs: ``metrics.json``, ``metrics.md`` and ``translations.png``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags, logging

FLAGS = flags.FLAGS


DEGRADATIONS = ("pool2", "mask")
SAMPLERS = ("ddbm_heun", "dbim", "dbim_o3_cosine")


def degrade(images: np.ndarray, kind: str) -> np.ndarray:
    """(N, H, W, C) clean digits in [-1, 1] -> the source domain x_T, same shape."""
    if kind == "pool2":
        n, h, w, c = images.shape
        pooled = images.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        return np.repeat(np.repeat(pooled, 2, axis=1), 2, axis=2)
    if kind == "mask":
        out = images.copy()
        out[:, images.shape[1] // 2:] = -1.0
        return out
    raise ValueError(f"config.bridge.degrade: unknown {kind!r}; choose one of {DEGRADATIONS}")


def build_bridge(cfg, x0: np.ndarray, x_T: np.ndarray):
    """The bridge process and DDBM preconditioning (statistics estimated from the pairs if asked)."""
    from jaxdiff.bridges import DDBMPrecond, VEBridge, VPBridge

    if cfg.process not in ("vp", "ve"):
        raise ValueError(f"config.bridge.process: must be 'vp' or 've', got {cfg.process!r}")
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

    if name == "ddbm_heun":
        n = max(1, round((nfe + 1) / 3))
        return (lambda D, x_T, key: ddbm_heun(D, x_T, n, bridge=bridge, key=key)), 3 * n - 1
    if name == "dbim":
        return (lambda D, x_T, key: dbim(D, x_T, nfe - 1, bridge=bridge, key=key)), nfe
    if name == "dbim_o3_cosine":
        ts = cosine_grid(bridge, nfe - 1)
        return (lambda D, x_T, key: dbim(D, x_T, ts, bridge=bridge, order=3, key=key)), nfe
    raise ValueError(f"config.eval.samplers: unknown {name!r}; choose from {SAMPLERS}")


def evaluate(config, net, params, bridge, pre, x0, x_T, labels, key) -> tuple[list[dict], dict]:
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


def save_png(path: str, x_T, shown: dict, x0, count: int = 16) -> None:
    """Rows: source, each sampler's translation, target; ``count`` columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"source x_T": x_T, **shown, "target x_0": x0}
    fig, axes = plt.subplots(len(panels), 1, figsize=(count * 0.6, len(panels) * 0.9))
    for ax, (title, imgs) in zip(axes, panels.items()):
        strip = np.concatenate([np.pad(np.clip((im[..., 0] + 1) / 2, 0, 1), 1, constant_values=1)
                                for im in np.asarray(imgs)[:count]], axis=1)
        ax.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8, loc="left")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict]) -> str:
    lines = ["| sampler | NFE | FD (features) ↓ | label consistency ↑ | MSE ↓ |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['fd']:.2f} | {r['label_consistency']:.3f} | {r['mse']:.4f} |")
    return "\n".join(lines)


def run(config, workdir: str, mode: str = "train", *, progress: bool = True) -> list[dict]:
    """Train (or restore) and evaluate; returns the metric rows (also written to ``workdir``)."""
    import jax

    from experiments import build
    from jaxdiff.bridges import bridge_loss
    from jaxdiff.data import pipeline
    from jaxdiff.data.digits import load_digits
    from jaxdiff.train import check_batch_size, create_train_state, data_mesh, make_optimizer, replicate

    build.check_train(config)
    optimizer = make_optimizer(build.build_optim(config))
    x0, y = load_digits("train")
    x_T = degrade(x0, config.bridge.degrade)
    bridge, pre = build_bridge(config.bridge, x0, x_T)
    shape = x0.shape[1:]
    module, net = build.build_network(config, (*shape[:-1], 2 * shape[-1]))
    loss_fn = bridge_loss(net, bridge, pre)
    mesh = data_mesh()
    check_batch_size(config.train.batch_size, mesh)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    k_init, k_train, k_eval = jax.random.split(jax.random.key(config.seed), 3)
    params = build.init_params(module, (*shape[:-1], 2 * shape[-1]), k_init)
    state = replicate(create_train_state(params, optimizer, k_train), mesh)
    t0 = time.perf_counter()
    source = pipeline.ArraySource(image=x0, source=x_T)
    state = build.train_or_restore(config, state, loss_fn, optimizer, source, mesh, workdir, mode, progress=progress)
    train_seconds = time.perf_counter() - t0

    x0_test, y_test = load_digits("test")
    n = min(config.eval.num_examples, len(x0_test))
    x0_test, y_test = x0_test[:n], y_test[:n]
    xT_test = degrade(x0_test, config.bridge.degrade)
    params = jax.device_get(state.ema_params)
    rows, shown = evaluate(config, net, params, bridge, pre, x0_test, xT_test, y_test, k_eval)
    save_png(os.path.join(workdir, "translations.png"), xT_test, shown, x0_test)
    summary = dict(rows=rows, step=int(state.step), train_seconds=train_seconds, precond=vars(pre))
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(workdir, "metrics.md"), "w") as f:
        f.write(markdown(rows) + "\n")
    return rows


def main(argv):
    from experiments.build import start_cli

    start_cli(argv)
    print(markdown(run(FLAGS.config, FLAGS.workdir, FLAGS.mode, progress=FLAGS.progress)))


if __name__ == "__main__":
    from experiments.build import define_cli_flags

    define_cli_flags("Path to experiments/configs/digits_bridge.py.")
    app.run(main)
