r"""Train-step throughput of a config next to the machine's dense-matmul FLOP/s, in one run.

    python -m experiments.bench.train_throughput [--config=experiments/configs/digits.py] \
        [--steps=50] [--config.model.arch=dit ...]

Prints steps/s, images/s, the step's FLOPs (XLA cost analysis of the compiled
step), achieved FLOP/s, and the ratio to the dense-matmul FLOP/s (2048x2048,
jit) of the network's compute dtype, measured in the same process.
"""

from __future__ import annotations

import json
import time

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    config_flags.DEFINE_config_file("config", "experiments/configs/digits.py", "Config file.", lock_config=True)
    flags.DEFINE_integer("steps", 50, "Timed steps (after one warm-up step).")
    flags.DEFINE_integer("repeats", 3, "Timing repeats; the best is reported.")


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_flops_per_s(n: int = 2048, dtype="float32", repeats: int = 5) -> float:
    import jax

    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    return 2 * n**3 / _best_time(lambda: f(a).block_until_ready(), repeats)


def step_flops(jitted, *args) -> float:
    cost = jitted.lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


def measure(config, steps: int, repeats: int) -> dict:
    import jax
    import numpy as np

    from experiments import checks, tasks
    from jaxdiff.data import pipeline
    from jaxdiff.train import (
        create_train_state, data_mesh, make_optimizer, make_train_step, parallel_train_step, replicate, shard_batch,
    )

    task = tasks.get(config.task)
    task.validate(config)
    experiment = task.build(config)
    optimizer = make_optimizer(checks.optim_config(config))
    mesh = data_mesh()
    tc = config.train
    params = experiment.init(jax.random.key(0))
    state = replicate(create_train_state(params, optimizer, jax.random.key(1)), mesh)
    step = parallel_train_step(
        make_train_step(experiment.loss, optimizer, batch_size=tc.batch_size, ema_halflife_nimg=tc.ema_halflife_nimg),
        mesh, donate=False,
    )
    source = experiment.source
    local = pipeline.batch_fn(source, pipeline.EpochSampler(len(source), tc.batch_size, seed=0))
    batches = [shard_batch(local(i), mesh) for i in range(steps)]
    flops = step_flops(step, state, batches[0])
    t0 = time.perf_counter()
    jax.block_until_ready(step(state, batches[0]))
    compile_s = time.perf_counter() - t0

    def run():
        s = state
        for b in batches:
            s, m = step(s, b)
        jax.block_until_ready(m)

    seconds = _best_time(run, repeats) / steps
    compute_dtype = config.model.get(config.model.arch, {}).get("dtype", "float32")
    peaks = {dt: matmul_flops_per_s(dtype=dt) for dt in ("float32", "bfloat16")}
    peak = peaks.get(compute_dtype, peaks["float32"])
    return {
        "arch": config.model.arch,
        "params": int(sum(np.size(p) for p in jax.tree.leaves(params))),
        "batch_size": tc.batch_size,
        "devices": jax.device_count(),
        "compile_s": round(compile_s, 2),
        "ms_per_step": round(1e3 * seconds, 2),
        "steps_per_s": round(1 / seconds, 2),
        "images_per_s": round(tc.batch_size / seconds, 1),
        "gflop_per_step": round(flops / 1e9, 3),
        "achieved_gflop_per_s": round(flops / seconds / 1e9, 1),
        "compute_dtype": compute_dtype,
        "matmul_gflop_per_s_f32": round(peaks["float32"] / 1e9, 1),
        "matmul_gflop_per_s_bf16": round(peaks["bfloat16"] / 1e9, 1),
        "fraction_of_matmul_same_dtype": round(flops / seconds / peak, 3),
    }


def main(argv):
    del argv
    print(json.dumps(measure(FLAGS.config, FLAGS.steps, FLAGS.repeats), indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
