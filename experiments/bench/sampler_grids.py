r"""Noise-level grids optimised per sampler (``jaxdiff.samplers.grids.optimise_sigmas``) on digits.

    python -m experiments.bench.sampler_grids [--out=DIR] [--nfe=10] [--extra_nfe=5,20]

Setup of ``experiments.bench.samplers``: all 1,797 digits in [-1, 1] as 64-D vectors, their
ideal denoiser, batch 256 per noise draw, float64, initial noise ``80 · default_rng(seed)``,
error = mean L2 distance to a 1,000-step Heun solve (Karras 0.002–80, rho 7) from the same
noise. Per solver and NFE: the default Karras grid (0.002–80, rho 7); the log-uniform grid
80 → σ_min (then 0) with σ_min picked on the training draws; and that grid optimised by
Adam on the training draws (σ_max = 80 and the final 0 fixed, σ_min free). All three are then
measured on held-out draws (disjoint seeds): mean and range over those draws. The defaults
(two training draws, 150 Adam steps) keep the run near 10 minutes on 2 shared cores; more
training draws and steps (``--train_seeds=100,101,102,103 --steps=300``) generalise better.

Writes ``grids_optimised.md`` and ``results.json`` to ``--out``.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from jaxdiff import samplers, schedules  # noqa: E402
from jaxdiff.data.digits import load_digits  # noqa: E402
from jaxdiff.denoisers import ideal_denoiser  # noqa: E402
from jaxdiff.samplers.grids import optimise_sigmas, sample_error  # noqa: E402
from jaxdiff.samplers.multistep import unipc  # noqa: E402


def define_flags() -> None:
    flags.DEFINE_string("out", "/tmp/jaxdiff_bench_sampler_grids", "Output directory.")
    flags.DEFINE_list("solvers", ["unipc-3", "dpmpp_3m", "dpmpp_2m"], "Solvers to optimise a grid for.")
    flags.DEFINE_integer("nfe", 10, "Main NFE (all solvers).")
    flags.DEFINE_list("extra_nfe", ["5", "20"], "Further NFEs, for the first solver only (empty to skip).")
    flags.DEFINE_list("train_seeds", ["100", "101"], "Noise seeds the grids are fitted on.")
    flags.DEFINE_list("heldout_seeds", [str(s) for s in range(1, 9)], "Noise seeds the grids are measured on.")
    flags.DEFINE_integer("steps", 150, "Adam steps per grid.")
    flags.DEFINE_float("lr", 0.05, "Peak Adam learning rate on the log-σ gap parameters.")


FLAGS = flags.FLAGS

SIGMA_MIN, SIGMA_MAX, RHO, BATCH, REF_STEPS = 0.002, 80.0, 7.0, 256, 1000
LOG_UNIFORM_MINS = (0.1, 0.2, 0.4)
SOLVERS = {  # name -> (sampler, options); all take NFE = N steps
    "unipc-3": (unipc, {"order": 3}),
    "unipc-2": (unipc, {"order": 2}),
    "dpmpp_3m": (samplers.dpmpp_3m_sde, {"eta": 0.0, "key": jax.random.key(0)}),  # eta = 0: the noise is weighted 0
    "dpmpp_2m": (samplers.dpmpp_2m, {}),
    "lms": (samplers.lms, {}),
}


def karras(n):
    return schedules.karras(n, SIGMA_MIN, SIGMA_MAX, RHO, dtype=jnp.float64)


def log_uniform(n, sigma_min):
    return schedules.exponential(n, sigma_min, SIGMA_MAX, dtype=jnp.float64)


def draw(seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((BATCH, 64)) * SIGMA_MAX)


@functools.lru_cache(maxsize=None)
def _jitted(name):
    sampler, options = SOLVERS[name]
    return jax.jit(lambda data, x, sigmas: sampler(ideal_denoiser(data), x, sigmas, **options))


def errors(name, data, draws, sigmas):
    """Error per draw of solver ``name`` on grid ``sigmas``: [float, ...] in ``draws``' order."""
    return [float(sample_error(_jitted(name)(data, x, sigmas), ref)) for x, ref in draws]


def _fmt(errs):
    return f"{np.mean(errs):.3f} ({min(errs):.3f}–{max(errs):.3f})"


def main(argv):
    del argv
    os.makedirs(FLAGS.out, exist_ok=True)
    t_start = time.perf_counter()
    train_seeds = [int(s) for s in FLAGS.train_seeds]
    heldout_seeds = [int(s) for s in FLAGS.heldout_seeds]
    if set(train_seeds) & set(heldout_seeds):
        raise ValueError(f"train_seeds and heldout_seeds must be disjoint, got {train_seeds} and {heldout_seeds}")
    images, _ = load_digits("all")
    data = jnp.asarray(images.reshape(len(images), -1), jnp.float64)
    heun = jax.jit(lambda data, x: samplers.heun(ideal_denoiser(data), x, karras(REF_STEPS)))
    train = [(x, jax.block_until_ready(heun(data, x))) for x in map(draw, train_seeds)]
    heldout = [(x, jax.block_until_ready(heun(data, x))) for x in map(draw, heldout_seeds)]
    x_train = jnp.concatenate([x for x, _ in train])
    ref_train = jnp.concatenate([r for _, r in train])
    print(f"references ({len(train)} training + {len(heldout)} held-out draws) in "
          f"{time.perf_counter() - t_start:.0f}s", flush=True)

    runs = [(name, FLAGS.nfe) for name in FLAGS.solvers]
    runs += [(FLAGS.solvers[0], int(n)) for n in FLAGS.extra_nfe if int(n) != FLAGS.nfe]
    rows = []
    for name, nfe in runs:
        t0 = time.perf_counter()
        train_err = {smin: np.mean(errors(name, data, train, log_uniform(nfe, smin))) for smin in LOG_UNIFORM_MINS}
        smin = min(train_err, key=train_err.get)
        init = log_uniform(nfe, smin)
        sampler, options = SOLVERS[name]
        sigmas, losses = optimise_sigmas(sampler, ideal_denoiser(data), x_train, ref_train, init,
                                         steps=FLAGS.steps, lr=FLAGS.lr, return_losses=True,
                                         options=options)
        grids = {"karras (default)": karras(nfe), f"log-uniform σmin={smin:g}": init, "optimised": sigmas}
        for gname, grid in grids.items():
            row = {"solver": name, "nfe": nfe, "grid": gname, "sigmas": np.asarray(grid).tolist(),
                   "heldout": errors(name, data, heldout, grid)}
            if gname == "optimised":
                row.update(train_loss_init=float(losses[0]), train_loss_best=float(losses.min()),
                           seconds=time.perf_counter() - t0)
            rows.append(row)
        print(f"{name} @ {nfe} NFE ({time.perf_counter() - t0:.0f}s): "
              + "; ".join(f"{r['grid']} {_fmt(r['heldout'])}" for r in rows[-3:])
              + f"; train loss {losses[0]:.3f} -> {losses.min():.3f}", flush=True)

    lines = [f"Optimised noise-level grids: digits ideal denoiser, batch {BATCH}, float64, error vs 1000-step Heun. "
             f"Grids fitted on noise seeds {train_seeds} ({FLAGS.steps} Adam steps, lr {FLAGS.lr:g}, from the "
             f"log-uniform grid whose σmin in {list(LOG_UNIFORM_MINS)} is best on those seeds); "
             f"error: mean (min–max) over held-out seeds {heldout_seeds}.", "",
             "| solver | NFE | grid | held-out error | σ (nonzero levels) |", "|---|---|---|---|---|"]
    for r in rows:
        levels = ", ".join(f"{v:.3g}" for v in r["sigmas"][:-1])
        sig = "0.002–80, rho 7" if r["grid"] == "karras (default)" else levels
        lines.append(f"| {r['solver']} | {r['nfe']} | {r['grid']} | {_fmt(r['heldout'])} | {sig} |")
    total = time.perf_counter() - t_start
    lines += ["", f"Total run time {total:.0f}s on {os.cpu_count()} CPU cores."]
    with open(os.path.join(FLAGS.out, "grids_optimised.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
        json.dump({"rows": rows, "seconds": total, "train_seeds": train_seeds, "heldout_seeds": heldout_seeds,
                   "steps": FLAGS.steps, "lr": FLAGS.lr}, f, indent=1)
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
