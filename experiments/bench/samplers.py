r"""Sampler benchmarks on scikit-learn digits with the ideal denoiser.

    python -m experiments.bench.samplers [--out=DIR] [--skip=error,anchors,grids,time,multistep_time]

1. Error vs NFE. All 1,797 digits scaled to [-1, 1] as 64-D vectors, their ideal denoiser,
   batch 256, float64, Karras grid σ 0.002–80 (rho 7). Deterministic samplers: mean L2
   distance to a 1000-step Heun solve of the probability-flow ODE from the same initial
   noise. Stochastic samplers (eta = 1, all discretising the same reverse SDE
   dx = 2 (x - D)/σ dσ + √(2σ) dW(σ)) draw their noise from one ``BrownianTreeNoise``
   on [0.002, 80] with the same key, and are measured against a 1000-step ``dpmpp_sde``
   solve on that same Brownian path (strong error); ``edm`` with churn is stochastic but
   not of that SDE, so it is listed against the ODE reference, for scale only, as is
   ``restart`` (Heun with two restarts from 0.06 to 0.3: NFE = 2N - 1 + 8). The ODE set
   includes DPM-Solver++(3M) (``dpmpp_3m_sde`` with eta = 0), UniPC, iPNDM and DEIS-tAB
   (``jaxdiff.samplers.multistep``). At σ = 0.002 the ideal denoiser snaps each
   sample onto a digit, so a sample's error is 0 or a distance between two digits and
   the batch mean is noisy: ``anchors`` re-measures the anchor points over noise seeds,
   next to k-diffusion on the same noise.
2. Other time grids at 10 NFE (rho, a larger last nonzero σ, log-uniform), chosen on one
   noise draw and re-measured on held-out draws.
3. Wall time at batch 256 of jaxdiff (jit, after compile), k-diffusion (torch CPU) and
   diffusers' Flax schedulers (Python loop over jitted model and step calls), next to NFE
   times one jitted denoiser call; with the ideal denoiser and with a cheap Gaussian one.
4. Wall time per sample of jaxdiff's multistep samplers at equal NFE (5 and 10), float32,
   batch 256, both denoisers: iPNDM and DEIS (plain, with ``afs``, with a ``StepCorrection``)
   next to DPM-Solver++(2M), (3M), UniPC-3 and LMS.

Writes ``error_vs_nfe.md``, ``error_vs_nfe.png``, ``anchors.md``, ``grids.md``, ``wall_time.md``,
``multistep_time.md`` and ``results.json`` to ``--out``.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import functools  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from jaxdiff import samplers, schedules  # noqa: E402
from jaxdiff.data.digits import load_digits  # noqa: E402
from jaxdiff.denoisers import ideal_denoiser  # noqa: E402
from jaxdiff.samplers.noise import BrownianTreeNoise  # noqa: E402


def define_flags() -> None:
    flags.DEFINE_string("out", "/tmp/jaxdiff_bench_samplers", "Output directory.")
    flags.DEFINE_list("skip", [], "Parts to skip: error, anchors, grids, time, multistep_time.")


FLAGS = flags.FLAGS

SIGMA_MIN, SIGMA_MAX, RHO, BATCH, REF_STEPS = 0.002, 80.0, 7.0, 256, 1000
ONE = (5, 6, 8, 10, 12, 15, 18, 20, 25, 35, 50, 70, 100)  # steps of 1-NFE/step samplers
TWO = (3, 4, 5, 6, 8, 10, 13, 18, 25, 35, 50)  # steps of 2-NFE/step samplers: NFE = 2N - 1

# row name -> (registered sampler, options, step counts); NFE from the registry's rule
ODE = {
    "euler": ("euler", {}, ONE),
    "heun": ("heun", {}, TWO),
    "dpm_2": ("dpm_2", {}, TWO),
    "lms": ("lms", {}, ONE),
    "dpmpp_2m": ("dpmpp_2m", {}, ONE),
    "dpmpp_3m (3m_sde eta=0)": ("dpmpp_3m_sde", {"eta": 0.0}, ONE),
    "unipc-2": ("unipc", {"order": 2}, ONE),
    "unipc-3": ("unipc", {"order": 3}, ONE),
    "ipndm-3": ("ipndm", {"order": 3}, ONE),
    "ipndm-4": ("ipndm", {"order": 4}, ONE),
    "deis-3 (tAB2)": ("deis", {"order": 3}, ONE),
    "deis-4 (tAB3)": ("deis", {"order": 4}, ONE),
}
SDE = {
    "euler_ancestral": ("euler_ancestral", {}, ONE),
    "dpmpp_2s_ancestral": ("dpmpp_2s_ancestral", {}, TWO),
    "dpmpp_sde": ("dpmpp_sde", {}, TWO),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}, ONE),
    "dpmpp_2m_sde (heun)": ("dpmpp_2m_sde", {"solver_type": "heun"}, ONE),
    "dpmpp_3m_sde": ("dpmpp_3m_sde", {}, ONE),
}
CHURN = {"edm (s_churn=10)": ("edm", {"s_churn": 10.0}, TWO), "restart (2 × 0.06 → 0.3)": ("restart", {}, TWO)}
ANCHORS = {  # measured earlier with k-diffusion on this setup (noise draw unknown): (sampler, NFE) -> error
    ("heun", 19): 0.344, ("heun", 35): 0.150, ("dpmpp_2m", 10): 0.650, ("dpmpp_2m", 18): 0.311,
    ("dpmpp_2m", 35): 0.053, ("dpm_2", 19): 0.288, ("lms", 10): 0.747, ("euler", 10): 1.09,
}


def setup(dtype=jnp.float64):
    images, _ = load_digits("all")
    data = jnp.asarray(images.reshape(len(images), -1), dtype)
    x0 = jnp.asarray(np.random.default_rng(0).standard_normal((BATCH, 64)) * SIGMA_MAX, dtype)
    return data, x0


def karras(n, sigma_min=SIGMA_MIN, rho=RHO, dtype=jnp.float64):
    return schedules.karras(n, sigma_min, SIGMA_MAX, rho, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _jitted(sampler, options):
    return jax.jit(lambda den_data, x, sigmas, key: sampler(ideal_denoiser(den_data), x, sigmas, **dict(options),
                                                                **({"key": key} if key is not None else {})))


def run(sampler, options, data, x, sigmas, key=None):
    """``sampler`` jitted on the ideal denoiser of ``data``; stochastic ones get ``key`` (default key 0)."""
    if key is None and not samplers.get(sampler.__name__).deterministic:
        key = jax.random.key(0)  # dpmpp_3m_sde with eta=0 draws (zero-weighted) noise all the same
    if sampler is samplers.restart:  # it places its restarts on the concrete grid
        return jax.jit(lambda data, x, key: sampler(ideal_denoiser(data), x, sigmas, key=key, **options))(data, x, key)
    return _jitted(sampler, tuple(sorted(options.items())))(data, x, sigmas, key)


def err(a, b):
    return float(jnp.mean(jnp.linalg.norm(a - b, axis=-1)))


def error_vs_nfe(out):
    data, x0 = setup()
    key = jax.random.key(1)
    tree = BrownianTreeNoise(SIGMA_MIN, SIGMA_MAX)
    t0 = time.perf_counter()
    ref_ode = run(samplers.heun, {}, data, x0, karras(REF_STEPS))
    ref_sde = run(samplers.dpmpp_sde, {"noise": tree}, data, x0, karras(REF_STEPS), key)
    check_sde = run(samplers.dpmpp_2m_sde, {"noise": tree}, data, x0, karras(REF_STEPS), key)
    check_ode = run(samplers.dpmpp_2m, {}, data, x0, karras(REF_STEPS))
    floors = {"ode": err(check_ode, ref_ode), "sde": err(check_sde, ref_sde)}
    print(f"references in {time.perf_counter() - t0:.1f}s; floors (1000-step dpmpp_2m / dpmpp_2m_sde vs "
          f"references): {floors}", flush=True)
    rows = []
    for group, table in (("ode", ODE), ("sde", SDE), ("churn", CHURN)):
        for name, (registered, options, steps) in table.items():
            spec = samplers.get(registered)
            opts = dict(options, noise=tree) if group == "sde" else dict(options)
            k = key if group != "ode" else None
            ref = ref_sde if group == "sde" else ref_ode
            for n in steps:
                e = err(run(spec.fn, opts, data, x0, karras(n), k), ref)
                rows.append({"sampler": name, "group": group, "steps": n, "nfe": spec.nfe(karras(n), **options),
                             "error": e})
            print(name, [(r["nfe"], round(r["error"], 4)) for r in rows if r["sampler"] == name], flush=True)
    anchors = []
    for (name, n), want in ANCHORS.items():
        got = next(r["error"] for r in rows if r["sampler"] == name and r["nfe"] == n)
        anchors.append({"sampler": name, "nfe": n, "k_diffusion": want, "jaxdiff": got})
    _write_error_table(out, rows, floors, anchors)
    _plot(out, rows)
    return {"rows": rows, "floors": floors, "anchors": anchors}


def _write_error_table(out, rows, floors, anchors):
    nfes = sorted({r["nfe"] for r in rows})
    names = list(dict.fromkeys(r["sampler"] for r in rows))
    lines = ["Mean L2 error vs NFE: digits (1797 × 64-D, [-1, 1]), ideal denoiser, batch 256, float64, "
             f"Karras σ {SIGMA_MIN}–{SIGMA_MAX} rho {RHO}.",
             f"ODE rows vs 1000-step Heun (floor {floors['ode']:.1e}); SDE rows (eta=1, one Brownian tree) vs "
             f"1000-step dpmpp_sde on the same path (floor {floors['sde']:.1e}); churn rows vs the ODE reference "
             "(not an ODE error).", "",
             "| sampler | " + " | ".join(str(n) for n in nfes) + " |",
             "|---|" + "---|" * len(nfes)]
    for name in names:
        by = {r["nfe"]: r["error"] for r in rows if r["sampler"] == name}
        lines.append(f"| {name} | " + " | ".join(f"{by[n]:.3g}" if n in by else "" for n in nfes) + " |")
    lines += ["", "Earlier k-diffusion anchors (another noise draw; see anchors.md for the same draw):", "",
              "| sampler | NFE | k-diffusion | jaxdiff |",
              "|---|---|---|---|"]
    lines += [f"| {a['sampler']} | {a['nfe']} | {a['k_diffusion']:.3g} | {a['jaxdiff']:.3g} |" for a in anchors]
    with open(os.path.join(out, "error_vs_nfe.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


FLOOR = 1e-3


def _plot(out, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, groups, title in ((axes[0], ("ode",), "ODE samplers vs 1000-step Heun"),
                              (axes[1], ("sde", "churn"), "Stochastic samplers (churn: vs ODE ref)")):
        for name in dict.fromkeys(r["sampler"] for r in rows if r["group"] in groups):
            rs = [r for r in rows if r["sampler"] == name]
            ax.loglog([r["nfe"] for r in rs], [max(r["error"], FLOOR) for r in rs], "o-", ms=3, label=name)
        ax.axhline(0.150, color="gray", ls=":", lw=1)
        ax.set_ylim(0.7 * FLOOR, 10)
        ax.set_xlabel("NFE")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"mean L2 error (< {FLOOR:g} drawn at {FLOOR:g})")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "error_vs_nfe.png"), dpi=120)
    plt.close(fig)


def grids(out, top=6, heldout=(1, 2, 3)):
    """10 NFE: multistep samplers over other time discretisations (same ODE reference).

    The grid is chosen on the seed-0 batch; the best ``top`` are re-measured on fresh noise
    draws (``heldout`` seeds), so the reported choice is not fitted to one batch."""
    data, x0 = setup()
    ref = run(samplers.heun, {}, data, x0, karras(REF_STEPS))
    cands = {"dpmpp_2m": (samplers.dpmpp_2m, {}), "dpmpp_3m": (samplers.dpmpp_3m_sde, {"eta": 0.0}),
             "unipc-2": (samplers.unipc, {"order": 2}), "unipc-3": (samplers.unipc, {"order": 3})}
    grid_fns = {f"karras rho={rho:g} σmin={smin:g}": functools.partial(karras, sigma_min=smin, rho=rho)
                for rho in (3.0, 5.0, 7.0, 10.0) for smin in (0.002, 0.03, 0.1, 0.2, 0.4)}
    grid_fns.update({f"log-uniform σmin={smin:g}": functools.partial(
        schedules.exponential, sigma_min=smin, sigma_max=SIGMA_MAX, dtype=jnp.float64)
        for smin in (0.002, 0.1, 0.2, 0.4)})
    rows = []
    for sname, (sampler, opts) in cands.items():
        for gname, grid in grid_fns.items():
            e = err(run(sampler, opts, data, x0, grid(10)), ref)
            rows.append({"sampler": sname, "nfe": 10, "grid": gname, "error": e})
    rows.sort(key=lambda r: r["error"])
    refs = {}
    for seed in heldout:
        xs = jnp.asarray(np.random.default_rng(seed).standard_normal((BATCH, 64)) * SIGMA_MAX)
        refs[seed] = (xs, run(samplers.heun, {}, data, xs, karras(REF_STEPS)))
    baseline = {"sampler": "dpmpp_2m", "grid": "karras rho=7 σmin=0.002"}
    for r in rows[:top] + [next(r for r in rows if r["sampler"] == baseline["sampler"]
                                and r["grid"] == baseline["grid"])]:
        sampler, opts = cands[r["sampler"]]
        r["heldout"] = [err(run(sampler, opts, data, xs, grid_fns[r["grid"]](10)), rf) for xs, rf in refs.values()]
    lines = ["10 NFE over other time grids (σmax = 80, ending in 0), error vs 1000-step Heun on Karras 0.002–80. "
             f"Seed-0 batch (selection), then the top {top} and the default on held-out noise seeds {list(heldout)}.",
             "", "| sampler | grid | seed 0 | held-out seeds (mean) |", "|---|---|---|---|"]
    for r in rows:
        h = f"{np.mean(r['heldout']):.3g} ({', '.join(f'{v:.3g}' for v in r['heldout'])})" if "heldout" in r else ""
        lines.append(f"| {r['sampler']} | {r['grid']} | {r['error']:.3g} | {h} |")
    with open(os.path.join(out, "grids.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:4 + top]), flush=True)
    return rows


def anchors(out, seeds=(0, 1, 2, 3)):
    """k-diffusion vs jaxdiff on the same initial noise at the anchor points, over several noise seeds.

    The error is quantised: at σ = 0.002 the ideal denoiser snaps every sample onto a digit, so
    a sample's error is 0 or the distance between two digits, and a batch of 256 gives a noisy
    mean; the seed spread says how far the anchors can move with the draw alone."""
    import torch

    kd = _load_kdiffusion()
    data, _ = setup()
    yt = torch.from_numpy(np.asarray(data))
    half = 0.5 * (yt * yt).sum(1)

    def torch_model(x, sigma):
        return torch.softmax((x @ yt.T - half) / sigma[:, None] ** 2, dim=1) @ yt

    steps = {"heun": lambda n: (n + 1) // 2, "dpm_2": lambda n: (n + 1) // 2}
    rows = []
    for seed in seeds:
        x0 = jnp.asarray(np.random.default_rng(seed).standard_normal((BATCH, 64)) * SIGMA_MAX)
        ref = run(samplers.heun, {}, data, x0, karras(REF_STEPS))
        for name, nfe in ANCHORS:
            n = steps.get(name, lambda n: n)(nfe)
            ours = run(getattr(samplers, name), {}, data, x0, karras(n))
            with torch.no_grad():
                theirs = getattr(kd, f"sample_{name}")(torch_model, torch.from_numpy(np.asarray(x0)),
                                                       torch.from_numpy(np.asarray(karras(n))), disable=True)
            rows.append({"seed": seed, "sampler": name, "nfe": nfe, "jaxdiff": err(ours, ref),
                         "k_diffusion": err(jnp.asarray(theirs.numpy()), ref),
                         "max_abs_diff": float(jnp.abs(ours - jnp.asarray(theirs.numpy())).max())})
        print(f"seed {seed}:", [(r["sampler"], r["nfe"], round(r["jaxdiff"], 3)) for r in rows if r["seed"] == seed],
              flush=True)
    lines = [f"Anchors: mean L2 error on the same initial noise, jaxdiff vs k-diffusion (float64), noise seeds "
             f"{list(seeds)} (numpy default_rng(seed) · 80); seed 0 is the error-vs-NFE table's draw.", "",
             "| sampler | NFE | earlier k-diffusion anchor | seed-0 jaxdiff | seed-0 k-diffusion | "
             "mean ± sd over seeds (jaxdiff) | max abs jaxdiff − k-diffusion |", "|---|---|---|---|---|---|---|"]
    for (name, nfe), want in ANCHORS.items():
        rs = [r for r in rows if r["sampler"] == name and r["nfe"] == nfe]
        e = np.array([r["jaxdiff"] for r in rs])
        lines.append(f"| {name} | {nfe} | {want:.3g} | {rs[0]['jaxdiff']:.3g} | {rs[0]['k_diffusion']:.3g} | "
                     f"{e.mean():.3g} ± {e.std(ddof=1):.2g} | {max(r['max_abs_diff'] for r in rs):.1e} |")
    with open(os.path.join(out, "anchors.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return rows


def _best_time(fn, repeats=7):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _load_kdiffusion():
    """``k_diffusion/sampling.py`` alone, with a stand-in ``k_diffusion.utils`` (the package imports training deps)."""
    spec = importlib.util.find_spec("k_diffusion")
    path = f"{spec.submodule_search_locations[0]}/sampling.py"
    pkg, utils = types.ModuleType("_kd"), types.ModuleType("_kd.utils")
    pkg.__path__ = []
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    pkg.utils = utils
    sys.modules.update({"_kd": pkg, "_kd.utils": utils})
    module_spec = importlib.util.spec_from_file_location("_kd.sampling", path)
    sampling = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(sampling)
    return sampling


def _diffusers_loop(scheduler_cls, den, x0, steps, dtype, **config):
    """diffusers' Flax scheduler with a Python loop over jitted model/step calls (epsilon prediction).

    The denoiser ``den`` in VP form: x_vp = √ᾱ (y + σ n), ε̂ = (x_vp/√ᾱ - D(x_vp/√ᾱ; σ))/σ."""
    sched = scheduler_cls.from_config({"num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
                                       "beta_start": 0.00085, "beta_end": 0.012, **config}, dtype=dtype)
    state = sched.create_state()
    state = sched.set_timesteps(state, steps, x0.shape)
    ab = state.common.alphas_cumprod

    @jax.jit
    def eps(x, t):
        a = jnp.interp(t, jnp.arange(ab.shape[0]), ab)  # Euler's timesteps are fractional
        s = jnp.sqrt((1 - a) / a)
        scaled = x / jnp.sqrt(a)
        return (scaled - den(scaled, s)) / s

    @jax.jit
    def scale(state, x, t):
        return sched.scale_model_input(state, x, t)

    step = jax.jit(lambda state, e, t, x: sched.step(state, e, t, x, return_dict=False))
    init_sigma = getattr(state, "init_noise_sigma", 1.0)
    x_init = x0.astype(dtype) / SIGMA_MAX * init_sigma

    def sample():
        s, x = state, x_init
        for t in s.timesteps:
            e = eps(scale(s, x, t), t)
            x, s = step(s, e, t, x)
        return jax.block_until_ready(x)

    return sample


def _diffusers_time(scheduler_cls, den, x0, steps, dtype, **config):
    """Best time of the diffusers loop, with x64 on only for float64 (NaN where the scheduler fails under it)."""
    with jax.enable_x64(dtype == jnp.float64):
        try:
            return _best_time(_diffusers_loop(scheduler_cls, den, x0, steps, dtype, **config))
        except TypeError as e:  # FlaxDPMSolverMultistep's step mixes int32/int64 under x64
            print(f"{scheduler_cls.__name__} {jnp.dtype(dtype)}: {e}", flush=True)
            return float("nan")


def _denoisers(data64, dtype, tdtype):
    """``{name: (jax denoiser, torch denoiser)}``: the digits' ideal denoiser and, as a cheap
    model whose cost leaves the samplers' own overhead visible, the exact denoiser of the
    Gaussian with the digits' per-pixel mean and variance."""
    import torch

    from jaxdiff.denoisers import gaussian_denoiser

    y = torch.from_numpy(np.asarray(data64)).to(tdtype)
    half = 0.5 * (y * y).sum(1)
    mean, var = data64.mean(0), data64.var(0)
    m, v = torch.from_numpy(np.asarray(mean)).to(tdtype), torch.from_numpy(np.asarray(var)).to(tdtype)
    return {
        "ideal (1797 digits)": (ideal_denoiser(data64.astype(dtype)),
                                lambda x, s: torch.softmax((x @ y.T - half) / s[:, None] ** 2, dim=1) @ y),
        "Gaussian (diagonal)": (gaussian_denoiser(mean.astype(dtype), var=var.astype(dtype)),
                                lambda x, s: m + v / (v + s[:, None] ** 2) * (x - m)),
    }


def wall_time(out):
    import torch

    from diffusers import FlaxDPMSolverMultistepScheduler, FlaxEulerDiscreteScheduler

    torch.set_num_threads(os.cpu_count())
    kd = _load_kdiffusion()
    data64, x64_ = setup()
    rows = []
    for dtype, tdtype, tag in ((jnp.float32, torch.float32, "float32"), (jnp.float64, torch.float64, "float64")):
        x0 = x64_.astype(dtype)
        xt = torch.from_numpy(np.asarray(x64_)).to(tdtype)
        for model, (den, torch_den) in _denoisers(data64, dtype, tdtype).items():
            call = jax.jit(den)
            one = _best_time(lambda: call(x0, jnp.asarray(1.0, dtype)).block_until_ready(), repeats=21)
            for name, steps, nfe in (("heun", 18, 35), ("dpmpp_2m", 10, 10)):
                sig = karras(steps, dtype=dtype)
                fn = getattr(samplers, name)
                f = jax.jit(lambda x, s, fn=fn, den=den: fn(den, x, s))
                t_jax = _best_time(lambda: f(x0, sig).block_until_ready())
                sig_t = torch.from_numpy(np.asarray(karras(steps))).to(tdtype)
                kfn = getattr(kd, f"sample_{name}")
                with torch.no_grad():
                    t_kd = _best_time(lambda: kfn(torch_den, xt, sig_t, disable=True))
                if name == "heun":
                    which = "FlaxEulerDiscrete, 35 steps"
                    t_df = _diffusers_time(FlaxEulerDiscreteScheduler, den, x64_, 35, dtype)
                else:
                    which = "FlaxDPMSolverMultistep (dpmsolver++, order 2), 10 steps"
                    t_df = _diffusers_time(FlaxDPMSolverMultistepScheduler, den, x64_, 10, dtype,
                                           algorithm_type="dpmsolver++", solver_order=2)
                rows.append({"dtype": tag, "denoiser": model, "sampler": name, "nfe": nfe, "jaxdiff": t_jax,
                             "k-diffusion": t_kd, "diffusers": t_df, "diffusers_scheduler": which,
                             "calls": nfe * one})
                print(rows[-1], flush=True)
    lines = [f"Wall time, batch {BATCH}, best of 7 after warm-up, {os.cpu_count()} CPU cores (shared). "
             "NFE × call: NFE times one jitted denoiser call from Python, the least a Python loop over "
             "that denoiser can take (a fused loop skips the per-call dispatch).", "",
             "| dtype | denoiser | sampler, NFE | NFE × call | jaxdiff (jit) | k-diffusion (torch) | "
             "diffusers Flax (Python loop) | jaxdiff / (NFE × call) | jaxdiff / k-diffusion | jaxdiff / diffusers |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dtype']} | {r['denoiser']} | {r['sampler']}, {r['nfe']} | {r['calls'] * 1e3:.1f} ms | "
                     f"{r['jaxdiff'] * 1e3:.1f} ms | {r['k-diffusion'] * 1e3:.1f} ms | "
                     f"{r['diffusers'] * 1e3:.1f} ms ({r['diffusers_scheduler']}) | {r['jaxdiff'] / r['calls']:.2f}× | "
                     f"{r['jaxdiff'] / r['k-diffusion']:.2f}× | {r['jaxdiff'] / r['diffusers']:.2f}× |")
    with open(os.path.join(out, "wall_time.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return rows


MULTISTEP = {  # label -> (registered sampler, options, steps for an NFE); existing ones first
    "dpmpp_2m": ("dpmpp_2m", {}, 0),
    "dpmpp_3m (3m_sde eta=0)": ("dpmpp_3m_sde", {"eta": 0.0}, 0),
    "unipc-3": ("unipc", {"order": 3}, 0),
    "lms": ("lms", {}, 0),
    "ipndm-4": ("ipndm", {"order": 4}, 0),
    "deis-3": ("deis", {"order": 3}, 0),
    "ipndm-3 + StepCorrection (per weight)": ("ipndm", {"order": 3, "correction": "identity"}, 0),
    "deis-3 + afs": ("deis", {"order": 3, "afs": True}, 1),
}
EXISTING = ("dpmpp_2m", "dpmpp_3m (3m_sde eta=0)", "unipc-3", "lms")


def multistep_time(out, nfes=(5, 10)):
    """Per-sample wall time of the multistep samplers at equal NFE (float32, batch 256, after compile)."""
    from jaxdiff.denoisers import gaussian_denoiser

    data, x0 = setup(jnp.float32)
    denoisers = {"ideal (1797 digits)": ideal_denoiser(data),
                 "Gaussian (diagonal)": gaussian_denoiser(data.mean(0), var=data.var(0))}
    rows = []
    for model, den in denoisers.items():
        for nfe in nfes:
            for label, (name, options, extra) in MULTISTEP.items():
                sig = karras(nfe + extra, dtype=jnp.float32)
                opts = dict(options)
                if opts.get("correction") == "identity":
                    opts["correction"] = samplers.StepCorrection.identity(sig, opts["order"])
                spec = samplers.get(name)
                assert spec.nfe(sig, **opts) == nfe
                f = jax.jit(lambda x, s, spec=spec, den=den, opts=opts: spec.fn(den, x, s, key=jax.random.key(0), **opts))
                t = _best_time(lambda: f(x0, sig).block_until_ready(), repeats=15)
                rows.append({"denoiser": model, "nfe": nfe, "sampler": label, "seconds": t, "per_sample_us": t / BATCH * 1e6})
                print(rows[-1], flush=True)
    lines = [f"Wall time per sample at equal NFE, float32, batch {BATCH}, best of 15 after compile, {os.cpu_count()} CPU "
             "cores; ratios to the median and to the fastest of the existing multistep samplers (dpmpp_2m, dpmpp_3m, "
             "unipc-3, lms) at that NFE and denoiser.", "",
             "| denoiser | NFE | sampler | µs / sample | / median existing | / fastest existing |", "|---|---|---|---|---|---|"]
    for r in rows:
        same = [q["seconds"] for q in rows if q["denoiser"] == r["denoiser"] and q["nfe"] == r["nfe"]
                and q["sampler"] in EXISTING]
        r["ratio_median"], r["ratio_fastest"] = r["seconds"] / np.median(same), r["seconds"] / min(same)
        lines.append(f"| {r['denoiser']} | {r['nfe']} | {r['sampler']} | {r['per_sample_us']:.2f} | "
                     f"{r['ratio_median']:.2f} | {r['ratio_fastest']:.2f} |")
    with open(os.path.join(out, "multistep_time.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return rows


def main(argv):
    del argv
    os.makedirs(FLAGS.out, exist_ok=True)
    path = os.path.join(FLAGS.out, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    if "error" not in FLAGS.skip:
        results["error_vs_nfe"] = error_vs_nfe(FLAGS.out)
    if "anchors" not in FLAGS.skip:
        results["anchors"] = anchors(FLAGS.out)
    if "grids" not in FLAGS.skip:
        results["grids"] = grids(FLAGS.out)
    if "time" not in FLAGS.skip:
        results["wall_time"] = wall_time(FLAGS.out)
    if "multistep_time" not in FLAGS.skip:
        results["multistep_time"] = multistep_time(FLAGS.out)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
