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
alone and reports its final EPE. ``--minutes=0`` skips the training (and the trained model's rows).

    python -m experiments.bench.flow --pretrained=raft_large.pth [--pretrained_size=large]
    python -m experiments.bench.flow --minutes=0 --overfit_steps=0 --speed_pairs=3 [--pretrained=...]

``--pretrained``: a torchvision RAFT checkpoint (``Raft_Large_Weights`` / ``Raft_Small_Weights``,
downloaded), converted by ``jaxdiff.flow.convert``, evaluated on the same held-out pairs (12 and 32
iterations); without the file those rows are skipped. ``--speed_pairs``: seconds per frame pair of
the converted model (on the pretrained weights, else torchvision's random initialisation: the time does
not depend on the values) in JAX and in torchvision (torch on ``--torch_threads``), same process,
``--speed_size`` frames, ``--speed_iters`` refinements; needs torch and torchvision.
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
    flags.DEFINE_string("pretrained", "", "A torchvision RAFT checkpoint (.pth) to convert and evaluate.")
    flags.DEFINE_enum("pretrained_size", "large", ["large", "small"], "The size of the --pretrained checkpoint.")
    flags.DEFINE_integer("speed_pairs", 0, "Frame pairs timed per implementation, JAX vs torchvision (0: skip).")
    flags.DEFINE_string("speed_size", "440x1024", "HxW of the timed frames (multiples of 8).")
    flags.DEFINE_integer("speed_iters", 12, "RAFT refinements in the timing.")
    flags.DEFINE_list("torch_threads", ["1", "2"], "torch thread counts timed.")


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


def _predict(model, variables, d: dict, iters: int):
    """RAFT's flows (iters, N, H, W, 2) on the pairs of ``d``, 16 at a time."""
    import jax
    import numpy as np

    run = jax.jit(lambda v, a, b: model.apply(v, a, b, iters))
    return np.concatenate([np.asarray(run(variables, d["image1"][i : i + 16], d["image2"][i : i + 16]))
                           for i in range(0, len(d["image1"]), 16)], axis=1)


def _load_pretrained():
    """(RAFT, variables) from ``--pretrained``, or None when the file is missing."""
    from jaxdiff.flow import convert
    from jaxdiff.flow.raft import RAFT

    if not os.path.exists(FLAGS.pretrained):
        print(f"--pretrained: no file at {FLAGS.pretrained}; the pretrained rows are skipped")
        return None
    variables = convert.load_torchvision(FLAGS.pretrained, FLAGS.pretrained_size)
    return RAFT(small=FLAGS.pretrained_size == "small"), variables


def evaluate(model, params, pretrained=None) -> tuple[list[dict], dict]:
    """Metrics rows per (kind, method) and the predictions of the first chairs pair for the figure.

    ``params`` None leaves the trained model out; ``pretrained`` is (RAFT, variables) or None.
    """
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff.flow.data import make_dataset
    from jaxdiff.flow.raft import flow_metrics

    size = (FLAGS.height, FLAGS.width)
    rows, example = [], {}
    for kind in ("smooth", "chairs"):
        d = make_dataset("val", FLAGS.eval_pairs, size, kind, seed=EVAL_SEED)
        preds = {
            "zero flow": np.zeros_like(d["flow"]),
            "OpenCV Farneback": _classical(d["image1"], d["image2"], "farneback"),
            "OpenCV DIS (medium)": _classical(d["image1"], d["image2"], "dis"),
        }
        if params is not None:
            raft = _predict(model, {"params": params}, d, 12)
            preds[f"RAFT-small ({FLAGS.train_iters} iters)"] = raft[FLAGS.train_iters - 1]
            preds["RAFT-small (12 iters)"] = raft[-1]
        if pretrained is not None:
            flows = _predict(*pretrained, d, 32)
            name = f"RAFT-{FLAGS.pretrained_size}, torchvision weights"
            preds[f"{name} (12 iters)"], preds[f"{name} (32 iters)"] = flows[11], flows[-1]
        for method, flow in preds.items():
            m = flow_metrics(jnp.asarray(flow), jnp.asarray(d["flow"]), jnp.asarray(d["valid"]))
            rows.append(dict(kind=kind, method=method, **{k: float(v) for k, v in m.items()}))
        if kind == "chairs":
            example = {"frame 1": d["image1"][0], "ground truth": d["flow"][0],
                       **{k: v[0] for k, v in preds.items() if k != "zero flow" and "(12" not in k}}
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

    model = RAFT(small=True)
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


def _torchvision_raft(size: str, state_dict=None):
    """torchvision's RAFT of ``size`` in eval mode (random initialisation without ``state_dict``)."""
    import sys
    import types

    # RAFT uses none of torchvision's compiled operators; registering their fake kernels fails where
    # those do not load (a CUDA build of torchvision next to the CPU torch wheel), so that module is skipped.
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    from torchvision.models import optical_flow

    model = (optical_flow.raft_large if size == "large" else optical_flow.raft_small)().eval()
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


def _matmul_rate(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of XLA's float32 n x n matrix product here, best of ``repeats``: the machine's practical peak."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    x = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    product = jax.jit(jnp.matmul)
    product(x, x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        product(x, x).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def speed(pretrained_path: str | None) -> dict:
    """Median seconds per frame pair (batch 1, ``--speed_iters``, final flow) of RAFT-``--pretrained_size``:
    JAX (jit, compiled beforehand): the refinements in a rolled ``lax.scan``, every iteration's flow upsampled
    as torchvision does, and ``estimate_flow`` (unrolled on the CPU backend, the final flow alone); and
    torchvision (``torch.no_grad``, after one warm-up pair) on each of ``--torch_threads``; the same converted
    weights, the same frames; JAX's flows checked against torchvision's. Also ``estimate_flow``'s arithmetic
    (XLA's cost analysis) and the rate of a large matrix product, the practical peak it is compared with."""
    import jax
    import numpy as np
    import torch

    from jaxdiff.flow import convert
    from jaxdiff.flow.raft import RAFT, estimate_flow

    size = FLAGS.pretrained_size
    state = torch.load(pretrained_path, map_location="cpu", weights_only=True) if pretrained_path else None
    tv = _torchvision_raft(size, state)
    variables = convert.variables_from_torchvision(tv.state_dict(), size)
    h, w = (int(v) for v in FLAGS.speed_size.split("x"))
    rng = np.random.default_rng(0)
    frames = [rng.uniform(0, 255, (2, 1, h, w, 3)).astype(np.float32) for _ in range(FLAGS.speed_pairs + 1)]
    iters = FLAGS.speed_iters

    def timed(fn):
        times = []
        for a, b in frames[1:]:
            t0 = time.perf_counter()
            fn(a, b)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def torch_flow(a, b):
        with torch.no_grad():
            x = [torch.from_numpy(2 * (f / 255.0) - 1).permute(0, 3, 1, 2) for f in (a, b)]
            return tv(*x, num_flow_updates=iters)[-1].permute(0, 2, 3, 1).numpy()

    record = {"size": [h, w], "iters": iters, "pairs": FLAGS.speed_pairs, "model": f"RAFT-{size}",
              "jax_compile_s": {}, "jax_s": {}}
    flows = {}
    rolled, default = RAFT(small=size == "small", unroll=1), RAFT(small=size == "small")
    variants = {"scan": lambda v, a, b: rolled.apply(v, a, b, iters)[-1],  # every iteration upsampled, as torchvision
                "estimate_flow": lambda v, a, b: estimate_flow(default, v, a, b, iters)}
    for name, fn in variants.items():
        t0 = time.perf_counter()
        run = jax.jit(fn).lower(variables, *frames[0]).compile()
        record["jax_compile_s"][name] = time.perf_counter() - t0
        flows[name] = np.asarray(run(variables, *frames[0]))  # warm-up
        record["jax_s"][name] = timed(lambda a, b, run=run: run(variables, a, b).block_until_ready())
        if name == "estimate_flow":
            cost = run.cost_analysis()
            record["estimate_flow_gflop"] = (cost[0] if isinstance(cost, list) else cost)["flops"] / 1e9
    record["matmul_gflops"] = _matmul_rate()
    threads, record["torch_s"] = torch.get_num_threads(), {}
    for n in map(int, FLAGS.torch_threads):
        torch.set_num_threads(n)
        reference = torch_flow(*frames[0])  # warm-up
        record["torch_s"][n] = timed(torch_flow)
    torch.set_num_threads(threads)
    record["max_abs_diff_px"] = max(float(np.abs(f - reference).max()) for f in flows.values())
    record["ratio"] = {k: t / min(record["torch_s"].values()) for k, t in record["jax_s"].items()}
    return record


def main(_):
    from jaxdiff.flow.raft import RAFT

    model = RAFT(small=True)
    params, num_steps, seconds = train(model) if FLAGS.minutes > 0 else (None, 0, 0.0)
    pretrained = _load_pretrained() if FLAGS.pretrained else None
    rows, example = evaluate(model, params, pretrained)
    if params is not None:
        save_figure(example, FLAGS.figure)
    record = {"steps": num_steps, "train_seconds": seconds, "batch": FLAGS.batch,
              "size": [FLAGS.height, FLAGS.width], "rows": rows}
    if FLAGS.overfit_steps:
        record["overfit_epe_before"], record["overfit_epe_after"] = overfit(FLAGS.overfit_steps)
    if FLAGS.speed_pairs:
        record["speed"] = speed(FLAGS.pretrained if pretrained is not None else None)
    print(json.dumps(record))
    if params is not None:
        print(f"\n{num_steps} steps x {FLAGS.batch} pairs of {FLAGS.height}x{FLAGS.width} in {seconds / 60:.1f} min")
    print("\n| split | method | EPE | 1px | 3px | 5px | F1-all (%) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['method']} | {r['epe']:.3f} | {r['1px']:.3f} | {r['3px']:.3f} | {r['5px']:.3f} "
              f"| {r['f1']:.2f} |")
    if FLAGS.overfit_steps:
        print(f"\none-pair overfit (64x64, {FLAGS.overfit_steps} steps): EPE {record['overfit_epe_before']:.3f} -> "
              f"{record['overfit_epe_after']:.4f} px")
    if FLAGS.speed_pairs:
        sp = record["speed"]
        print(f"\n{sp['model']}, {sp['size'][0]}x{sp['size'][1]}, {sp['iters']} iters, s per pair (median of "
              f"{sp['pairs']}): " + ", ".join(f"JAX {k} {t:.3f} (compile {sp['jax_compile_s'][k]:.1f}, "
                                              f"{sp['ratio'][k]:.2f}x torchvision)" for k, t in sp["jax_s"].items())
              + "; torchvision " + ", ".join(f"{t:.3f} ({n} threads)" for n, t in sp["torch_s"].items())
              + f"; max |flow difference| {sp['max_abs_diff_px']:.2e} px")
        rate = sp["estimate_flow_gflop"] / sp["jax_s"]["estimate_flow"]
        print(f"estimate_flow: {sp['estimate_flow_gflop']:.1f} GFLOP (XLA's cost analysis) at {rate:.1f} GFLOP/s, "
              f"{rate / sp['matmul_gflops']:.2f}x XLA's 4096^3 float32 matmul rate here ({sp['matmul_gflops']:.1f} "
              f"GFLOP/s)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
