"""Point tracking: a CoTracker-style joint tracker trained on synthetic videos, scored by the TAP-Vid protocol.

Training clips are ``jaxdiff.tracking.data`` videos of the training photographs (``config.data``),
drawn on demand from their index. The network is ``jaxdiff.tracking.CoTracker(**config.model)`` and
its loss (discounted Huber on every refinement, cross-entropy on visibility). Evaluation tracks the
query points of ``config.eval.num_videos`` held-out clips (validation photographs, their own seed)
with the EMA parameters: TAP-Vid's AJ, δ_avg and OA ("query first", distances at 256x256), δ_avg on
hidden frames, and the same for zero motion. Outputs: ``metrics.md``, ``tracks.png`` (tracks drawn
over frames) and the metrics.
"""

from __future__ import annotations

import numpy as np

from experiments.checks import fail, positive
from experiments.outputs import pyplot
from experiments.tasks import Experiment

MODES = ("train", "eval")


def model(config):
    """The ``CoTracker`` of ``config.model``; a bad field fails naming it."""
    from jaxdiff.tracking import CoTracker

    fields = set(CoTracker.__dataclass_fields__)
    unknown = set(config.model) - fields
    if unknown:
        fail(f"model.{sorted(unknown)[0]}", f"no such field; config.model has {', '.join(sorted(fields))}")
    try:
        return CoTracker(**dict(config.model))
    except ValueError as e:  # "<field> must ..."
        name, _, rest = str(e).partition(" ")
        fail(f"model.{name}", rest)


def validate(config) -> None:
    tracker = model(config)
    positive(config, "data", "num_frames", "num_points", "num_train")
    positive(config, "eval", "num_videos", "num_frames", "num_points")
    size, smallest = tuple(config.data.size), max(16, tracker.min_size())
    if len(size) != 2 or min(size) < smallest:
        fail("data.size", f"must be (H, W) with both >= {smallest} (16, and 4 * 2**(model.levels - 1)), got {size}")
    for section in ("data", "eval"):
        if config[section].num_frames < tracker.window:
            fail(f"{section}.num_frames", f"{config[section].num_frames} is shorter than one window "
                 f"(model.window={tracker.window})")
    if config.data.num_train < config.train.batch_size:
        fail("data.num_train", f"{config.data.num_train} clips cannot fill a batch of {config.train.batch_size}")
    if config.data.max_sprites < 1:
        fail("data.max_sprites", f"must be >= 1, got {config.data.max_sprites}")


def video_options(config) -> dict:
    return dict(max_sprites=config.data.max_sprites, noise=config.data.noise)


def held_out(config) -> dict:
    """The evaluation clips: validation photographs, ``config.eval`` sizes and seed."""
    from jaxdiff.tracking.data import make_videos

    e = config.eval
    return make_videos("val", e.num_videos, tuple(config.data.size), e.num_frames, e.num_points, seed=e.seed,
                       **video_options(config))


def score(clips: dict, tracks, visible) -> dict:
    """TAP-Vid figures (query first) and δ_avg on hidden frames of predicted ``tracks`` and ``visible``."""
    from jaxdiff.tracking import metrics

    size = clips["video"].shape[2:4]
    args = (clips["queries"], clips["tracks"], clips["visible"], np.asarray(tracks))
    out = metrics.tapvid_metrics(*args, np.asarray(visible), size)
    hidden = metrics.occluded_accuracy(*args, size)
    return {"AJ": out["average_jaccard"], "delta_avg": out["average_pts_within_thresh"],
            "OA": out["occlusion_accuracy"], "delta_avg_hidden": hidden["occluded_average_pts_within_thresh"],
            **{k: v for k, v in out.items() if k.startswith(("pts_within", "jaccard"))}}


def markdown(rows: dict[str, dict]) -> str:
    lines = ["| method | AJ | δ_avg | OA | δ_avg, hidden frames |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['AJ']:.3f} | {r['delta_avg']:.3f} | {r['OA']:.3f} | {r['delta_avg_hidden']:.3f} |")
    return "\n".join(lines)


def tracks_figure(video, tracks, visible, frames=(0, 6, 12, 18, 23), tail: int = 6, title: str | None = None):
    """One clip's frames with each track's last ``tail`` positions drawn over them (filled: visible)."""
    plt = pyplot()
    video, tracks, visible = np.asarray(video), np.asarray(tracks), np.asarray(visible)
    frames = [f for f in frames if f < len(video)]
    colours = plt.get_cmap("hsv")(np.linspace(0, 1, tracks.shape[1], endpoint=False))
    fig, axes = plt.subplots(1, len(frames), figsize=(2.4 * len(frames), 2.6))
    for ax, f in zip(np.atleast_1d(axes), frames):
        ax.imshow(np.clip(video[f], 0, 255).astype(np.uint8))
        start = max(0, f - tail)
        for n in range(tracks.shape[1]):
            ax.plot(tracks[start:f + 1, n, 0], tracks[start:f + 1, n, 1], "-", color=colours[n], lw=0.8)
            ax.plot(*tracks[f, n], "o" if visible[f, n] else "x", color=colours[n], ms=3,
                    mfc=colours[n] if visible[f, n] else "none")
        ax.set_title(f"frame {f}", fontsize=8)
        ax.set_xlim(-0.5, video.shape[2] - 0.5)
        ax.set_ylim(video.shape[1] - 0.5, -0.5)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def build(config) -> Experiment:
    import jax

    from jaxdiff.tracking import baselines
    from jaxdiff.tracking.data import VideoSource

    tracker = model(config)
    d = config.data
    source = VideoSource("train", d.num_train, tuple(d.size), d.num_frames, d.num_points, seed=config.seed,
                         **video_options(config))

    def evaluate(params, key, outputs) -> dict:
        del key
        clips = held_out(config)
        tracks, visibility = tracker.track(jax.device_get(params), clips["video"], clips["queries"])
        visible = np.asarray(visibility) > 0.5
        rows = {"CoTracker (this run)": score(clips, tracks, visible),
                "zero motion": score(clips, *baselines.zero_motion(clips["queries"], clips["video"].shape[1]))}
        outputs.text("metrics.md", markdown(rows) + "\n")
        outputs.figure("tracks.png", tracks_figure(clips["video"][0], np.asarray(tracks)[0], visible[0]))
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
        return {"rows": rows, "num_params": n_params}

    return Experiment(source=source, init=tracker.init, loss=tracker.loss, evaluate=evaluate)
