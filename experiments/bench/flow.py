r"""RAFT-small trained on synthetic flow for a few CPU minutes, next to zero flow, Farneback and DIS.

    python -m experiments.bench.flow [--minutes=15] [--workdir=workdir/flow_bench]

Trains on ``jaxdiff.flow.data`` pairs (train photographs, half "smooth", half
"chairs", fresh pairs every step, every pixel supervised) with RAFT's recipe
(AdamW, one-cycle linear schedule, clipping 1, sequence loss γ=0.8). The number
of steps is fixed from the time of the first steps so the run fills ``--minutes``;
it is stored in the workdir, and a rerun resumes from the latest checkpoint. Then
evaluates on held-out pairs (validation photographs) of both kinds: EPE, 1/3/5 px
accuracy and F1-all over valid pixels, for RAFT (EMA weights), zero flow, OpenCV
Farneback and DIS (medium preset); prints a markdown table and saves colour-coded
flow fields to ``--figure``. ``--overfit_steps`` then fits one 64x64 "smooth" pair
alone and reports its final EPE.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_float("minutes", 15.0, "Training wall-clock budget in minutes.")
    flags.DEFINE_string("workdir", "workdir/flow_bench", "Checkpoints, metrics and the step plan.")
    flags.DEFINE_integer("batch", 8, "Training pairs per step (half smooth, half chairs).")
    flags.DEFINE_integer("height", 64, "Crop height.")
    flags.DEFINE_integer("width", 96, "Crop width.")
    flags.DEFINE_integer("train_iters", 8, "RAFT refinements in training.")
    flags.DEFINE_integer("eval_pairs", 64, "Held-out pairs per kind.")
    flags.DEFINE_float("lr", 5e-4, "Peak learning rate.")
    flags.DEFINE_integer("seed", 0, "Data and initialisation seed.")
    flags.DEFINE_integer("overfit_steps", 600, "Steps of the one-pair overfitting check (0: skip).")
    flags.DEFINE_string("figure", "docs/img/flow_fields.png", "Where to save the flow-field figure.")


EVAL_SEED = 10_000


def _optimizer(num_steps: int, lr: float):
    import optax

    warmup = max(1, int(0.05 * num_steps))
    schedule = optax.join_schedules(
        [optax.linear_schedule(lr / 25, lr, warmup), optax.linear_schedule(lr, lr / 1e4, max(1, num_steps - warmup))],
        [warmup],
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, eps=1e-8, weight_decay=1e-4))


def _train_batch(step: int) -> dict:
    import numpy as np

    from jaxdiff.flow.data import make_dataset

    size, half = (FLAGS.height, FLAGS.width), FLAGS.batch // 2
    seed = FLAGS.seed * 1_000_003 + step
    parts = [
        make_dataset("train", half, size, "smooth", seed=2 * seed),
        make_dataset("train", FLAGS.batch - half, size, "chairs", seed=2 * seed + 1),
    ]
    batch = {k: np.concatenate([p[k] for p in parts]) for k in ("image1", "image2", "flow")}
    batch["valid"] = np.ones(batch["flow"].shape[:-1], bool)
    return batch


def _loss_fn(model, iters: int):
    from jaxdiff.flow.raft import sequence_loss

    def loss_fn(params, batch, key):
        del key
        flows = model.apply({"params": params}, batch["image1"], batch["image2"], iters, train=True)
        loss, metrics = sequence_loss(flows, batch["flow"], batch["valid"])
        return loss, dict(metrics, loss=loss)

    return loss_fn


def train(model):
    """Train for about ``--minutes``; returns (EMA params, steps, seconds of training)."""
    import jax

    from jaxdiff.train.fit import fit
    from jaxdiff.train.state import create_train_state
    from jaxdiff.train.step import make_train_step

    b = _train_batch(0)
    params = model.init(jax.random.key(FLAGS.seed), b["image1"][:1], b["image2"][:1], 1)["params"]
    plan_path = os.path.join(FLAGS.workdir, "plan.json")
    os.makedirs(FLAGS.workdir, exist_ok=True)

    def make_step(num_steps):
        step = make_train_step(_loss_fn(model, FLAGS.train_iters), _optimizer(num_steps, FLAGS.lr),
                               batch_size=FLAGS.batch, ema_halflife_nimg=1000.0)
        return jax.jit(step)

    if os.path.exists(plan_path):
        with open(plan_path) as f:
            num_steps = json.load(f)["num_steps"]
    else:  # time a few steps (compiled once more below; the schedule needs num_steps)
        probe = make_step(1000)
        state = create_train_state(params, _optimizer(1000, FLAGS.lr), jax.random.key(FLAGS.seed))
        state, _ = probe(state, b)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for i in range(3):
            state, _ = probe(state, _train_batch(i))
        jax.block_until_ready(state)
        per_step = (time.perf_counter() - t0) / 3
        num_steps = max(10, int(FLAGS.minutes * 60 / per_step))
        with open(plan_path, "w") as f:
            json.dump({"num_steps": num_steps, "probe_s_per_step": per_step}, f)
        print(f"{per_step:.2f} s/step -> {num_steps} steps for {FLAGS.minutes} min")
    state = create_train_state(params, _optimizer(num_steps, FLAGS.lr), jax.random.key(FLAGS.seed))
    t0 = time.perf_counter()
    state = fit(state, make_step(num_steps), _train_batch, num_steps=num_steps, workdir=FLAGS.workdir,
                log_every=10, checkpoint_every=100, progress=False)
    return state.ema_params, num_steps, time.perf_counter() - t0


def _classical(image1, image2, method: str):
    import cv2
    import numpy as np

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = []
    for a, b in zip(image1, image2):
        g1, g2 = (cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for x in (a, b))
        if method == "farneback":
            out.append(cv2.calcOpticalFlowFarneback(g1, g2, None, 0.5, 3, 15, 3, 5, 1.2, 0))
        else:
            out.append(dis.calc(g1, g2, None))
    return np.stack(out)


def evaluate(model, params) -> tuple[list[dict], dict]:
    """Metrics rows per (kind, method) and the predictions of the first chairs pair for the figure."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff.flow.data import make_dataset
    from jaxdiff.flow.raft import flow_metrics

    size = (FLAGS.height, FLAGS.width)
    run = jax.jit(lambda p, a, b: model.apply({"params": p}, a, b, 12))
    rows, example = [], {}
    for kind in ("smooth", "chairs"):
        d = make_dataset("val", FLAGS.eval_pairs, size, kind, seed=EVAL_SEED)
        raft = np.concatenate([np.asarray(run(params, d["image1"][i : i + 16], d["image2"][i : i + 16]))
                               for i in range(0, FLAGS.eval_pairs, 16)], axis=1)
        preds = {
            "zero flow": np.zeros_like(d["flow"]),
            "OpenCV Farneback": _classical(d["image1"], d["image2"], "farneback"),
            "OpenCV DIS (medium)": _classical(d["image1"], d["image2"], "dis"),
            f"RAFT-small ({FLAGS.train_iters} iters)": raft[FLAGS.train_iters - 1],
            "RAFT-small (12 iters)": raft[-1],
        }
        for method, flow in preds.items():
            m = flow_metrics(jnp.asarray(flow), jnp.asarray(d["flow"]), jnp.asarray(d["valid"]))
            rows.append(dict(kind=kind, method=method, **{k: float(v) for k, v in m.items()}))
        if kind == "chairs":
            example = {"frame 1": d["image1"][0], "ground truth": d["flow"][0],
                       **{k: v[0] for k, v in preds.items() if k != "zero flow" and "12" not in k}}
    return rows, example


def save_figure(example: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from jaxdiff.flow.viz import flow_to_colour

    max_flow = float(np.linalg.norm(example["ground truth"], axis=-1).max())
    fig, axes = plt.subplots(1, len(example), figsize=(2.6 * len(example), 2.2))
    for ax, (name, value) in zip(axes, example.items()):
        image = value.astype(np.uint8) if name == "frame 1" else flow_to_colour(value, max_flow)
        ax.imshow(image)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def overfit(steps: int) -> tuple[float, float]:
    """EPE on one 64x64 "smooth" pair before and after ``steps`` Adam steps on it alone (RAFT-small;
    its bilinear 8x upsampling cannot draw the sharp boundaries of a "chairs" pair)."""
    import jax
    import optax

    from jaxdiff.flow.data import make_dataset
    from jaxdiff.flow.raft import RAFT, flow_metrics, sequence_loss

    model = RAFT(small=True, unroll=True)
    d = make_dataset("train", 1, (64, 64), "smooth", seed=7)
    params = model.init(jax.random.key(0), d["image1"], d["image2"], 1)["params"]
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(optax.cosine_decay_schedule(5e-4, steps)))

    def loss(p):
        flows = model.apply({"params": p}, d["image1"], d["image2"], 8, train=True)
        return sequence_loss(flows, d["flow"], d["valid"])

    @jax.jit
    def step(p, s):
        (l, m), g = jax.value_and_grad(loss, has_aux=True)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, m["epe"]

    def epe(p):
        return float(flow_metrics(model.apply({"params": p}, d["image1"], d["image2"], 8)[-1], d["flow"],
                                  d["valid"])["epe"])

    before, s = epe(params), opt.init(params)
    for _ in range(steps):
        params, s, _ = step(params, s)
    return before, epe(params)


def main(_):
    from jaxdiff.flow.raft import RAFT

    model = RAFT(small=True, unroll=True)
    params, num_steps, seconds = train(model)
    rows, example = evaluate(model, params)
    save_figure(example, FLAGS.figure)
    record = {"steps": num_steps, "train_seconds": seconds, "batch": FLAGS.batch,
              "size": [FLAGS.height, FLAGS.width], "rows": rows}
    if FLAGS.overfit_steps:
        record["overfit_epe_before"], record["overfit_epe_after"] = overfit(FLAGS.overfit_steps)
    print(json.dumps(record))
    print(f"\n{num_steps} steps x {FLAGS.batch} pairs of {FLAGS.height}x{FLAGS.width} in {seconds / 60:.1f} min")
    print("\n| split | method | EPE | 1px | 3px | 5px | F1-all (%) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['method']} | {r['epe']:.3f} | {r['1px']:.3f} | {r['3px']:.3f} | {r['5px']:.3f} "
              f"| {r['f1']:.2f} |")
    if FLAGS.overfit_steps:
        print(f"\none-pair overfit (64x64, {FLAGS.overfit_steps} steps): EPE {record['overfit_epe_before']:.3f} -> "
              f"{record['overfit_epe_after']:.4f} px")


if __name__ == "__main__":
    define_flags()
    app.run(main)
