r"""Point tracking: the CoTracker-style tracker after a CPU budget, against Lucas–Kanade, RAFT chaining and
zero motion; joint against single-point tracking; speed and memory; a real stereo pair.

    python -m experiments.bench.tracking [--minutes=30] [--parts=accuracy,ablation,speed,stereo]
    python -m experiments.bench.tracking --parts=inference --trained=workdir/tracking

``accuracy``: trains the tracker with the runner (``experiments/configs/tracking.py`` in
``--workdir``/joint; the number of steps fills ``--minutes``, timed on the first steps and stored;
a rerun resumes), trains RAFT-small for ``--raft_minutes`` on consecutive frames of the same
synthetic training videos (sequence loss, every pixel supervised with its front layer's motion),
and scores on ``--eval_videos`` held-out clips (validation photographs): the tracker (EMA weights),
OpenCV's pyramidal Lucas–Kanade chained frame to frame with a forward–backward check, RAFT-small's
flow chained the same way, and zero motion. Lucas–Kanade's window, levels and threshold and RAFT's
threshold are the best of a small grid on training clips. TAP-Vid metrics, query first, at 256x256;
δ_avg on hidden frames. Saves ``--figure`` (tracks over frames).

``--steps`` (> 0) trains each tracker for that many steps instead of filling ``--minutes``: the
ablation's comparison at an equal step count, whatever the machine's load.

``--initial`` sets the trackers' ``model.initial`` ("match": new frames start at each track's best
match; "query": where it was last seen, as CoTracker does), ``--stride`` their features' stride (4 or
2); the config's if unset.

``ablation``: the same recipe and budget with ``model.virtual=0`` (each point alone), scored
next to the joint tracker overall, on the frames where points are hidden, and on the tracks hidden
at some frame after their query.

``speed``: time and memory per frame of ``track`` (XLA's memory analysis of the compiled call) for
256 and 1,024 tracks on 256x256 and 1080p clips of ``--speed_frames`` frames.

``inference``: the tracker the runner trained in ``--trained`` (its config and latest checkpoint, EMA
weights) scored on its held-out clips with every combination of ``--iters`` refinements per window and a
``--support`` grid of context points (``CoTracker.track``'s ``support``): test-time settings, no training.

``stereo``: ``skimage.data.stereo_motorcycle`` (Middlebury, ground-truth disparity) downscaled by
``--stereo_scales``: left then right frame (repeated to fill a window), points on a grid of pixels
with finite disparity, tracked to x - d in the right frame.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags, logging

FLAGS = flags.FLAGS
PARTS = ("accuracy", "ablation", "speed", "stereo", "inference")
DEFAULT_PARTS = ("accuracy", "ablation", "speed", "stereo")  # inference scores a tracker trained elsewhere


def define_flags() -> None:
    flags.DEFINE_float("minutes", 30.0, "Training budget of each tracker, minutes.")
    flags.DEFINE_integer("steps", 0, "Training steps of each tracker; 0: as many as fill --minutes.")
    flags.DEFINE_float("raft_minutes", 30.0, "Training budget of RAFT-small, minutes.")
    flags.DEFINE_string("workdir", "workdir/tracking_bench", "Checkpoints, plans and results.")
    flags.DEFINE_list("parts", list(DEFAULT_PARTS), f"Which parts to run: {', '.join(PARTS)}.")
    flags.DEFINE_integer("eval_videos", 64, "Held-out clips (config.eval.num_videos).")
    flags.DEFINE_integer("tune_videos", 16, "Training clips for choosing the baselines' settings.")
    flags.DEFINE_integer("speed_frames", 16, "Frames of the speed clips.")
    flags.DEFINE_list("stereo_scales", ["4", "2"], "Downscaling factors of the stereo pair.")
    flags.DEFINE_string("figure", "docs/img/tracking_tracks.png", "Where to save the tracks figure.")
    flags.DEFINE_integer("data_workers", 1, "Processes drawing training clips (config.train.data_workers).")
    flags.DEFINE_enum("initial", None, ["query", "match"], "The trackers' model.initial; the config's if unset.")
    flags.DEFINE_enum("stride", None, ["2", "4"], "The trackers' model.stride; the config's if unset.")
    flags.DEFINE_float("huber", None, "The trackers' model.huber (pixels); the config's if unset.")
    flags.DEFINE_string("trained", "workdir/tracking", "Part inference: the runner's workdir of a trained tracker.")
    flags.DEFINE_list("iters", ["4", "6"], "Part inference: refinements per window to score.")
    flags.DEFINE_list("support", ["0", "5"], "Part inference: support grids (G x G points; 0: none) to score.")


# ----------------------------------------------------------------------------- training


def tracker_config(name: str):
    from experiments.configs import tracking

    config = tracking.get_config()
    config.eval.num_videos = FLAGS.eval_videos
    config.train.data_workers = FLAGS.data_workers
    if FLAGS.initial:
        config.model.initial = FLAGS.initial
    if FLAGS.stride:
        config.model.stride = int(FLAGS.stride)
    if FLAGS.huber is not None:
        config.model.huber = FLAGS.huber
    if name == "single":
        config.model.virtual = 0
    return config


def plan_steps(config, workdir: str, minutes: float, steps: int = 0) -> int:
    """``steps`` if > 0, else the steps that fill ``minutes``, timed on 3 steps (data included) after
    compiling; stored in the workdir (a rerun keeps the stored plan)."""
    import jax

    from experiments import checks
    from experiments.tasks import tracking
    from jaxdiff.train import create_train_state, make_optimizer, make_train_step

    path = os.path.join(workdir, "plan.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)["num_steps"]
    os.makedirs(workdir, exist_ok=True)
    if steps > 0:
        with open(path, "w") as f:
            json.dump({"num_steps": steps, "probe_s_per_step": None, "minutes": None}, f)
        return steps
    experiment = tracking.build(config)
    optimizer = make_optimizer(checks.optim_config(config))
    state = create_train_state(experiment.init(jax.random.key(0)), optimizer, jax.random.key(1))
    step = jax.jit(make_train_step(experiment.loss, optimizer, batch_size=config.train.batch_size,
                                   ema_halflife_nimg=config.train.ema_halflife_nimg))
    b = config.train.batch_size
    state, _ = step(state, experiment.source.get(np.arange(b)))
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for i in range(1, 4):
        state, _ = step(state, experiment.source.get(np.arange(i * b, (i + 1) * b)))
    jax.block_until_ready(state)
    per_step = (time.perf_counter() - t0) / 3
    num_steps = max(10, int(minutes * 60 / per_step))
    with open(path, "w") as f:
        json.dump({"num_steps": num_steps, "probe_s_per_step": per_step, "minutes": minutes}, f)
    print(f"{workdir}: {per_step:.2f} s/step -> {num_steps} steps for {minutes} min", flush=True)
    return num_steps


def train_tracker(name: str, minutes: float):
    """Train (or resume) the tracker ``name`` ("joint" | "single") with the runner; returns its config, EMA
    parameters and the runner's metrics."""

    from experiments import run

    config = tracker_config(name)
    workdir = os.path.join(FLAGS.workdir, name)
    config.train.num_steps = plan_steps(config, workdir, minutes, FLAGS.steps)
    config.optim.warmup_steps = min(config.optim.warmup_steps, max(1, config.train.num_steps // 20))
    metrics = run.run(config, workdir, progress=False)
    return config, restore_ema(config, workdir)[0], metrics


def restore_ema(config, workdir: str):
    """(EMA parameters, step) of the latest checkpoint the runner wrote in ``workdir`` for ``config``."""
    import jax

    from experiments import checks, run
    from experiments.tasks.tracking import model
    from jaxdiff.train import create_train_state, data_mesh, make_optimizer, replicate

    state = create_train_state(model(config).init(jax.random.key(0)), make_optimizer(checks.optim_config(config)),
                               jax.random.key(0))
    state = run.restore(replicate(state, data_mesh()), workdir)
    return jax.device_get(state.ema_params), int(state.step)


def flow_batch(step: int, batch: int = 8, size=(64, 64), seed: int = 0) -> dict:
    """RAFT training pairs: consecutive frames of synthetic training clips and their front layers' motion."""
    from jaxdiff.tracking import data

    rng = np.random.default_rng([seed, step])
    textures = data.photographs("train")
    out = {"image1": [], "image2": [], "flow": []}
    for _ in range(batch):
        c = data.clip(rng, textures, size, 8, 1)
        t = int(rng.integers(0, 7))
        out["image1"].append(c["video"][t])
        out["image2"].append(c["video"][t + 1])
        out["flow"].append(data.frame_flow(c["maps"], c["label"], t))
    out = {k: np.stack(v) for k, v in out.items()}
    out["valid"] = np.ones(out["flow"].shape[:-1], bool)
    return out


def train_raft(minutes: float):
    """RAFT-small trained for about ``minutes`` on ``flow_batch`` (the recipe of ``experiments.bench.flow``);
    returns (model, EMA parameters, steps)."""
    import jax
    import optax

    from jaxdiff.flow.raft import RAFT, sequence_loss
    from jaxdiff.train.fit import fit
    from jaxdiff.train.state import create_train_state
    from jaxdiff.train.step import make_train_step

    model = RAFT(small=True)
    workdir = os.path.join(FLAGS.workdir, "raft")
    os.makedirs(workdir, exist_ok=True)
    b = flow_batch(0)
    params = model.init(jax.random.key(0), b["image1"][:1], b["image2"][:1], 1)["params"]

    def loss_fn(p, batch, key):
        flows = model.apply({"params": p}, batch["image1"], batch["image2"], 8, train=True)
        loss, m = sequence_loss(flows, batch["flow"], batch["valid"])
        return loss, dict(m, loss=loss)

    def optimizer(num_steps):
        warmup = max(1, int(0.05 * num_steps))
        schedule = optax.join_schedules([optax.linear_schedule(2e-5, 5e-4, warmup),
                                         optax.linear_schedule(5e-4, 5e-8, max(1, num_steps - warmup))], [warmup])
        return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, eps=1e-8, weight_decay=1e-4))

    def make_step(num_steps):
        return jax.jit(make_train_step(loss_fn, optimizer(num_steps), batch_size=8, ema_halflife_nimg=1000.0))

    path = os.path.join(workdir, "plan.json")
    if os.path.exists(path):
        with open(path) as f:
            num_steps = json.load(f)["num_steps"]
    else:
        probe = make_step(1000)
        state = create_train_state(params, optimizer(1000), jax.random.key(0))
        state, _ = probe(state, b)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for i in range(1, 4):
            state, _ = probe(state, flow_batch(i))
        jax.block_until_ready(state)
        per_step = (time.perf_counter() - t0) / 3
        num_steps = max(10, int(minutes * 60 / per_step))
        with open(path, "w") as f:
            json.dump({"num_steps": num_steps, "probe_s_per_step": per_step, "minutes": minutes}, f)
        print(f"RAFT-small: {per_step:.2f} s/step -> {num_steps} steps", flush=True)
    state = create_train_state(params, optimizer(num_steps), jax.random.key(0))
    state = fit(state, make_step(num_steps), flow_batch, num_steps=num_steps, workdir=workdir, log_every=50,
                checkpoint_every=500, progress=False)
    return model, jax.device_get(state.ema_params), num_steps


# ----------------------------------------------------------------------------- baselines


def lucas_kanade(video, queries, win: int = 15, levels: int = 3, threshold: float = 1.0):
    """OpenCV's pyramidal Lucas–Kanade chained frame to frame; a step is kept where the backward track returns
    within ``threshold`` pixels (else the point stays and is marked hidden there). Shapes as ``zero_motion``."""
    import cv2

    from jaxdiff.tracking.baselines import zero_motion

    video, queries = np.asarray(video), np.asarray(queries)
    t = video.shape[1]
    tracks, visible = zero_motion(queries, t)
    params = dict(winSize=(win, win), maxLevel=levels,
                  criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    h, w = video.shape[2:4]
    for i in range(len(video)):
        grey = [cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in video[i]]
        p = queries[i, :, 1:].astype(np.float32).copy()
        for f in range(t - 1):
            idx = np.nonzero(queries[i, :, 0] <= f)[0]
            if len(idx):
                p0 = p[idx].reshape(-1, 1, 2)
                p1, st, _ = cv2.calcOpticalFlowPyrLK(grey[f], grey[f + 1], p0, None, **params)
                back, st2, _ = cv2.calcOpticalFlowPyrLK(grey[f + 1], grey[f], p1, None, **params)
                p1, back = p1.reshape(-1, 2), back.reshape(-1, 2)
                inside = (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
                good = (st[:, 0] == 1) & (st2[:, 0] == 1) & inside & (np.linalg.norm(back - p[idx], axis=-1) < threshold)
                p[idx[good]] = p1[good]
                visible[i, f + 1, idx] = good
            tracks[i, f + 1] = p
    return tracks, visible


def score(clips, tracks, visible) -> dict:
    from experiments.tasks.tracking import score as task_score

    return task_score(clips, np.asarray(tracks), np.asarray(visible))


def tune_lk(clips) -> dict:
    best = None
    for win in (7, 11, 15, 21):
        for levels in (1, 2, 3):
            for threshold in (0.5, 1.0, 2.0):
                r = score(clips, *lucas_kanade(clips["video"], clips["queries"], win, levels, threshold))
                key = r["AJ"] + r["delta_avg"]
                if best is None or key > best[0]:
                    best = (key, dict(win=win, levels=levels, threshold=threshold))
    return best[1]


def raft_tracks(model, params, clips, thresholds=(0.5, 1.0, 2.0, 4.0)) -> dict:
    """Chained RAFT tracks for each forward-backward threshold."""
    from jaxdiff.tracking.baselines import chain_flows, raft_flows

    forward, backward = raft_flows(model, {"params": params}, clips["video"])
    return {thr: chain_flows(forward, clips["queries"], backward, thr) for thr in thresholds}


# ----------------------------------------------------------------------------- parts


def hidden_tracks(clips) -> np.ndarray:
    """(B, N) points hidden (inside the frame, not visible) at some frame after their query."""
    from jaxdiff.tracking.metrics import evaluation_frames

    h, w = clips["video"].shape[2:4]
    x, y = clips["tracks"][..., 0], clips["tracks"][..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return np.any(inside & ~clips["visible"] & evaluation_frames(clips["queries"], clips["video"].shape[1]), 1)


def subset(clips, points: np.ndarray, *arrays):
    """Clips restricted to ``points`` (B, N) bool, padded by repeating a chosen point (TAP-Vid averages per clip,
    so each clip keeps at least one point; clips without a chosen point are dropped)."""
    keep = points.any(1)
    n = points.sum(1).max()
    idx = np.stack([np.resize(np.nonzero(row)[0], n) for row in points[keep]])
    out = {k: v for k, v in clips.items()}
    out["queries"] = np.take_along_axis(clips["queries"][keep], idx[..., None], 1)
    for k in ("tracks",):
        out[k] = np.take_along_axis(clips[k][keep], idx[:, None, :, None], 2)
    out["visible"] = np.take_along_axis(clips["visible"][keep], idx[:, None], 2)
    out["video"] = clips["video"][keep]
    picked = [np.take_along_axis(np.asarray(a)[keep], idx[:, None, :, None] if np.ndim(a) == 4 else idx[:, None], 2)
              for a in arrays]
    return out, picked


def accuracy() -> dict:
    import jax

    from experiments.outputs import Outputs
    from experiments.tasks.tracking import held_out, tracks_figure
    from jaxdiff.tracking import data
    from jaxdiff.tracking.baselines import zero_motion

    config, params, run_metrics = train_tracker("joint", FLAGS.minutes)
    clips = held_out(config)
    tune = data.make_videos("train", FLAGS.tune_videos, tuple(config.data.size), config.eval.num_frames,
                            config.eval.num_points, seed=123_456)
    from jaxdiff.tracking.model import CoTracker

    tracker = CoTracker(**dict(config.model))
    t0 = time.perf_counter()
    tracks, vis = tracker.track(params, clips["video"], clips["queries"])
    jax.block_until_ready(tracks)
    track_seconds = time.perf_counter() - t0
    rows = {"CoTracker-style (ours)": score(clips, tracks, np.asarray(vis) > 0.5)}
    lk = tune_lk(tune)
    rows[f"Lucas–Kanade (win {lk['win']}, {lk['levels']} levels, FB < {lk['threshold']} px)"] = score(
        clips, *lucas_kanade(clips["video"], clips["queries"], **lk))
    raft_model, raft_params, raft_steps = train_raft(FLAGS.raft_minutes)
    tuned = {thr: score(tune, *tr) for thr, tr in raft_tracks(raft_model, raft_params, tune).items()}
    thr = max(tuned, key=lambda k: tuned[k]["AJ"] + tuned[k]["delta_avg"])
    rows[f"RAFT-small chained (FB < {thr} px)"] = score(clips, *raft_tracks(raft_model, raft_params, clips, (thr,))[thr])
    rows["zero motion"] = score(clips, *zero_motion(clips["queries"], clips["video"].shape[1]))
    fig = tracks_figure(clips["video"][0], np.asarray(tracks)[0], np.asarray(vis)[0] > 0.5,
                        title="CoTracker-style tracks on a held-out clip (o visible, x predicted hidden)")
    Outputs(os.path.dirname(FLAGS.figure) or ".").figure(os.path.basename(FLAGS.figure), fig)
    return {"rows": rows, "runner_metrics": run_metrics, "track_seconds": track_seconds,
            "raft_steps": raft_steps, "clips": list(clips["video"].shape)}


def ablation() -> dict:
    from experiments.tasks.tracking import held_out
    from jaxdiff.tracking.model import CoTracker

    out = {}
    for name in ("joint", "single"):
        config, params, run_metrics = train_tracker(name, FLAGS.minutes)
        clips = held_out(config)
        tracks, vis = CoTracker(**dict(config.model)).track(params, clips["video"], clips["queries"])
        tracks, visible = np.asarray(tracks), np.asarray(vis) > 0.5
        hidden = hidden_tracks(clips)
        sub, (sub_tracks, sub_visible) = subset(clips, hidden, tracks, visible)
        with open(os.path.join(FLAGS.workdir, name, "plan.json")) as f:
            plan = json.load(f)
        out[name] = {"all": score(clips, tracks, visible), "hidden_tracks": score(sub, sub_tracks, sub_visible),
                     "hidden_track_count": int(hidden.sum()), "steps": plan["num_steps"],
                     "s_per_step": plan["probe_s_per_step"], "train_seconds": run_metrics["train_seconds"]}
    return out


def speed() -> dict:
    import jax
    import jax.numpy as jnp

    from jaxdiff.tracking import correlation
    from jaxdiff.tracking.model import CoTracker, _track

    tracker = CoTracker(**dict(tracker_config("joint").model))
    params = tracker.init(jax.random.key(0))
    rows = []
    for h, w in ((256, 256), (1080, 1920)):
        for n in (256, 1024):
            rng = np.random.default_rng(0)
            video = jnp.asarray(rng.uniform(0, 255, (1, FLAGS.speed_frames, h, w, 3)).astype(np.float32))
            queries = np.concatenate([rng.integers(0, FLAGS.speed_frames // 2, (1, n, 1)),
                                      rng.uniform([0, 0], [w - 1, h - 1], (1, n, 2))], -1).astype(np.float32)
            queries = jnp.asarray(queries)
            compiled = _track.lower(tracker, params, video, queries, 4).compile()
            m = compiled.memory_analysis()
            jax.block_until_ready(compiled(params, video, queries))
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(params, video, queries))
                times.append(time.perf_counter() - t0)
            fh, fw = h // tracker.stride, w // tracker.stride
            mode = tracker.corr_mode(1, n, fh, fw)
            volume = correlation.volume_bytes(1, tracker.window, n, fh, fw, tracker.levels)
            rows.append({"size": [h, w], "tracks": n, "frames": FLAGS.speed_frames, "corr": mode,
                         "ms_per_frame": 1000 * min(times) / FLAGS.speed_frames,
                         "temp_mib": m.temp_size_in_bytes / 2**20, "argument_mib": m.argument_size_in_bytes / 2**20,
                         "all_pairs_window_volume_mib": volume / 2**20})
            print(rows[-1], flush=True)
    return {"rows": rows}


def inference() -> dict:
    import dataclasses

    import ml_collections

    from experiments.tasks.tracking import held_out, model

    with open(os.path.join(FLAGS.trained, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    tracker = model(config)
    params, step = restore_ema(config, FLAGS.trained)
    clips = held_out(config)
    rows = []
    for iters in (int(i) for i in FLAGS.iters):
        for support in (int(g) for g in FLAGS.support):
            t0 = time.perf_counter()
            tracks, vis = dataclasses.replace(tracker, iters=iters).track(params, clips["video"], clips["queries"],
                                                                         support=support)
            rows.append({"iters": iters, "support": support, **score(clips, tracks, np.asarray(vis) > 0.5),
                         "seconds": time.perf_counter() - t0})
            print({k: rows[-1][k] for k in ("iters", "support", "AJ", "delta_avg", "OA", "seconds")}, flush=True)
    return {"trained": FLAGS.trained, "step": step, "trained_iters": tracker.iters, "rows": rows}


def stereo() -> dict:
    import skimage.data
    import skimage.transform

    from jaxdiff.tracking.baselines import chain_flows, raft_flows, zero_motion
    from jaxdiff.tracking.model import CoTracker

    config, params, _ = train_tracker("joint", FLAGS.minutes)
    tracker = CoTracker(**dict(config.model))
    raft_model, raft_params, _ = train_raft(FLAGS.raft_minutes)
    left, right, disparity = skimage.data.stereo_motorcycle()
    out = {}
    for scale in (int(s) for s in FLAGS.stereo_scales):
        l_img = skimage.transform.downscale_local_mean(left.astype(np.float32), (scale, scale, 1))
        r_img = skimage.transform.downscale_local_mean(right.astype(np.float32), (scale, scale, 1))
        d = disparity[scale // 2::scale, scale // 2::scale][:l_img.shape[0], :l_img.shape[1]] / scale
        h, w = l_img.shape[:2]
        ys, xs = np.mgrid[4:h - 4:8, 4:w - 4:8]
        ok = np.isfinite(d[ys, xs]) & (xs - d[ys, xs] >= 0)
        xs, ys = xs[ok].astype(np.float32), ys[ok].astype(np.float32)
        n = len(xs)
        t = tracker.window
        video = np.stack([l_img] + [r_img] * (t - 1))[None]
        queries = np.stack([np.zeros(n), xs, ys], -1)[None].astype(np.float32)
        truth = np.broadcast_to(np.stack([xs, ys], -1), (1, t, n, 2)).copy()
        truth[0, 1:, :, 0] -= d[ys.astype(int), xs.astype(int)]
        tracks, vis = tracker.track(params, video, queries)
        forward, backward = raft_flows(raft_model, {"params": raft_params}, video[:, :2])
        raft = chain_flows(forward, queries, backward, 1e9)
        methods = {"CoTracker-style (ours)": (np.asarray(tracks), np.asarray(vis) > 0.5),
                   "Lucas–Kanade": lucas_kanade(video, queries, 15, 3, 1e9),
                   "RAFT-small": (np.repeat(np.asarray(raft[0])[:, 1:], t - 1, 1), None),
                   "zero motion": zero_motion(queries, t)}
        rows = {}
        for name, (tr, _) in methods.items():
            tr = np.asarray(tr)
            err = np.linalg.norm(tr[0, 1] - truth[0, 1], axis=-1) if name != "RAFT-small" else \
                np.linalg.norm(tr[0, 0] - truth[0, 1], axis=-1)
            rows[name] = {"epe_px": float(err.mean()), "within_1px": float(np.mean(err < 1)),
                          "within_3px": float(np.mean(err < 3))}
        out[f"1/{scale}"] = {"size": [h, w], "points": n, "disparity_px": [float(np.nanmin(d[np.isfinite(d)])),
                                                                               float(np.nanmax(d[np.isfinite(d)]))],
                             "rows": rows}
        print(out[f"1/{scale}"], flush=True)
    return out


def main(_):
    logging.set_verbosity(logging.WARNING)
    unknown = set(FLAGS.parts) - set(PARTS)
    if unknown:
        raise app.UsageError(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    os.makedirs(FLAGS.workdir, exist_ok=True)
    path = os.path.join(FLAGS.workdir, "results.json")
    results = {}
    if os.path.exists(path):  # parts run before keep their results
        with open(path) as f:
            results = json.load(f)
    for part in FLAGS.parts:
        t0 = time.perf_counter()
        results[part] = globals()[part]()
        results[part]["seconds"] = time.perf_counter() - t0
        with open(path, "w") as f:
            json.dump(results, f, indent=2, default=float)
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    define_flags()
    app.run(main)
