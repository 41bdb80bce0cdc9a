r"""The NAS-Bench-201 property table on scikit-learn digits: every unique cell trained (a second seed on a subset).

    flock /tmp/jaxdiff-bench.lock python -m experiments.bench.nb201_digits \
        [--out=~/.cache/jaxdiff/nag/nb201_digits_v1.npz --channels=8 --steps=30 --chunk=256 --seeds=0,1 --repeat_cells=1536]

Trains the skeleton of ``jaxdiff.nag.skeleton`` (stem, cell at 4x4 with C channels, reduction,
cell at 2x2 with 2C, linear head) with each of the 6,466 unique cells of
``jaxdiff.nag.space.unique_cells``, ``--chunk`` cells side by side in one compiled program (one-hot
operation gates, ``vmap``), with the first seed, and a random ``--repeat_cells`` of them (rounded up to
chunks) with each further seed, and records validation accuracy (360 images held out of
the digits train split), test accuracy (the 360 test digits), parameters and FLOPs into a
``jaxdiff.nag.table.PropertyTable`` at ``--out``. Chunks done are kept in ``<out>.partial/``, so a
killed build resumes where it stopped; ``build_seconds`` in the table's info adds up the
training time of every chunk, over every run.

Prints the build time, the seed-to-seed Spearman rank correlation of validation accuracy (the
table's noise floor; overall and among the top 10%), the rank correlation of accuracy with parameter
count and FLOPs (zero-cost baselines), validation against test, and the accuracy quantiles; writes
them beside the table (``<out>.json``). ``--subset=N --subset_out=PATH`` also writes a table of N
random rows (the test fixture).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    from jaxdiff.nag.table import DEFAULT_PATH

    flags.DEFINE_string("out", DEFAULT_PATH, "Where the table goes (.npz).")
    flags.DEFINE_integer("channels", 8, "C: channels of the first stage (the second has 2C).")
    flags.DEFINE_integer("steps", 30, "SGD steps per cell and seed (batch --batch_size).")
    flags.DEFINE_integer("batch_size", 64, "Training images per step.")
    flags.DEFINE_float("learning_rate", 0.1, "Peak learning rate (cosine decay).")
    flags.DEFINE_integer("chunk", 256, "Cells trained side by side in one program.")
    flags.DEFINE_list("seeds", ["0", "1"], "Training seeds.")
    flags.DEFINE_integer("repeat_cells", 1536, "Cells trained with every seed after the first (the noise floor); "
                         "the first seed trains every cell. 0: every cell with every seed.")
    flags.DEFINE_integer("limit", 0, "Build only N unique cells, a random subset (0: all 6,466), for a quick check.")
    flags.DEFINE_integer("subset", 0, "Also write a table of this many random rows to --subset_out.")
    flags.DEFINE_string("subset_out", "tests/nag/data/nb201_digits_subset.npz", "Path of the subset table.")


def cpu_model() -> str:
    """``lscpu``'s model name (empty where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


def build(out: Path, skeleton, seeds: list[int], chunk: int, limit: int, repeat: int) -> tuple[np.ndarray, dict, float]:
    """Train every chunk that is not in ``<out>.partial`` yet. The unique cells are visited in a
    fixed random order (so ``limit`` keeps a random subset, and the first ``repeat`` cells, rounded up
    to chunks, are those the seeds after the first train); returns the classes built (sorted), their
    columns (NaN where a seed did not train the cell) and the seconds spent training them (over every run)."""
    import jax

    from jaxdiff.nag import skeleton as sk
    from jaxdiff.nag.space import unique_cells

    cells = unique_cells().astype(np.int64)
    n = limit or len(cells)
    visit = np.random.default_rng(0).permutation(len(cells))[:n]
    data = sk.digits_splits()
    partial = Path(str(out) + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    tag = f"c{skeleton.channels}_s{skeleton.steps}_b{skeleton.batch_size}_lr{skeleton.learning_rate:g}_chunk{chunk}"
    repeat = n if repeat <= 0 else min(n, repeat)
    jobs = [(seed, start) for start in range(0, n, chunk) for seed in seeds if seed == seeds[0] or start < repeat]
    todo = [(s, k) for s, k in jobs if not (partial / f"{tag}_seed{s}_{k:05d}.npz").exists()]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} chunks already done in {partial}", flush=True)
    t0 = time.perf_counter()
    for i, (seed, start) in enumerate(todo):
        rows = visit[start:start + chunk]
        pad = np.concatenate([rows, np.full(chunk - len(rows), rows[0])])  # one program for every chunk
        t1 = time.perf_counter()
        r = sk.train_and_evaluate(cells[pad], pad, seed, data, skeleton)
        np.savez(partial / f"{tag}_seed{seed}_{start:05d}.npz", seconds=time.perf_counter() - t1,
                 **{k: v[:len(rows)] for k, v in r.items()})
        elapsed = time.perf_counter() - t0
        eta = elapsed / (i + 1) * (len(todo) - i - 1)
        print(f"seed {seed} cells {start}-{start + len(rows) - 1}: val {r['val'][:len(rows)].mean():.3f} "
              f"({elapsed:.0f} s, about {eta / 60:.0f} min left, load {os.getloadavg()[0]:.1f})", flush=True)
    jax.clear_caches()
    cols = {k: np.full((n, len(seeds)), np.nan) for k in ("val", "test", "train_loss")}
    seconds = 0.0
    for seed, start in jobs:
        with np.load(partial / f"{tag}_seed{seed}_{start:05d}.npz") as f:
            for k in cols:
                cols[k][start:start + chunk, seeds.index(seed)] = f[k]
            seconds += float(f["seconds"])
    order = np.argsort(visit)
    return visit[order], {k: v[order] for k, v in cols.items()}, seconds


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def summary(table) -> dict:
    """Noise floor and zero-cost baselines of a table."""
    val, test = table.val_acc, table.test_acc
    mean = table.values("val_acc")
    both = np.isfinite(val[:, :2]).all(1)  # the cells the first two seeds trained
    top = both & (val[:, 0] >= np.quantile(val[both, 0], 0.9))
    out = {
        "cells": len(table), "cells_with_two_seeds": int(both.sum()),
        "seed_spearman_val": spearman(val[both, 0], val[both, 1]),
        "seed_spearman_test": spearman(test[both, 0], test[both, 1]),
        "seed_spearman_val_top10pct": spearman(val[top, 0], val[top, 1]),
        "spearman_val_params": spearman(mean, table.params),
        "spearman_val_flops": spearman(mean, table.flops),
        "spearman_val_test": spearman(mean, table.values("test_acc")),
        "val_quantiles": dict(zip(["min", "p10", "p50", "p90", "p99", "max"],
                                  np.quantile(mean, [0, 0.1, 0.5, 0.9, 0.99, 1]).round(4).tolist())),
        "top1pct_threshold": float(np.sort(mean)[::-1][int(np.ceil(0.01 * len(mean))) - 1]),
    }
    return out


def main(_):
    from jaxdiff.nag.skeleton import Skeleton, count_flops, count_params
    from jaxdiff.nag.space import unique_cells
    from jaxdiff.nag.table import PropertyTable

    out = Path(FLAGS.out).expanduser()
    seeds = [int(s) for s in FLAGS.seeds]
    if len(seeds) < 2:
        raise app.UsageError("--seeds needs two seeds or more (the noise floor compares them)")
    skeleton = Skeleton(channels=FLAGS.channels, steps=FLAGS.steps, batch_size=FLAGS.batch_size,
                        learning_rate=FLAGS.learning_rate)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    classes, cols, seconds = build(out, skeleton, seeds, FLAGS.chunk, FLAGS.limit, FLAGS.repeat_cells)
    n = len(classes)
    cells = unique_cells()[classes]
    info = {
        "skeleton": {k: getattr(skeleton, k) for k in skeleton.__dataclass_fields__},
        "data": "scikit-learn digits: train 1,077, val 360 (held out of jaxdiff's train split), test 360",
        "seeds": seeds, "chunk": FLAGS.chunk, "repeat_cells": int(np.isfinite(cols["val"][:, -1]).sum()),
        "build_seconds": round(seconds, 1), "wall_seconds_this_run": round(time.perf_counter() - t0, 1),
        "cpu": cpu_model(), "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "date": datetime.date.today().isoformat(),
        "final_train_loss_mean": float(np.nanmean(cols["train_loss"])),
    }
    table = PropertyTable(classes, cols["val"], cols["test"], count_params(cells, skeleton.channels),
                          count_flops(cells, skeleton.channels), info)
    stats = summary(table)
    info.update(stats)
    table = PropertyTable(table.classes, table.val_acc, table.test_acc, table.params, table.flops, info)
    table.save(out)
    Path(str(out) + ".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    print(f"table of {n} cells written to {out} ({info['build_seconds'] / 60:.1f} min of building)")
    if FLAGS.subset:
        rows = np.random.default_rng(0).choice(n, min(FLAGS.subset, n), replace=False)
        sub = table.subset(rows)
        sub.save(FLAGS.subset_out)
        print(f"subset of {len(sub)} rows written to {FLAGS.subset_out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
