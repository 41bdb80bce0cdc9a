r"""Optimised noise-level grids and learned step corrections per sampler, on digits.

    python -m experiments.bench.sampler_grids [--out=DIR] [--solvers=...] [--nfe=10] [--extra_nfe=5,20]
        [--learn=ipndm-3,deis-3] [--model_workdir=workdir/digits]

1. Ideal denoiser. Setup of ``experiments.bench.samplers``: all 1,797 digits in [-1, 1] as 64-D
   vectors, their ideal denoiser, batch 256 per noise draw, float64, initial noise
   ``80 · default_rng(seed)``, error = mean L2 distance to a 1,000-step Heun solve (Karras
   0.002–80, rho 7) from the same noise. Per solver and NFE: the default Karras grid (0.002–80,
   rho 7); the log-uniform grid 80 → σ_min (then 0) with σ_min picked on the training draws; that
   grid optimised by Adam on the training draws (``optimise_sigmas``: σ_max = 80 and the final 0
   fixed, σ_min free); and for the ``--learn`` solvers (``ipndm``, ``deis``, ``unipc``) a learned
   ``StepCorrection`` with its grid (``learn_correction``, from the same log-uniform grid): one
   direction scale per step (``step``, AMED-Plugin's form) and, but for UniPC, one per Adams weight
   (``weight``); with ``--warm_start`` the corrections start from that solver's optimised grid instead
   (fitted first, then the correction for ``--correction_steps`` at ``--correction_lr``), so a
   correction can only improve on the optimised grid.
   All are measured on held-out draws (disjoint seeds): mean and range over those draws. A solver
   with ``-afs`` takes one step more than its NFE (the analytical first step). The defaults (two
   training draws, 150 Adam steps) keep a three-solver run near 10 minutes on 2 shared cores; more
   training draws and steps (``--train_seeds=100,101,102,103 --steps=300``) generalise better.
2. The trained digits model (``--model_workdir``, a run of ``experiments.run`` with
   ``experiments/configs/digits.py``): the Fréchet distance of ``--fd_samples`` samples (the digits
   classifier metric of ``metrics.json``) at ``--model_nfe`` for ``--model_solvers`` on the Karras
   grid (σ 0.002–80), next to EDM's Heun with 18 steps (35 NFE); for ``--model_learn`` a
   ``StepCorrection`` (one scale per weight) learned on ``--model_train_draws`` training noise draws
   against a ``--model_ref_steps``-step Heun solve of the model, then sampled from held-out noise. Every
   row also gives its error: the mean L2 distance to that Heun solve from the same held-out noise (the
   ODE's solution, whose FD is a row too).

Writes ``grids_optimised.md``, ``model_fd.md`` and ``results.json`` to ``--out``.
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
from absl import app, flags, logging  # noqa: E402

from jaxdiff import samplers, schedules  # noqa: E402
from jaxdiff.data.digits import load_digits  # noqa: E402
from jaxdiff.denoisers import ideal_denoiser  # noqa: E402
from jaxdiff.samplers.grids import learn_correction, optimise_sigmas, sample_error  # noqa: E402


def define_flags() -> None:
    flags.DEFINE_string("out", "/tmp/jaxdiff_bench_sampler_grids", "Output directory.")
    flags.DEFINE_list("solvers", ["unipc-3", "dpmpp_3m", "dpmpp_2m"], "Solvers to optimise a grid for.")
    flags.DEFINE_list("nfe", ["10"], "NFEs for every solver.")
    flags.DEFINE_list("extra_nfe", ["5", "20"], "Further NFEs, for the first solver only (empty to skip).")
    flags.DEFINE_list("learn", [], "Solvers (ipndm-*, deis-*, unipc-*) to learn a step correction for, at every "
                      "--nfe.")
    flags.DEFINE_list("corrections", ["step", "weight"], "Learned corrections: step (one direction scale per "
                      "step, AMED-Plugin's) and/or weight (one per Adams weight).")
    flags.DEFINE_list("train_seeds", ["100", "101"], "Noise seeds the grids and corrections are fitted on.")
    flags.DEFINE_list("heldout_seeds", [str(s) for s in range(1, 9)], "Noise seeds they are measured on.")
    flags.DEFINE_integer("steps", 150, "Adam steps per grid or correction.")
    flags.DEFINE_float("lr", 0.05, "Peak Adam learning rate.")
    flags.DEFINE_bool("warm_start", False, "Learn the corrections from the solver's optimised grid, not the "
                      "log-uniform one.")
    flags.DEFINE_float("correction_lr", 0.0, "Peak learning rate of the corrections (0: --lr).")
    flags.DEFINE_integer("correction_steps", 0, "Adam steps per correction (0: --steps).")
    flags.DEFINE_string("model_workdir", None, "Workdir of a trained digits run: measure its FD (part 2).")
    flags.DEFINE_list("model_nfe", ["5", "8", "10"], "NFEs for the trained model.")
    flags.DEFINE_list("model_solvers", ["unipc-3", "dpmpp_3m", "ipndm-4", "deis-3"],
                      "Solvers on the Karras grid for the trained model.")
    flags.DEFINE_list("model_learn", ["ipndm-3"], "Solvers to learn a step correction for on the trained model.")
    flags.DEFINE_integer("model_train_draws", 256, "Training noise draws for the model's corrections.")
    flags.DEFINE_integer("model_ref_steps", 500, "Heun steps of the model's reference solve.")
    flags.DEFINE_integer("model_steps", 100, "Adam steps per correction on the model.")
    flags.DEFINE_integer("fd_samples", 1000, "Samples per FD (held-out noise).")


FLAGS = flags.FLAGS

SIGMA_MIN, SIGMA_MAX, RHO, BATCH, REF_STEPS = 0.002, 80.0, 7.0, 256, 1000
LOG_UNIFORM_MINS = (0.1, 0.2, 0.4)
SOLVERS = {  # name -> (registered sampler, options); NFE = N steps, N - 1 with afs
    "unipc-3": ("unipc", {"order": 3}),
    "unipc-2": ("unipc", {"order": 2}),
    "dpmpp_3m": ("dpmpp_3m_sde", {"eta": 0.0, "key": jax.random.key(0)}),  # eta = 0: the noise is weighted 0
    "dpmpp_2m": ("dpmpp_2m", {}),
    "lms": ("lms", {}),
    "ipndm-4": ("ipndm", {"order": 4}),
    "ipndm-3": ("ipndm", {"order": 3}),
    "ipndm-3-afs": ("ipndm", {"order": 3, "afs": True}),
    "deis-3": ("deis", {"order": 3}),
    "deis-4": ("deis", {"order": 4}),
    "deis-3-afs": ("deis", {"order": 3, "afs": True}),
}


def solver(name):
    """(sampler function, options, steps for an NFE) of a ``SOLVERS`` entry."""
    registered, options = SOLVERS[name]
    afs = int(bool(options.get("afs", False)))
    return samplers.get(registered).fn, options, lambda nfe: nfe + afs


def karras(n, dtype=jnp.float64):
    return schedules.karras(n, SIGMA_MIN, SIGMA_MAX, RHO, dtype=dtype)


def log_uniform(n, sigma_min, dtype=jnp.float64):
    return schedules.exponential(n, sigma_min, SIGMA_MAX, dtype=dtype)


def draw(seed, shape=(BATCH, 64), dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * SIGMA_MAX, dtype)


@functools.lru_cache(maxsize=None)
def _jitted(name):
    fn, options, _ = solver(name)
    return jax.jit(lambda data, x, sigmas, correction: fn(ideal_denoiser(data), x, sigmas, **options,
                                                          **({"correction": correction} if correction else {})))


def errors(name, data, draws, sigmas, correction=None):
    """Error per draw of solver ``name`` on grid ``sigmas``: [float, ...] in ``draws``' order."""
    return [float(sample_error(_jitted(name)(data, x, sigmas, correction), ref)) for x, ref in draws]


def _fmt(errs):
    return f"{np.mean(errs):.3f} ({min(errs):.3f}–{max(errs):.3f})"


def pick_sigma_min(err_of_grid, steps):
    """The log-uniform σ_min in ``LOG_UNIFORM_MINS`` with the lowest training error."""
    return min(LOG_UNIFORM_MINS, key=lambda smin: err_of_grid(log_uniform(steps, smin)))


def ideal(train_seeds, heldout_seeds):
    """Part 1: rows per (solver, NFE, grid) on the ideal denoiser."""
    t_start = time.perf_counter()
    images, _ = load_digits("all")
    data = jnp.asarray(images.reshape(len(images), -1), jnp.float64)
    heun = jax.jit(lambda data, x: samplers.heun(ideal_denoiser(data), x, karras(REF_STEPS)))
    train = [(x, jax.block_until_ready(heun(data, x))) for x in map(draw, train_seeds)]
    heldout = [(x, jax.block_until_ready(heun(data, x))) for x in map(draw, heldout_seeds)]
    x_train = jnp.concatenate([x for x, _ in train])
    ref_train = jnp.concatenate([r for _, r in train])
    print(f"references ({len(train)} training + {len(heldout)} held-out draws) in "
          f"{time.perf_counter() - t_start:.0f}s", flush=True)

    nfes = [int(n) for n in FLAGS.nfe]
    runs = [(name, nfe) for nfe in nfes for name in FLAGS.solvers]
    runs += [(FLAGS.solvers[0], int(n)) for n in FLAGS.extra_nfe if int(n) not in nfes]
    runs += [(name, nfe) for nfe in nfes for name in FLAGS.learn if name not in FLAGS.solvers]
    rows = []
    for name, nfe in runs:
        t0 = time.perf_counter()
        fn, options, steps_for = solver(name)
        n = steps_for(nfe)
        smin = pick_sigma_min(lambda g: np.mean(errors(name, data, train, g)), n)
        init = log_uniform(n, smin)
        grids = {"karras (default)": (karras(n), None), f"log-uniform σmin={smin:g}": (init, None)}
        fits = {}
        if name in FLAGS.solvers or (name in FLAGS.learn and FLAGS.warm_start):
            sigmas, losses = optimise_sigmas(fn, ideal_denoiser(data), x_train, ref_train, init, steps=FLAGS.steps,
                                             lr=FLAGS.lr, return_losses=True, options=options)
            grids["optimised"], fits["optimised"] = (sigmas, None), losses
        if name in FLAGS.learn:
            start = grids["optimised"][0] if FLAGS.warm_start else init
            for kind in FLAGS.corrections:
                corr, losses = learn_correction(fn, ideal_denoiser(data), x_train, ref_train, start,
                                                steps=FLAGS.correction_steps or FLAGS.steps,
                                                lr=FLAGS.correction_lr or FLAGS.lr, per_weight=kind == "weight",
                                                return_losses=True, options=options)
                grids[f"learned correction ({kind})"], fits[f"learned correction ({kind})"] = (corr.sigmas, corr), losses
        for gname, (grid, corr) in grids.items():
            row = {"solver": name, "nfe": nfe, "grid": gname, "sigmas": np.asarray(grid).tolist(),
                   "heldout": errors(name, data, heldout, grid, corr)}
            if corr is not None:
                row.update(time_scale=np.asarray(corr.time_scale).tolist(), dir_scale=np.asarray(corr.dir_scale).tolist())
            if gname in fits:
                row.update(train_loss_init=float(fits[gname][0]), train_loss_best=float(fits[gname].min()))
            rows.append(row)
        print(f"{name} @ {nfe} NFE ({time.perf_counter() - t0:.0f}s): "
              + "; ".join(f"{r['grid']} {_fmt(r['heldout'])}" for r in rows[-len(grids):]), flush=True)

    lines = [f"Digits ideal denoiser, batch {BATCH}, float64, error vs 1000-step Heun. Grids and corrections fitted "
             f"on noise seeds {train_seeds} ({FLAGS.steps} Adam steps, lr {FLAGS.lr:g}, from the log-uniform grid "
             f"whose σmin in {list(LOG_UNIFORM_MINS)} is best on those seeds"
             + (f"; corrections from the optimised grid, lr {FLAGS.correction_lr or FLAGS.lr:g}" if FLAGS.warm_start
                else "") + f"); error: mean (min–max) over held-out seeds {heldout_seeds}.", "",
             "| solver | NFE | grid | held-out error | standard error | train loss | σ (nonzero levels) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        levels = ", ".join(f"{v:.3g}" for v in r["sigmas"][:-1])
        sig = "0.002–80, rho 7" if r["grid"] == "karras (default)" else levels
        train_loss = f"{r['train_loss_best']:.3f}" if "train_loss_best" in r else ""
        sem = np.std(r["heldout"], ddof=1) / np.sqrt(len(r["heldout"])) if len(r["heldout"]) > 1 else float("nan")
        lines.append(f"| {r['solver']} | {r['nfe']} | {r['grid']} | {_fmt(r['heldout'])} | {sem:.3f} | {train_loss} "
                     f"| {sig} |")
    lines += ["", f"Run time {time.perf_counter() - t_start:.0f}s on {os.cpu_count()} CPU cores."]
    with open(os.path.join(FLAGS.out, "grids_optimised.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return rows


def model(workdir):
    """Part 2: FD of the trained digits model at low NFE, default grids and learned corrections."""
    from experiments.bench.likelihood import restore_denoiser
    from jaxdiff import metrics

    t_start = time.perf_counter()
    den, step = restore_denoiser(workdir)
    n_fd, shape = FLAGS.fd_samples, (8, 8, 1)
    f32 = jnp.float32

    def sample(name, nfe, x, grid=None, correction=None):
        fn, options, steps_for = solver(name)
        sigmas = karras(steps_for(nfe), f32) if grid is None else grid
        extra = {"correction": correction} if correction is not None else {}
        return jax.jit(lambda x: fn(den, x, sigmas, **options, **extra))(x)

    def fd(samples):
        return float(metrics.digits_fd(np.clip(np.asarray(samples), -1.0, 1.0)))

    x_eval = draw(0, (n_fd, *shape), f32)  # held out: the corrections are fitted on seeds 100, 101, ...
    ref_steps = FLAGS.model_ref_steps
    ref_eval = jax.jit(lambda x: samplers.heun(den, x, karras(ref_steps, f32)))(x_eval)

    def row(sampler, nfe, samples, **extra):
        return {"sampler": sampler, "nfe": nfe, "fd": fd(samples), "error": float(sample_error(samples, ref_eval)),
                **extra}

    heun35 = jax.jit(lambda x: samplers.heun(den, x, karras(18, f32)))(x_eval)
    floor = metrics.digits_fd_reference(n_fd)["floor"]
    rows = [row("heun (Karras, 18 steps)", 35, heun35), row(f"heun (Karras, {ref_steps} steps)", 2 * ref_steps - 1,
                                                            ref_eval)]
    print(f"model step {step}: heun-35 FD {rows[0]['fd']:.3f}, the {2 * ref_steps - 1}-NFE reference's "
          f"{rows[1]['fd']:.3f} (floor {floor:.3f})", flush=True)
    x_train = jnp.concatenate([draw(100 + k, (BATCH, *shape), f32)
                               for k in range(-(-FLAGS.model_train_draws // BATCH))])[:FLAGS.model_train_draws]
    ref_train = jax.jit(lambda x: samplers.heun(den, x, karras(FLAGS.model_ref_steps, f32)))(x_train)
    for nfe in (int(n) for n in FLAGS.model_nfe):
        for name in FLAGS.model_solvers:
            rows.append(row(f"{name} (Karras)", nfe, sample(name, nfe, x_eval)))
            print(rows[-1], flush=True)
        for name in FLAGS.model_learn:
            t0 = time.perf_counter()
            fn, options, steps_for = solver(name)
            n = steps_for(nfe)
            smin = pick_sigma_min(lambda g: float(sample_error(sample(name, nfe, x_train, g), ref_train)), n)
            corr, losses = learn_correction(fn, den, x_train, ref_train, log_uniform(n, smin, f32),
                                            steps=FLAGS.model_steps, lr=FLAGS.lr, options=options, return_losses=True)
            rows.append(row(f"{name} + learned correction", nfe, sample(name, nfe, x_eval, corr.sigmas, corr),
                            train_loss_init=float(losses[0]), train_loss_best=float(losses.min()),
                            sigmas=np.asarray(corr.sigmas).tolist(), seconds=time.perf_counter() - t0))
            print(rows[-1], flush=True)
    base = rows[0]["fd"]
    lines = [f"Trained digits model ({workdir}, step {step}): FD of {n_fd} samples from held-out noise (seed 0) "
             f"against the test split (floor {floor:.3f}: real train digits at the same N). Learned corrections "
             f"(one scale per Adams weight, with the grid) fitted on {FLAGS.model_train_draws} training draws "
             f"(seeds 100+) against a {ref_steps}-step Heun solve, {FLAGS.model_steps} Adam steps. Error: mean L2 "
             f"distance to the {ref_steps}-step Heun solve from the same held-out noise.", "",
             "| sampler | NFE | FD | FD / Heun-35 | error |", "|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['nfe']} | {r['fd']:.3f} | {r['fd'] / base:.2f} | {r['error']:.4f} |"
              for r in rows]
    lines += ["", f"Run time {time.perf_counter() - t_start:.0f}s on {os.cpu_count()} CPU cores."]
    with open(os.path.join(FLAGS.out, "model_fd.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return {"step": step, "floor": floor, "rows": rows}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    os.makedirs(FLAGS.out, exist_ok=True)
    train_seeds = [int(s) for s in FLAGS.train_seeds]
    heldout_seeds = [int(s) for s in FLAGS.heldout_seeds]
    if set(train_seeds) & set(heldout_seeds):
        raise ValueError(f"train_seeds and heldout_seeds must be disjoint, got {train_seeds} and {heldout_seeds}")
    for name in FLAGS.solvers + FLAGS.learn + FLAGS.model_solvers + FLAGS.model_learn:
        if name not in SOLVERS:
            raise ValueError(f"unknown solver {name!r}; choose from {', '.join(SOLVERS)}")
    if "weight" in FLAGS.corrections and any(name.startswith("unipc") for name in FLAGS.learn):
        raise ValueError("--learn=unipc-* takes --corrections=step (UniPC has one direction scale per step)")
    results = {"train_seeds": train_seeds, "heldout_seeds": heldout_seeds, "steps": FLAGS.steps, "lr": FLAGS.lr}
    if FLAGS.solvers or FLAGS.learn:
        results["rows"] = ideal(train_seeds, heldout_seeds)
    if FLAGS.model_workdir:
        results["model"] = model(FLAGS.model_workdir)
    with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
