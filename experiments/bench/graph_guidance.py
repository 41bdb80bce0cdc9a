r"""Predictor guidance (DiGress regressor guidance) of an unconditional QM9 model towards logP targets.

    python -m experiments.bench.graph_guidance [--model=graph_dit --train_seconds=480 --samples=1000 \
        --scales=0,2,4,8,16 --out=/tmp/graph_guidance]

1. Trains :class:`jaxdiff.graphs.guidance.PropertyPredictor` on forward-noised QM9 training graphs
   (``t ~ U{1..T}``, the diffusion model's marginal transition and T) to regress standardised Crippen
   logP, for ``--train_seconds`` (cosine learning-rate decay over that time) or ``--train_steps``; the
   parameters are saved to ``--out/predictor.msgpack`` and reused on the next run (``--retrain`` refits;
   both checkpoints share the transition and T, so one predictor serves both).
   Reports its held-out RMSE (logP units) at a few noise levels.
2. Restores the EMA parameters of a trained denoiser: ``graph_dit`` (``workdir/qm9_graph_dit``, run with
   the null condition, i.e. as its unconditional model) or ``digress`` (``workdir/qm9_digress``).
3. Draws ``--samples`` molecules per guidance weight lam in ``--scales`` (0: the unguided baseline) with
   logP targets of held-out molecules. Targets, graph sizes and keys are those of
   the graph task's evaluation (``experiments/tasks/graph.py``), so lam = 0 reproduces its unconditional row.

Prints and writes (``--out/guidance_<model>.md`` and ``.json``) a markdown table: validity as generated,
uniqueness and novelty (valence-corrected largest fragment), logP MAE by RDKit against the targets and
against the same targets shuffled across molecules (a control), and sampling time.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
WORKDIRS = {"graph_dit": "workdir/qm9_graph_dit", "digress": "workdir/qm9_digress"}


def define_flags() -> None:
    flags.DEFINE_enum("model", "graph_dit", list(WORKDIRS), "Which trained denoiser to guide.")
    flags.DEFINE_string("workdir", None, "The denoiser's workdir (default: workdir/qm9_<model>).")
    flags.DEFINE_string("out", "/tmp/graph_guidance", "Output directory (predictor parameters, table).")
    flags.DEFINE_float("train_seconds", 480.0, "Wall-clock budget for fitting the predictor.")
    flags.DEFINE_integer("train_steps", 20_000, "At most this many predictor steps.")
    flags.DEFINE_integer("batch_size", 256, "Predictor batch size.")
    flags.DEFINE_float("learning_rate", 2e-3, "Peak predictor learning rate.")
    flags.DEFINE_bool("retrain", False, "Refit the predictor even if --out holds one.")
    flags.DEFINE_integer("samples", 1000, "Molecules per guidance weight.")
    flags.DEFINE_integer("sample_batch", 500, "Molecules per sampler call (500 matches the graph task).")
    flags.DEFINE_list("scales", ["0", "2", "4", "8", "16"], "Guidance weights lambda (0 = unguided).")


def load_model(model: str, workdir: str):
    """Restore a graph task run -> (config, transition, denoise(params, graph_t, t, numeric, categorical),
    EMA params, train split, test split)."""
    import jax
    import jax.numpy as jnp
    import ml_collections

    from experiments import checks
    from experiments.tasks import graph
    from jaxdiff.graphs.graph import Graph
    from jaxdiff.graphs.molecules import ATOMS, BONDS
    from jaxdiff.train import Checkpointer, create_train_state, make_optimizer

    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    a, b, n = len(ATOMS), len(BONDS), config.data.max_nodes
    train, test = graph.load_data(config.data)
    transition = graph.build_transition(config.diffusion, train, a, b)
    k, c = len(config.data.numeric), len(config.data.categorical)
    module = graph.build_network(config, k, (config.data.num_ring_classes,) * c, a, b)
    denoise, _ = graph.make_loss(module, transition, config, a, b)
    dummy = Graph(jnp.zeros((1, n, a)), jnp.zeros((1, n, n, b)), jnp.ones((1, n), bool))
    params = module.init(jax.random.key(0), dummy, jnp.zeros((1,)), jnp.zeros((1, k)), jnp.zeros((1, c), jnp.int32))
    state = create_train_state(params, make_optimizer(checks.optim_config(config)), jax.random.key(0))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    state = ckpt.restore(state)
    ckpt.close()
    print(f"restored {model} from {workdir} at step {int(state.step)}", flush=True)
    return config, transition, denoise, state.ema_params, train, test


def fit_predictor(predictor, transition, num_steps: int, train: dict, logp: np.ndarray, out: str):
    """Fit (or load) the predictor on noisy training graphs -> (params, info dict)."""
    import flax.serialization
    import jax
    import jax.numpy as jnp
    import optax

    from jaxdiff.graphs.graph import from_ints
    from jaxdiff.graphs.guidance import predictor_loss

    a, b = predictor.num_node_classes, predictor.num_edge_classes
    atoms, bonds = train["atoms"], train["bonds"]
    bs = FLAGS.batch_size
    graph = from_ints(jnp.asarray(atoms[:2], jnp.int32), jnp.asarray(bonds[:2], jnp.int32), a, b)
    params = predictor.init(jax.random.key(1), graph, jnp.zeros(2))
    path = os.path.join(out, "predictor.msgpack")
    if os.path.exists(path) and not FLAGS.retrain:
        with open(path, "rb") as f:
            saved = flax.serialization.msgpack_restore(f.read())
        print(f"loaded the predictor from {path}", flush=True)
        return flax.serialization.from_state_dict(params, saved["params"]), saved["info"]

    opt = optax.inject_hyperparams(optax.adam)(learning_rate=FLAGS.learning_rate)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, atoms, bonds, target, key, lr):
        graph0 = from_ints(atoms.astype(jnp.int32), bonds.astype(jnp.int32), a, b)
        (loss, _), grads = jax.value_and_grad(predictor_loss, argnums=1, has_aux=True)(
            predictor.apply, params, graph0, target, key, transition=transition, num_steps=num_steps)
        opt_state.hyperparams["learning_rate"] = lr
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(0)
    order, pos = rng.permutation(len(atoms)), 0
    t0, i, budget = time.perf_counter(), 0, FLAGS.train_seconds
    while i < FLAGS.train_steps:
        elapsed = time.perf_counter() - t0
        if elapsed > budget:
            break
        if pos + bs > len(order):
            order, pos = rng.permutation(len(atoms)), 0
        idx = order[pos:pos + bs]
        pos += bs
        progress = max(elapsed / budget, i / FLAGS.train_steps)
        lr = FLAGS.learning_rate * min(1.0, (i + 1) / 100) * 0.5 * (1 + np.cos(np.pi * progress))
        params, opt_state, loss = step(params, opt_state, atoms[idx], bonds[idx], logp[idx, None],
                                       jax.random.key(i), np.float32(lr))
        if i % 500 == 0:
            print(f"predictor step {i}: mse {float(loss):.3f} ({elapsed:.0f} s)", flush=True)
        i += 1
    seconds = time.perf_counter() - t0
    info = {"steps": i, "seconds": round(seconds, 1), "epochs": round(i * bs / len(atoms), 2)}
    with open(path, "wb") as f:
        f.write(flax.serialization.msgpack_serialize({"params": flax.serialization.to_state_dict(params),
                                                      "info": info}))
    print(f"predictor: {i} steps in {seconds:.0f} s ({info['epochs']} epochs)", flush=True)
    return params, info


def predictor_rmse(predictor, params, transition, num_steps: int, data: dict, logp: np.ndarray, std: float,
                   times=(10, 100, 250, 400)) -> dict:
    """Held-out RMSE in logP units of the predictor on ``z_t ~ q(z_t | x_0)`` at each t (and of the mean)."""
    import jax
    import jax.numpy as jnp

    from jaxdiff.graphs import discrete
    from jaxdiff.graphs.graph import from_ints

    a, b = predictor.num_node_classes, predictor.num_edge_classes
    graph0 = from_ints(jnp.asarray(data["atoms"], jnp.int32), jnp.asarray(data["bonds"], jnp.int32), a, b)

    @jax.jit
    def predict(t, key):
        tt = jnp.full(graph0.mask.shape[:1], t)
        graph_t = discrete.forward_sample(key, graph0, tt, transition, num_steps)
        return predictor.apply(params, graph_t, tt / num_steps)[:, 0]

    out = {"mean predictor": float(np.sqrt(np.mean(logp ** 2)) * std)}
    for t in times:
        pred = np.asarray(predict(t, jax.random.key(t)))
        out[f"t={t}"] = float(np.sqrt(np.mean((pred - logp) ** 2)) * std)
    return out


def main(argv):
    del argv
    from experiments.cli import start_runtime

    start_runtime()
    import functools

    import jax
    import jax.numpy as jnp

    from jaxdiff.graphs import discrete
    from jaxdiff.graphs import metrics as gm
    from jaxdiff.graphs.graph import to_ints
    from jaxdiff.graphs.guidance import PropertyPredictor, guided_sample
    from jaxdiff.graphs.molecules import ATOMS, BONDS
    from jaxdiff.graphs.qm9 import subset

    scales = [float(s) for s in FLAGS.scales]
    if any(not s >= 0 for s in scales):
        raise app.UsageError(f"--scales must be >= 0, got {scales}")
    os.makedirs(FLAGS.out, exist_ok=True)
    workdir = FLAGS.workdir or WORKDIRS[FLAGS.model]
    config, transition, denoise, ema, train, test = load_model(FLAGS.model, workdir)
    num_steps, sample_steps, n = config.diffusion.num_steps, config.diffusion.sample_steps, config.data.max_nodes
    mean, std = float(np.mean(train["logp"])), float(np.std(train["logp"]))

    predictor = PropertyPredictor(len(ATOMS), len(BONDS))
    pred_params, info = fit_predictor(predictor, transition, num_steps, train,
                                      ((train["logp"] - mean) / std).astype(np.float32), FLAGS.out)

    num = min(FLAGS.samples, len(test["atoms"]))
    order = np.random.default_rng(0).permutation(len(test["atoms"]))  # as the graph task's evaluation
    targets = subset(test, order[:num])
    heldout = subset(test, order[num + 2000:num + 4000])  # neither the targets nor the graph task's reference
    rmse = predictor_rmse(predictor, pred_params, transition, num_steps, heldout,
                          ((heldout["logp"] - mean) / std).astype(np.float32), std)
    print("predictor held-out RMSE (logP): " + ", ".join(f"{k} {v:.3f}" for k, v in rmse.items()), flush=True)

    raw = np.asarray(targets["logp"])
    target = jnp.asarray(((raw - mean) / std).astype(np.float32)[:, None])
    counts = discrete.node_counts_distribution((train["atoms"] >= 0).sum(1), n)
    k_mask, k_sample, _ = jax.random.split(jax.random.split(jax.random.key(config.seed), 3)[2], 3)
    masks = discrete.sample_masks(k_mask, counts, num, n)
    k, c = len(config.data.numeric), len(config.data.categorical)
    null = dict(numeric=jnp.full((FLAGS.sample_batch, k), jnp.nan), categorical=jnp.full((FLAGS.sample_batch, c), -1))
    predict = functools.partial(predictor.apply, pred_params)

    @jax.jit
    def sample(key, mask, target, lam):
        cond = {name: v[:mask.shape[0]] for name, v in null.items()}
        graph = guided_sample(functools.partial(denoise, ema), predict, key, mask, target, transition=transition,
                              num_steps=num_steps, sample_steps=sample_steps, scale=lam, cond=cond)
        return to_ints(graph)

    perm = np.random.default_rng(0).permutation(num)  # the shuffled-target control of the graph task
    results = {}
    for lam in scales:
        t0 = time.perf_counter()
        atoms, bonds = [], []
        for i in range(0, num, FLAGS.sample_batch):
            sl = slice(i, min(i + FLAGS.sample_batch, num))
            out = sample(jax.random.fold_in(k_sample, i), masks[sl], target[sl], jnp.float32(lam))
            atoms.append(np.asarray(out[0]))
            bonds.append(np.asarray(out[1]))
        atoms, bonds = np.concatenate(atoms), np.concatenate(bonds)
        seconds = time.perf_counter() - t0
        strict = gm.graph_smiles(atoms, bonds, "strict")
        smiles = gm.graph_smiles(atoms, bonds, "lcc")
        logp = gm.properties(smiles)["logp"]
        ok = np.isfinite(logp)
        results[lam] = {
            "valid": float(np.mean([s is not None for s in strict])),
            "uniqueness": gm.uniqueness(smiles),
            "novelty": gm.novelty(smiles, train["smiles"]),
            "logp_mae": float(np.mean(np.abs(logp[ok] - raw[ok]))),
            "logp_mae_shuffled": float(np.mean(np.abs(logp[ok] - raw[perm][ok]))),
            "logp_mean": float(np.mean(logp[ok])),
            "sample_seconds": round(seconds, 1),
        }
        print(f"lambda {lam:g}: " + ", ".join(f"{k}={v:.3f}" for k, v in results[lam].items()), flush=True)

    lines = ["| guidance λ | valid (as generated) | uniqueness | novelty | logP MAE | logP MAE vs shuffled targets "
             "| sampling s / 1k |", "|---|---|---|---|---|---|---|"]
    for lam, r in results.items():
        name = f"{lam:g}" + (" (unguided)" if lam == 0 else "")
        lines.append(f"| {name} | {r['valid']:.3f} | {r['uniqueness']:.3f} | {r['novelty']:.3f} | "
                     f"{r['logp_mae']:.3f} | {r['logp_mae_shuffled']:.3f} | {r['sample_seconds'] * 1000 / num:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    with open(os.path.join(FLAGS.out, f"guidance_{FLAGS.model}.md"), "w") as f:
        f.write(table)
    with open(os.path.join(FLAGS.out, f"guidance_{FLAGS.model}.json"), "w") as f:
        json.dump({"model": FLAGS.model, "workdir": workdir, "num_samples": num, "predictor": info,
                   "predictor_rmse": rmse, "logp_std": std, "results": {f"{k:g}": v for k, v in results.items()}},
                  f, indent=2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
