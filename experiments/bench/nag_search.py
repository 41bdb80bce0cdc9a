r"""DiffusionNAG on the digits property table: unguided and guided generation, search efficiency
against random search and regularised evolution, and guidance by another property without retraining.

    python -m experiments.run --config=experiments/configs/nag.py --workdir=workdir/nag
    flock /tmp/jaxdiff-bench.lock python -m experiments.bench.nag_search --workdir=workdir/nag --out=workdir/nag_search
    python -m experiments.bench.nag_search --sections=unguided,swap --fit_steps=500  # no table needed

1. Restores the score model's EMA parameters from the runner's ``--workdir``.
2. Unguided generation: ``--samples`` cells (validity, uniqueness, novelty, operation statistics, mean
   parameters and FLOPs, and with a table their accuracy).
3. Predictor swap (``swap``): predictors of the skeleton's parameter count and FLOPs (exact formulas, every
   unique cell; ``--n_train`` random cells train each) guide the same score model toward the space's
   smallest and largest value at the last of ``--scales``.
4. Guided generation (``guided``, reads the property table of ``python -m experiments.bench.nb201_digits``):
   a predictor of validation accuracy on noisy cells, trained on ``--n_train`` random table cells, guides
   ``--samples`` cells toward the table's best accuracy at each of ``--scales``: mean and top-5 accuracy of
   the distinct generated cells, next to random cells and the table.
5. Search (``search``, reads the table): ``--seeds`` searches each of random search, REA (population 20,
   tournament 5), ranking random cells by the predictor, and guided generation (``jaxdiff.nag.search``),
   each predictor retrained on the cells evaluated so far; with ``--prior`` (a zero-cost column of the
   table, known for every cell without training it: ``params`` or ``flops``) also the ranking by that proxy
   alone and both model-based searches with the predictor pretrained on it; ``--methods`` picks the
   model-based ones; ``--candidates`` cells are proposed per round, and ``--guidance`` picks the guided
   search's log-likelihood (a Gaussian around the target, or the probability of improving on the best
   value found plus ``--margin`` standard deviations). Evaluations to the first top-1% cell and to the
   best cell; ``search.png`` plots the median best-found accuracy against evaluations.

Writes ``results.json`` and ``search.png`` under ``--out``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
MODEL_METHODS = ("predictor ranking", "guided generation", "predictor ranking + prior", "guided generation + prior")


def define_flags() -> None:
    flags.DEFINE_string("workdir", "workdir/nag", "The score model's runner workdir.")
    flags.DEFINE_string("table", None, "Property table (default: jaxdiff.nag.table.DEFAULT_PATH).")
    flags.DEFINE_string("out", "workdir/nag_search", "Where results.json and search.png go.")
    flags.DEFINE_integer("samples", 100, "Cells generated per setting.")
    flags.DEFINE_integer("n_train", 500, "Table cells the generation predictors are trained on.")
    flags.DEFINE_list("scales", ["0", "1", "2", "4"], "Guidance weights for generation (0: unguided).")
    flags.DEFINE_integer("seeds", 20, "Searches per method.")
    flags.DEFINE_integer("budget", 100, "Evaluations of the model-based searches.")
    flags.DEFINE_integer("baseline_budget", 3000, "Evaluations of random search and REA.")
    flags.DEFINE_integer("n_init", 10, "Random cells a model-based search evaluates first.")
    flags.DEFINE_integer("per_round", 10, "Cells a model-based search evaluates per round.")
    flags.DEFINE_float("search_scale", 1.0, "Guidance weight of the guided search.")
    flags.DEFINE_float("prior_scale", None, "Guidance weight of the prior searches' first round (default: "
                       "--search_scale; 0: unguided proposals ranked by the pretrained predictor).")
    flags.DEFINE_enum("guidance", "target", ["target", "improvement"], "The guided search's guidance: the Gaussian "
                      "likelihood of the target, or the probability of exceeding it.")
    flags.DEFINE_integer("candidates", 128, "Cells a model-based search proposes per round (generated or random).")
    flags.DEFINE_float("margin", 1.0, "Guidance target: the best value found plus this many standard deviations.")
    flags.DEFINE_string("prior", "params", "Zero-cost table column (params, flops) the prior searches start from; "
                        "empty: none.")
    flags.DEFINE_list("methods", list(MODEL_METHODS), f"Model-based searches to run: {', '.join(MODEL_METHODS)} "
                      "(the prior ones need --prior).")
    flags.DEFINE_list("sections", ["unguided", "swap", "guided", "search"],
                      "What to run; guided and search read the property table, unguided and swap do not.")
    flags.DEFINE_integer("channels", 8, "The skeleton's channels for parameters and FLOPs without a table.")
    flags.DEFINE_integer("fit_steps", 1000, "Training steps of the generation predictors.")


def load_model(workdir: str):
    """The runner's nag run -> (config, denoiser D(x, sigma), process, train classes)."""
    import jax
    import ml_collections

    from experiments import checks
    from experiments.tasks import nag
    from jaxdiff.train import Checkpointer, create_train_state, make_optimizer

    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    module = nag.build_network(config)
    denoiser, _ = nag.build_denoiser(config, module)
    params = module.init(jax.random.key(0), jax.numpy.zeros((1, 8, 7)), jax.numpy.zeros((1,)))["params"]
    state = create_train_state(params, make_optimizer(checks.optim_config(config)), jax.random.key(0))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    state = ckpt.restore(state)
    ckpt.close()
    print(f"restored the score model from {workdir} at step {int(state.step)}", flush=True)
    return config, denoiser(state.ema_params), nag.process(config), nag.split(config.data.train_fraction, config.seed)[0]


def accuracy_stats(table, cells, valid) -> dict:
    """Validation accuracy of the valid generated cells' distinct classes: mean and top-5."""
    cells = cells[valid]
    if not len(cells):
        return {"distinct": 0}
    rows = np.unique(table.rows(cells))
    top = np.sort(table.values("val_acc")[rows])[::-1]
    return {"distinct": len(rows), "mean_acc": float(top.mean()), "top5_acc": float(top[:5].mean()),
            "best_acc": float(top[0])}


def size_stats(cells, valid, channels: int) -> dict:
    """Distinct classes, mean parameters and FLOPs of the skeleton with the valid cells."""
    from jaxdiff.nag.skeleton import count_flops, count_params
    from jaxdiff.nag.space import unique_index

    ok = cells[valid]
    return {"distinct": len(np.unique(unique_index(ok))), "mean_params": float(count_params(ok, channels).mean()),
            "mean_flops": float(count_flops(ok, channels).mean())}


def main(_):
    import jax

    from jaxdiff.nag import metrics, model, nets, search
    from jaxdiff.nag.skeleton import count_flops, count_params
    from jaxdiff.nag.space import unique_cells
    from jaxdiff.nag.table import load_table

    sections = set(FLAGS.sections)
    if set(FLAGS.methods) - set(MODEL_METHODS):
        raise app.UsageError(f"--methods: unknown {sorted(set(FLAGS.methods) - set(MODEL_METHODS))}; "
                             f"choose from {', '.join(MODEL_METHODS)}")
    if FLAGS.prior not in ("", "params", "flops"):
        raise app.UsageError(f"--prior must be params, flops or empty, got {FLAGS.prior!r}")
    os.makedirs(FLAGS.out, exist_ok=True)
    t_start = time.perf_counter()
    config, denoiser, process, train_classes = load_model(FLAGS.workdir)
    sample_kw = dict(process=process, num_steps=config.sde.num_steps, n_corrector=config.sde.n_corrector,
                     snr=config.sde.snr)
    all_cells = unique_cells().astype(np.int64)
    rng = np.random.default_rng(0)
    results = {}
    table = load_table(FLAGS.table) if sections & {"guided", "search"} else None
    channels = table.info["skeleton"]["channels"] if table is not None else FLAGS.channels
    module = nets.PropertyPredictor()

    def guided_draws(cells, prop, target, scales) -> dict:
        """A predictor of ``prop`` (on ``--n_train`` random ``cells``) guides ``--samples`` cells toward
        ``target`` at each scale -> {scale: (cells, valid)}."""
        rows = rng.choice(len(cells), FLAGS.n_train, replace=False)
        pred, params, _ = model.fit_predictor(module, cells[rows], prop[rows], jax.random.key(1), steps=FLAGS.fit_steps,
                                              sigma_min=process.sigma_min, sigma_max=process.sigma_max)
        draw = jax.jit(lambda k, tgt, scale: model.sample(
            denoiser, k, FLAGS.samples, log_prob=model.target_log_prob(lambda x, s: pred(params, x, s), tgt,
                                                                       float(prop[rows].std())),
            scale=scale, **sample_kw))
        return {(float(t), float(sc)): model.to_cells(draw(jax.random.key(2), float(t), float(sc)))
                for t in np.atleast_1d(target) for sc in scales}

    # 1. unguided generation
    t0 = time.perf_counter()
    got, valid = model.to_cells(jax.jit(lambda k: model.sample(denoiser, k, FLAGS.samples, **sample_kw))(
        jax.random.key(0)))
    unguided = metrics.generation_metrics(got, valid, train_classes, all_cells[train_classes])
    unguided.update(size_stats(got, valid, channels), seconds=round(time.perf_counter() - t0, 1))
    if table is not None:
        unguided.update(accuracy_stats(table, got, valid))
    results["unguided"] = unguided
    print("unguided:", {k: v for k, v in unguided.items() if k != "op_frequencies"}, flush=True)

    # 4. the predictor swap: the same score model guided by parameters or FLOPs (exact for every cell)
    if "swap" in sections:
        results["swap"] = {"channels": channels, "scale": float(FLAGS.scales[-1])}
        for name, fn in (("params", count_params), ("flops", count_flops)):
            prop = fn(all_cells, channels).astype(np.float64)
            lo, hi = prop.min(), prop.max()
            draws = guided_draws(all_cells, prop, [lo, hi], [FLAGS.scales[-1]])
            r = {"space_mean": float(prop.mean()), "space_min": float(lo), "space_max": float(hi)}
            for (tgt, _), (c, v) in draws.items():
                r["toward " + ("min" if tgt == lo else "max")] = dict(size_stats(c, v, channels), validity=float(v.mean()))
            results["swap"][name] = r
            print(f"guided by {name}: {r}", flush=True)

    if table is not None:
        cells = table.cells
        values = table.values("val_acc")
        n = len(values)
        order = np.sort(values)[::-1]
        top1, best = order[int(np.ceil(0.01 * n)) - 1], order[0]
        results["table"] = {"cells": n, "mean_acc": float(values.mean()), "top1pct_threshold": float(top1),
                            "best_acc": float(best), **{k: table.info.get(k) for k in (
                                "skeleton", "seeds", "build_seconds", "seed_spearman_val", "spearman_val_params")}}
        rand = rng.choice(n, FLAGS.samples, replace=False)
        results["random cells"] = accuracy_stats(table, cells[rand], np.ones(len(rand), bool))

    # 2. guided generation toward the table's best accuracy
    if "guided" in sections:
        draws = guided_draws(cells, values, table.check_target("val_acc", best), FLAGS.scales)
        results["guided"] = {f"scale {sc:g}": dict(accuracy_stats(table, c, v), validity=float(v.mean()),
                                                   **size_stats(c, v, channels))
                             for (_, sc), (c, v) in draws.items()}
        print("guided by accuracy:", results["guided"], flush=True)

    # 3. search efficiency
    if "search" in sections:
        seeds = list(range(FLAGS.seeds))
        histories = {
            "random search": [search.random_search(n, np.random.default_rng(s), FLAGS.baseline_budget) for s in seeds],
            "REA": [search.regularized_evolution(table, values, np.random.default_rng(s), FLAGS.baseline_budget)
                    for s in seeds],
        }
        prior = table.values(FLAGS.prior) if FLAGS.prior else None
        if prior is not None:
            histories[f"ranking by {FLAGS.prior} (zero cost)"] = [
                search.proxy_search(prior, np.random.default_rng(s), FLAGS.baseline_budget) for s in seeds]
        settings = search.ModelSearch(n_init=FLAGS.n_init, per_round=FLAGS.per_round, budget=FLAGS.budget,
                                      scale=FLAGS.search_scale, prior_scale=FLAGS.prior_scale,
                                      margin=FLAGS.margin, guidance=FLAGS.guidance, candidates=FLAGS.candidates,
                                      num_steps=config.sde.num_steps)
        search_module = nets.PropertyPredictor(hidden=32, depth=2, num_heads=2)
        guided = dict(denoiser=denoiser, process=process)
        kinds = {"predictor ranking": {}, "guided generation": guided,
                 "predictor ranking + prior": dict(prior=prior), "guided generation + prior": dict(guided, prior=prior)}
        for name in FLAGS.methods:
            kw = kinds[name]
            if "prior" in kw and prior is None:
                raise app.UsageError(f"--methods: {name!r} needs --prior")
            t0 = time.perf_counter()
            histories[name] = list(search.model_search(table, values, seeds, search_module, settings, **kw))
            print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        summary = {}
        for name, hs in histories.items():
            to_top = np.array([search.evaluations_to_reach(values[h], top1) for h in hs])
            to_best = np.array([search.evaluations_to_reach(values[h], best) for h in hs])
            summary[name] = {"budget": len(hs[0]), "top1pct_median_evals": float(np.median(to_top)),
                             "top1pct_mean_evals": float(np.mean(to_top)),
                             "top1pct_found": float(np.isfinite(to_top).mean()),
                             "best_median_evals": float(np.median(to_best)),
                             "best_found": float(np.isfinite(to_best).mean()),
                             "best_acc_at_budget_median": float(np.median([values[h[:FLAGS.budget]].max() for h in hs])),
                             "top1pct_evals": to_top.tolist()}
            print(name, {k: v for k, v in summary[name].items() if k != "top1pct_evals"}, flush=True)
        results["search"] = {"seeds": len(seeds), "settings": dataclasses.asdict(settings), "prior": FLAGS.prior,
                             "methods": summary}
        plot(histories, values, top1, os.path.join(FLAGS.out, "search.png"))
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps({k: v for k, v in results.items() if k != "unguided"}, indent=2))


def plot(histories: dict, values, top1: float, path: str, limit: int = 300) -> None:
    """Median (and quartiles) over seeds of the best accuracy found against evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hs in histories.items():
        k = min(limit, min(len(h) for h in hs))
        curves = np.stack([np.maximum.accumulate(values[h[:k]]) for h in hs])
        q = np.quantile(curves, [0.25, 0.5, 0.75], axis=0)
        ax.plot(np.arange(1, k + 1), q[1], label=name)
        ax.fill_between(np.arange(1, k + 1), q[0], q[2], alpha=0.2)
    ax.axhline(top1, color="gray", ls="--", lw=1, label="top 1%")
    ax.set(xscale="log", xlabel="architectures evaluated", ylabel="best validation accuracy found",
           ylim=(np.quantile(values, 0.5), values.max() + 0.005))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    define_flags()
    app.run(main)
