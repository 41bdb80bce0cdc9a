"""Discrete graph diffusion (DiGress / Graph-DiT) on QM9 molecules (qm9_graph_dit, qm9_digress configs).

The network (``config.model``) is trained with the cross-entropy denoising loss of the discrete
noise model (``config.diffusion``), conditions dropped with ``condition_dropout``. Evaluation draws
``eval.num_samples`` molecules per setting — unconditional (null condition), conditioned on
held-out molecules' properties at each guidance scale, and a shuffled-target control — and scores
them with RDKit: validity with and without valence correction, uniqueness, novelty, diversity,
fragment/scaffold similarity, and condition adherence by exact oracles (logP MAE, ring-class
accuracy). Outputs: ``molecules.png``, ``metrics.md`` and the metrics (one entry per setting).
"""

from __future__ import annotations

import time

import numpy as np

from experiments import networks
from experiments.checks import choose, fail, positive
from experiments.tasks import Experiment

MODES = ("train", "eval")
NUMERIC = ("logp", "qed", "tpsa", "mol_wt")
CATEGORICAL = ("num_rings",)
TRANSITIONS = ("uniform", "marginal", "joint")
ARCHS = ("graph_dit", "digress")


def validate(config) -> None:
    choose("data.name", config.data.name, ("qm9",))
    for name in config.data.numeric:
        choose("data.numeric", name, NUMERIC)
    for name in config.data.categorical:
        choose("data.categorical", name, CATEGORICAL)
    positive(config, "data", "max_nodes", "num_ring_classes")
    choose("diffusion.transition", config.diffusion.transition, TRANSITIONS)
    choose("model.matmul_precision", config.model.matmul_precision, networks.MATMUL_PRECISIONS)
    positive(config, "diffusion", "num_steps", "sample_steps")
    if config.diffusion.sample_steps > config.diffusion.num_steps:
        fail("diffusion.sample_steps", f"{config.diffusion.sample_steps} exceeds diffusion.num_steps="
                                       f"{config.diffusion.num_steps}")
    if not 0.0 <= config.diffusion.condition_dropout < 1.0:
        fail("diffusion.condition_dropout", f"must be in [0, 1), got {config.diffusion.condition_dropout}")
    choose("model.arch", config.model.arch, ARCHS)
    choose("model.conditioning", config.model.conditioning, ("adaln", "additive"))
    choose("model.numeric_encoder", config.model.numeric_encoder, ("cluster", "linear"))
    positive(config, "eval", "num_samples", "batch_size", "reference_size")


def ring_class(num_rings: np.ndarray, num_classes: int) -> np.ndarray:
    """Ring counts (N,) -> classes {0, ..., num_classes - 1}, the last meaning 'at least that many'."""
    return np.minimum(np.asarray(num_rings), num_classes - 1).astype(np.int32)


def conditions(cfg, data: dict, stats: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Property arrays -> (numeric (N, k) standardised float32, categorical (N, c) int32, stats)."""
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
    from jaxdiff.graphs.qm9 import load_qm9, split_qm9, subset

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
    return discrete.joint_transition(train["atoms"], train["bonds"], num_node_classes, num_edge_classes)


def build_network(config, num_numeric: int, categorical_sizes: tuple[int, ...], a: int, b: int):
    from jaxdiff.graphs.nets import DiGressTransformer, GraphDiT

    m = config.model
    n = config.data.max_nodes
    if m.arch == "graph_dit":
        return GraphDiT(hidden=m.hidden, depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio,
                        num_node_classes=a, num_edge_classes=b, max_nodes=n, num_numeric=num_numeric,
                        categorical_sizes=categorical_sizes, conditioning=m.conditioning,
                        numeric_encoder=m.numeric_encoder)
    return DiGressTransformer(hidden_nodes=m.hidden, hidden_edges=m.hidden // 4, hidden_global=m.hidden // 2,
                              depth=m.depth, num_heads=m.num_heads, num_node_classes=a, num_edge_classes=b,
                              num_numeric=num_numeric, categorical_sizes=categorical_sizes)


def make_loss(module, transition, config, a: int, b: int):
    """``loss(params, batch, key)`` for ``make_train_step``: condition dropout, then the CE loss."""
    import jax
    import jax.numpy as jnp

    from jaxdiff.graphs import discrete
    from jaxdiff.graphs.graph import from_ints

    d = config.diffusion

    def apply(params, graph_t, t, numeric=None, categorical=None):
        return module.apply(params, graph_t, t, numeric, categorical)

    denoise = networks.with_matmul_precision(apply, config.model.matmul_precision)

    def loss(params, batch, key):
        k_drop, k_loss = jax.random.split(key)
        graph0 = from_ints(batch["atoms"].astype(jnp.int32), batch["bonds"].astype(jnp.int32), a, b)
        drop = jax.random.bernoulli(k_drop, d.condition_dropout, (graph0.mask.shape[0], 1))
        cond = dict(numeric=jnp.where(drop, jnp.nan, batch["numeric"]),
                    categorical=jnp.where(drop, -1, batch["categorical"]))
        return discrete.training_loss(denoise, params, graph0, k_loss, transition=transition,
                                      num_steps=d.num_steps, lambda_edges=d.lambda_edges, cond=cond)

    return denoise, loss


def draw_molecules(smiles: list, legends: list[str], cols: int = 6):
    """A grid image of molecules (RDKit drawing, a PIL image); invalid entries are left blank with their legend."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
    mols = [m if m is not None else Chem.Mol() for m in mols]
    return Draw.MolsToGridImage(mols, molsPerRow=cols, subImgSize=(220, 180), legends=legends)


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
                   outputs) -> dict:
    """Metrics of every evaluation setting (see the module docstring); also draws ``molecules.png``."""
    import jax
    import jax.numpy as jnp

    from jaxdiff.graphs import discrete
    from jaxdiff.graphs import metrics as gm
    from jaxdiff.graphs.qm9 import subset

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
    outputs.save("molecules.png", draw_molecules(smiles[:e.grid], legends).save)
    return {"settings": results, "num_samples": num, "molecules_png": name}


def markdown_table(metrics: dict) -> str:
    """One row per evaluation setting, one column per metric."""
    rows = metrics["settings"]
    keys = sorted({k for r in rows.values() for k in r})
    lines = ["| setting | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if k in r else "" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def build(config) -> Experiment:
    import jax
    import jax.numpy as jnp

    from jaxdiff.data.pipeline import ArraySource
    from jaxdiff.graphs.graph import Graph
    from jaxdiff.graphs.molecules import ATOMS, BONDS

    a, b, n = len(ATOMS), len(BONDS), config.data.max_nodes
    train, test = load_data(config.data)
    numeric, categorical, stats = conditions(config.data, train)
    if config.data.shuffle_conditions:  # the control: conditions carry no information about the molecule
        perm = np.random.default_rng(config.seed).permutation(len(numeric))
        numeric, categorical = numeric[perm], categorical[perm]
    sizes = (config.data.num_ring_classes,) * categorical.shape[1]
    transition = build_transition(config.diffusion, train, a, b)
    module = build_network(config, numeric.shape[1], sizes, a, b)
    denoise, loss = make_loss(module, transition, config, a, b)

    def init(key):
        dummy = Graph(jnp.zeros((1, n, a)), jnp.zeros((1, n, n, b)), jnp.ones((1, n), bool))
        return module.init(key, dummy, jnp.zeros((1,)), jnp.zeros((1, numeric.shape[1])),
                           jnp.zeros((1, categorical.shape[1]), jnp.int32))

    def evaluate(params, key, outputs) -> dict:
        metrics = evaluate_model(config, denoise, params, transition, train, test, stats, key, outputs)
        metrics["num_params"] = int(sum(x.size for x in jax.tree.leaves(params)))
        outputs.text("metrics.md", markdown_table(metrics))
        return metrics

    source = ArraySource(atoms=train["atoms"], bonds=train["bonds"], numeric=numeric, categorical=categorical)
    return Experiment(source=source, init=init, loss=loss, evaluate=evaluate)
