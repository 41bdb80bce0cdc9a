r"""Train and evaluate discrete graph diffusion (DiGress / Graph-DiT) on QM9 molecules.

    python -m experiments.graph_main --config=experiments/configs/qm9_graph_dit.py \
        --workdir=/tmp/qm9_graph_dit [--mode=train|eval]

``train`` fits the cross-entropy denoising loss with ``jaxdiff.train.fit`` (resuming from
``workdir``), then evaluates the EMA parameters; ``eval`` restores the latest checkpoint.
Evaluation draws ``eval.num_samples`` molecules per setting — unconditional (null condition),
conditioned on held-out molecules' properties at each guidance scale, and a shuffled-target
control — and scores them with RDKit: validity with and without valence correction,
uniqueness, novelty, diversity, fragment/scaffold similarity, and condition adherence by
exact oracles (logP MAE, ring-class accuracy). Outputs: ``metrics.json``, ``metrics.md``,
``molecules.png``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS

NUMERIC = ("logp", "qed", "tpsa", "mol_wt")
CATEGORICAL = ("num_rings",)


def ring_class(num_rings: np.ndarray, num_classes: int) -> np.ndarray:
    """Ring counts (N,) -> classes {0, ..., num_classes - 1}, the last meaning 'at least that many'."""
    return np.minimum(np.asarray(num_rings), num_classes - 1).astype(np.int32)


def conditions(cfg, data: dict, stats: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Property arrays -> (numeric (N, k) standardised float32, categorical (N, c) int32, stats)."""
    for name in cfg.numeric:
        if name not in NUMERIC:
            raise ValueError(f"config.data.numeric: unknown property {name!r}; choose from {NUMERIC}")
    for name in cfg.categorical:
        if name not in CATEGORICAL:
            raise ValueError(f"config.data.categorical: unknown property {name!r}; choose from {CATEGORICAL}")
    n = len(data["atoms"])
    raw = np.stack([np.asarray(data[k], np.float64) for k in cfg.numeric], 1) if cfg.numeric else np.zeros((n, 0))
    if stats is None:
        stats = {"mean": np.nanmean(raw, 0).tolist(), "std": np.nanstd(raw, 0).tolist()}
    numeric = ((raw - np.asarray(stats["mean"])) / np.asarray(stats["std"])).astype(np.float32)
    categorical = np.zeros((n, 0), np.int32)
    if cfg.categorical:
        categorical = ring_class(data["num_rings"], cfg.num_ring_classes)[:, None]
    return numeric, categorical, stats


def load_data(cfg):
    """QM9 split into (train, test) dicts of arrays, plus condition statistics from train."""
    from jaxdiff.data.qm9 import load_qm9, split_qm9, subset

    if cfg.name != "qm9":
        raise ValueError(f"config.data.name: only 'qm9' is supported, got {cfg.name!r}")
    train, test = split_qm9(load_qm9(cfg.max_nodes), seed=0, test_fraction=cfg.test_fraction)
    if cfg.num_train:
        pick = np.random.default_rng(0).permutation(len(train["atoms"]))[:cfg.num_train]
        train = subset(train, np.sort(pick))  # a uniform sample: QM9's order is by size and composition
    return train, test


def build_transition(cfg, train: dict, num_node_classes: int, num_edge_classes: int):
    from jaxdiff.graphs import discrete

    if cfg.transition == "uniform":
        return discrete.uniform_transition(num_node_classes, num_edge_classes)
    if cfg.transition == "marginal":
        m_x, m_e = discrete.dataset_marginals(train["atoms"], train["bonds"], num_node_classes, num_edge_classes)
        return discrete.marginal_transition(m_x, m_e)
    if cfg.transition == "joint":
        return discrete.joint_transition(train["atoms"], train["bonds"], num_node_classes, num_edge_classes)
    raise ValueError(f"config.diffusion.transition: must be 'uniform', 'marginal' or 'joint', got {cfg.transition!r}")


def build_network(config, num_numeric: int, categorical_sizes: tuple[int, ...], a: int, b: int):
    from jaxdiff.graphs.nets import DiGressTransformer, GraphDiT

    m = config.model
    n = config.data.max_nodes
    if m.arch == "graph_dit":
        return GraphDiT(hidden=m.hidden, depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio,
                        num_node_classes=a, num_edge_classes=b, max_nodes=n, num_numeric=num_numeric,
                        categorical_sizes=categorical_sizes, conditioning=m.conditioning,
                        numeric_encoder=m.numeric_encoder)
    if m.arch == "digress":
        return DiGressTransformer(hidden_nodes=m.hidden, hidden_edges=m.hidden // 4, hidden_global=m.hidden // 2,
                                  depth=m.depth, num_heads=m.num_heads, num_node_classes=a, num_edge_classes=b,
                                  num_numeric=num_numeric, categorical_sizes=categorical_sizes)
    raise ValueError(f"config.model.arch: must be 'graph_dit' or 'digress', got {m.arch!r}")


def make_loss(module, transition, config, a: int, b: int):
    """``loss(params, batch, key)`` for ``make_train_step``: condition dropout, then the CE loss."""
    import jax
    import jax.numpy as jnp

    from jaxdiff.graphs import discrete
    from jaxdiff.graphs.graph import from_ints

    d = config.diffusion

    def denoise(params, graph_t, t, numeric=None, categorical=None):
        return module.apply(params, graph_t, t, numeric, categorical)

    def loss(params, batch, key):
        k_drop, k_loss = jax.random.split(key)
        graph0 = from_ints(batch["atoms"].astype(jnp.int32), batch["bonds"].astype(jnp.int32), a, b)
        drop = jax.random.bernoulli(k_drop, d.condition_dropout, (graph0.mask.shape[0], 1))
        cond = dict(numeric=jnp.where(drop, jnp.nan, batch["numeric"]),
                    categorical=jnp.where(drop, -1, batch["categorical"]))
        return discrete.training_loss(denoise, params, graph0, k_loss, transition=transition,
                                      num_steps=d.num_steps, lambda_edges=d.lambda_edges, cond=cond)

    return denoise, loss


def draw_molecules(path: str, smiles: list, legends: list[str], cols: int = 6) -> str:
    """A PNG grid of molecules (RDKit drawing); invalid entries are left blank with their legend."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
    mols = [m if m is not None else Chem.Mol() for m in mols]
    img = Draw.MolsToGridImage(mols, molsPerRow=cols, subImgSize=(220, 180), legends=legends)
    img.save(path)
    return path


def adherence(smiles: list, numeric_target: np.ndarray, ring_target: np.ndarray, cfg) -> dict:
    """Exact-oracle condition adherence over the valid molecules.

    numeric_target (N,) raw logP targets (NaN where not conditioned), ring_target (N,) ring classes
    (-1 where not conditioned). Returns logP MAE and ring-class accuracy, each with its count.
    """
    from jaxdiff.graphs.metrics import properties

    props = properties(smiles)
    out = {}
    if "logp" in cfg.numeric:
        ok = np.isfinite(props["logp"]) & np.isfinite(numeric_target)
        out["logp_mae"] = float(np.mean(np.abs(props["logp"][ok] - numeric_target[ok]))) if ok.any() else float("nan")
    if "num_rings" in cfg.categorical:
        ok = np.isfinite(props["num_rings"]) & (ring_target >= 0)
        got = ring_class(np.nan_to_num(props["num_rings"][ok]).astype(int), cfg.num_ring_classes)
        out["ring_accuracy"] = float(np.mean(got == ring_target[ok])) if ok.any() else float("nan")
    return out


def make_sampler(denoise, transition, num_steps: int, sample_steps: int):
    """Jitted ``sample(params, key, mask, numeric, categorical, scale) -> (atoms, bonds)`` (integer graphs).

    ``scale`` None: plain sampling with the given condition (all-missing = unconditional);
    otherwise classifier-free guidance against the all-missing condition.
    """
    import functools

    import jax
    import jax.numpy as jnp

    from jaxdiff.graphs import discrete
    from jaxdiff.graphs.graph import to_ints

    @functools.partial(jax.jit, static_argnames="scale")
    def sample(params, key, mask, numeric, categorical, scale=None):
        cond = dict(numeric=numeric, categorical=categorical)
        uncond = dict(numeric=jnp.full_like(numeric, jnp.nan), categorical=jnp.full_like(categorical, -1))
        graph = discrete.sample(functools.partial(denoise, params), key, mask, transition=transition,
                                num_steps=num_steps, sample_steps=sample_steps, cond=cond, guidance_scale=scale,
                                uncond=None if scale is None else uncond)
        return to_ints(graph)

    return sample


def evaluate_model(config, denoise, params, transition, train: dict, test: dict, stats: dict, key,
                   workdir: str) -> dict:
    """Metrics of every evaluation setting (see the module docstring); also draws ``molecules.png``."""
    import jax
    import jax.numpy as jnp

    from jaxdiff.data.qm9 import subset
    from jaxdiff.graphs import discrete
    from jaxdiff.graphs import metrics as gm

    e, n = config.eval, config.data.max_nodes
    num = min(e.num_samples, len(test["atoms"]))
    # QM9's row order follows molecule size and composition, so slices of a fixed random order are used:
    # condition targets, the reference set (similarities, FCD), and held-out real molecules for the floor.
    order = np.random.default_rng(0).permutation(len(test["atoms"]))
    targets = subset(test, order[:num])
    numeric, categorical, _ = conditions(config.data, targets, stats)
    raw_logp = np.asarray(targets["logp"]) if "logp" in config.data.numeric else np.full(num, np.nan)
    rings = ring_class(targets["num_rings"], config.data.num_ring_classes) if config.data.categorical \
        else np.full(num, -1)
    counts = discrete.node_counts_distribution((train["atoms"] >= 0).sum(1), n)
    k_mask, k_sample, k_shuffle = jax.random.split(key, 3)
    masks = discrete.sample_masks(k_mask, counts, num, n)
    sample = make_sampler(denoise, transition, config.diffusion.num_steps, config.diffusion.sample_steps)
    reference = list(test["smiles"][order[num:num + e.reference_size]])
    fcd_ref = gm.chemnet_stats(reference) if e.fcd else None
    conditional = bool(numeric.shape[1] or categorical.shape[1])
    settings = [("unconditional", None, False)] if e.unconditional or not conditional else []
    settings += [(f"guidance {s:g}", (None if s == 1 else s), True) for s in (e.guidance_scales if conditional else ())]
    results, drawn = {}, None
    for name, scale, use_cond in settings:
        t0 = time.perf_counter()
        atoms, bonds = [], []
        for i in range(0, num, e.batch_size):
            sl = slice(i, min(i + e.batch_size, num))
            nu = numeric[sl] if use_cond else np.full_like(numeric[sl], np.nan)
            ca = categorical[sl] if use_cond else np.full_like(categorical[sl], -1)
            out = sample(params, jax.random.fold_in(k_sample, i), masks[sl], jnp.asarray(nu), jnp.asarray(ca),
                         scale=scale)
            atoms.append(np.asarray(out[0]))
            bonds.append(np.asarray(out[1]))
        atoms, bonds = np.concatenate(atoms), np.concatenate(bonds)
        seconds = time.perf_counter() - t0
        res = gm.evaluate(atoms, bonds, train["smiles"], reference, with_fcd=e.fcd, fcd_reference=fcd_ref)
        smiles = gm.graph_smiles(atoms, bonds, "lcc")
        res.update(adherence(smiles, raw_logp, rings, config.data), sample_seconds=round(seconds, 1))
        if use_cond and scale == e.shuffle_scale:
            perm = np.random.default_rng(0).permutation(num)
            results["shuffled targets"] = adherence(smiles, raw_logp[perm], rings[perm], config.data)
        results[name] = res
        if drawn is None or (use_cond and drawn[0] != f"guidance {e.shuffle_scale:g}"):
            drawn = (name, smiles)
        print(f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in res.items() if isinstance(v, float)))
    real = subset(test, order[num + e.reference_size:2 * num + e.reference_size])
    if len(real["atoms"]):  # the same metrics of held-out real molecules: the floor each number sits on
        res = gm.evaluate(real["atoms"], real["bonds"], train["smiles"], reference, with_fcd=e.fcd,
                          fcd_reference=fcd_ref)
        res.update(adherence(list(real["smiles"]), raw_logp[:len(real["atoms"])],
                             rings[:len(real["atoms"])], config.data))
        results["held-out real molecules"] = res
    name, smiles = drawn
    got = gm.properties(smiles[:e.grid])
    legends = [f"logP {p:.1f} (got {q:.1f}), rings {r} (got {k:.0f})" if conditional else "" for p, q, r, k in
               zip(raw_logp, got["logp"], rings, got["num_rings"])]
    draw_molecules(os.path.join(workdir, "molecules.png"), smiles[:e.grid], legends)
    return {"settings": results, "num_samples": num, "molecules_png": name}


def markdown_table(metrics: dict) -> str:
    """One row per evaluation setting, one column per metric."""
    rows = metrics["settings"]
    keys = sorted({k for r in rows.values() for k in r})
    lines = ["| setting | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if k in r else "" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def run(config, workdir: str, mode: str = "train", *, progress: bool = True) -> dict:
    """Train (or restore) and evaluate; returns the metrics written to ``workdir/metrics.json``."""
    import jax
    import jax.numpy as jnp

    from experiments import build
    from jaxdiff.data.pipeline import ArraySource
    from jaxdiff.graphs.graph import Graph
    from jaxdiff.graphs.molecules import ATOMS, BONDS
    from jaxdiff.train import check_batch_size, create_train_state, data_mesh, make_optimizer, replicate

    build.check_train(config)
    a, b, n = len(ATOMS), len(BONDS), config.data.max_nodes
    train, test = load_data(config.data)
    numeric, categorical, stats = conditions(config.data, train)
    if config.data.shuffle_conditions:  # the control: conditions carry no information about the molecule
        perm = np.random.default_rng(config.seed).permutation(len(numeric))
        numeric, categorical = numeric[perm], categorical[perm]
    sizes = (config.data.num_ring_classes,) * categorical.shape[1]
    transition = build_transition(config.diffusion, train, a, b)
    module = build_network(config, numeric.shape[1], sizes, a, b)
    denoise, loss_fn = make_loss(module, transition, config, a, b)
    optimizer = make_optimizer(build.build_optim(config))
    mesh = data_mesh()
    check_batch_size(config.train.batch_size, mesh)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    k_init, k_train, k_eval = jax.random.split(jax.random.key(config.seed), 3)
    dummy = Graph(jnp.zeros((1, n, a)), jnp.zeros((1, n, n, b)), jnp.ones((1, n), bool))
    params = module.init(k_init, dummy, jnp.zeros((1,)), jnp.zeros((1, numeric.shape[1])),
                         jnp.zeros((1, categorical.shape[1]), jnp.int32))
    state = replicate(create_train_state(params, optimizer, k_train), mesh)
    source = ArraySource(atoms=train["atoms"], bonds=train["bonds"], numeric=numeric, categorical=categorical)
    t0 = time.perf_counter()
    state = build.train_or_restore(config, state, loss_fn, optimizer, source, mesh, workdir, mode, progress=progress)
    train_seconds = time.perf_counter() - t0
    metrics = evaluate_model(config, denoise, state.ema_params, transition, train, test, stats, k_eval, workdir)
    metrics.update(step=int(state.step), train_seconds=round(train_seconds, 1),
                   num_params=int(sum(x.size for x in jax.tree.leaves(params))))
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    with open(os.path.join(workdir, "metrics.md"), "w") as f:
        f.write(markdown_table(metrics))
    return metrics


def main(argv):
    from experiments.build import start_cli

    start_cli(argv)
    print(json.dumps(run(FLAGS.config, FLAGS.workdir, FLAGS.mode, progress=FLAGS.progress), indent=2))


if __name__ == "__main__":
    from experiments.build import define_cli_flags

    define_cli_flags("Path to experiments/configs/qm9_*.py.")
    app.run(main)
