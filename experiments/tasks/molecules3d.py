"""Equivariant diffusion of 3-D molecules (Hoogeboom et al., 2022) on QM9 point clouds (qm9_3d config).

An ``EGNNDynamics`` network (``config.model``) is trained with the EDM loss of
``jaxdiff.molecules3d.diffusion`` on the CoM-free state of positions and scaled atom features
(``config.diffusion``); the EMA parameters sample with any registered sampler (``config.sample``;
stochastic ones draw ``SubspaceNoise``) from atom counts drawn from the training distribution. With
``data.conditioning`` (names of ``jaxdiff.molecules3d.context.PROPERTIES``) the model is Hoogeboom et
al.'s conditional EDM: the training-normalised properties enter every atom, and sampling draws target
properties jointly with the atom count from the training molecules (``samples.npz`` holds them as
``targets``; a conditioned heavy-atom count is scored by the mean absolute error of the generated
count, next to that of the targets shuffled, over all molecules and among those of one atom count).
Evaluation scores ``eval.num_samples`` molecules: atom and molecule stability by the distance rule
and, with ``eval.rdkit``, RDKit validity, uniqueness, their product and novelty (the share of distinct
valid SMILES outside those of the training molecules, Hoogeboom et al.'s definition); the same numbers
for as many held-out real molecules give the floor. Outputs: ``molecules.png`` (3-D views), ``samples.npz``, the
metrics.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.checks import choose, fail, positive
from experiments.tasks import Experiment
from experiments.tasks.diffusion import check_sampler, sigmas
from jaxdiff import samplers

MODES = ("train", "sample", "eval")


def validate(config) -> None:
    choose("data.name", config.data.name, ("qm9",))
    choose("data.half", config.data.half, ("", "a", "b"))
    if config.data.num_train < 0:
        fail("data.num_train", f"must be >= 0 (0: the whole training split), got {config.data.num_train}")
    from jaxdiff.molecules3d.context import PROPERTIES

    names = config.data.conditioning
    if not isinstance(names, (tuple, list)):
        fail("data.conditioning", f"must be a tuple of property names, got {names!r}")
    for name in names:
        choose("data.conditioning", name, PROPERTIES)
    if len(set(names)) != len(names):
        fail("data.conditioning", f"names a property twice: {tuple(names)}")
    positive(config, "model", "hidden", "num_blocks", "sublayers", "coords_range", "normalization_factor")
    positive(config, "diffusion", "sigma_data", "P_std")
    check_sampler(config)
    if samplers.get(config.sample.sampler).nfe(sigmas(config.sample), **dict(config.sample.options)) is None:
        fail("sample.sampler", f"{config.sample.sampler!r} is adaptive; choose a fixed-grid sampler")
    positive(config, "eval", "num_samples", "batch_size")


def load_data(cfg) -> tuple[dict, dict, tuple[str, ...]]:
    """(train, test) point-cloud views of QM9 (split as the graph benchmarks) and the element vocabulary."""
    from jaxdiff.data import qm9_3d
    from jaxdiff.molecules3d.qm9 import split_qm9_3d, training_half

    train, test = split_qm9_3d(qm9_3d.load_qm9_3d(cfg.hydrogens))
    if cfg.half:
        train = training_half(train, cfg.half)
    if cfg.num_train:
        pick = np.sort(np.random.default_rng(0).permutation(len(train["index"]))[:cfg.num_train])
        train = {k: v[pick] for k, v in train.items()}
    return train, test, qm9_3d.VOCABULARY if cfg.hydrogens else qm9_3d.HEAVY_VOCABULARY


def states(view: dict, num_types: int) -> np.ndarray:
    """float32 (N, n, 3 + K + 1): the packed diffusion state of a point-cloud view."""
    from jaxdiff.data.qm9_3d import one_hot
    from jaxdiff.molecules3d import diffusion, features

    h = features.scale_features(one_hot(view["atoms"], num_types), view["charges"])
    return np.asarray(diffusion.pack(view["positions"], h, view["mask"]), np.float32)


def build_model(config):
    """(module, net, precond, loss) of ``config.model`` and ``config.diffusion``."""
    from jaxdiff import losses, precond
    from jaxdiff.molecules3d import diffusion
    from jaxdiff.molecules3d.egnn import EGNNDynamics
    from jaxdiff.nn import as_net

    m, d = config.model, config.diffusion
    module = EGNNDynamics(hidden=m.hidden, num_blocks=m.num_blocks, sublayers=m.sublayers, attention=m.attention,
                          coords_range=m.coords_range, normalization_factor=m.normalization_factor,
                          sin_embedding=m.sin_embedding)
    net, pre = as_net(module), precond.EDMPrecond(sigma_data=d.sigma_data)
    noise = losses.EDMNoise(P_mean=d.P_mean, P_std=d.P_std, sigma_data=d.sigma_data)
    return module, net, pre, diffusion.denoising_loss(net, pre, noise)


def build_sampler(config, net, pre, num_types: int):
    """Jitted ``sample(params, key, mask, context=None) -> (positions (B, n, 3), atoms (B, n))`` with
    ``config.sample``; ``context`` (B, C) the normalised target properties of a conditional model."""
    from jaxdiff import precond
    from jaxdiff.molecules3d import diffusion

    cfg = config.sample
    levels = sigmas(cfg)
    spec = samplers.get(cfg.sampler)
    options = dict(cfg.options)

    @jax.jit
    def sample(params, key, mask, context=None):
        k_prior, k_noise = jax.random.split(key)
        x = diffusion.prior(k_prior, mask, num_types + 1, levels[0])
        noise = None if spec.deterministic else diffusion.SubspaceNoise(mask)
        cond = {} if context is None else {"context": context}
        out = spec.fn(precond.denoiser(net, params, pre), x, levels, key=k_noise, noise=noise, mask=mask, **options,
                      **cond)
        return diffusion.decode(out, mask, num_types)

    return sample


def training_smiles(train: dict, cfg, elements) -> set[str]:
    """The distinct valid SMILES (``chem.smiles``) of the training molecules of ``load_data(cfg)``: the
    whole split or a half reads the cached table of all QM9 (``molecules3d.qm9.training_smiles``); a
    ``num_train`` subset computes its own."""
    from jaxdiff.molecules3d import qm9

    if cfg.num_train:
        return set(qm9.geometry_smiles(train, elements).tolist()) - {""}
    return qm9.training_smiles(train["index"], cfg.hydrogens)


def score(positions, atoms, mask, elements, rdkit: bool, train_smiles=None) -> dict:
    """Atom and molecule stability and, with ``rdkit``, validity, uniqueness and their product (and,
    given ``train_smiles``, novelty), over all molecules; a molecule with non-finite positions (counted
    in ``nonfinite``) is unstable and invalid."""
    from jaxdiff.molecules3d import chem, stability

    finite = np.all(np.isfinite(positions), axis=(1, 2))
    pos, atoms, mask = np.where(finite[:, None, None], positions, 0.0), np.asarray(atoms), np.asarray(mask)
    s = stability.stability(pos, atoms, mask, elements)
    stable = s["atom_stable"] & finite[:, None]
    out = {"atom_stability": float(stable.sum() / max(mask.sum(), 1)),
           "molecule_stability": float(np.mean(s["molecule_stable"] & finite)), "nonfinite": int((~finite).sum())}
    if rdkit:
        keep = np.flatnonzero(finite)
        m = chem.metrics(pos[keep], atoms[keep], mask[keep], elements, train_smiles)
        validity = m["validity"] * len(keep) / max(len(finite), 1)
        out.update(validity=validity, uniqueness=m["uniqueness"], valid_unique=validity * m["uniqueness"])
        if train_smiles is not None:
            out["novelty"] = m["novelty"]
    return out


def conditioning_scores(atoms, targets, names, elements) -> dict:
    """For a conditioned ``num_heavy_atoms`` (exactly computable from the generated atoms): the mean
    absolute error of the generated count against its target, against the targets shuffled (what
    ignoring the condition would score) and against the targets shuffled among molecules of the same
    atom count (what using only the atom count, which sampling fixes, would score); empty otherwise.

    Args:
        atoms: (B, n) generated atom indices into ``elements``, -1 on padding.
        targets: (B, C) the target properties, columns in the order of ``names``.
        names: the conditioned properties.
        elements: the vocabulary.
    """
    from jaxdiff.molecules3d.context import num_heavy_atoms, shuffle_within_size

    if "num_heavy_atoms" not in names:
        return {}
    target = np.asarray(targets)[:, list(names).index("num_heavy_atoms")]
    count = num_heavy_atoms(atoms, elements)
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(target)
    same_size = shuffle_within_size(target, (np.asarray(atoms) >= 0).sum(-1), rng)
    return {"num_heavy_atoms_mae": float(np.abs(count - target).mean()),
            "num_heavy_atoms_mae_shuffled": float(np.abs(count - shuffled).mean()),
            "num_heavy_atoms_mae_same_size": float(np.abs(count - same_size).mean())}


def draw(positions, atoms, mask, elements, outputs, name: str = "molecules.png", count: int = 12) -> None:
    """Saves 3-D views of the first ``count`` molecules, titled stable / unstable."""
    from jaxdiff.molecules3d import plot, stability

    stable = stability.stability(positions[:count], atoms[:count], mask[:count], elements)["molecule_stable"]
    fig = plot.draw_molecules(positions[:count], atoms[:count], mask[:count], elements=elements,
                              titles=["stable" if s else "unstable" for s in stable])
    outputs.save(name, lambda path: fig.savefig(path, dpi=100))


def build(config) -> Experiment:
    from jaxdiff.data.pipeline import ArraySource
    from jaxdiff.data.qm9_3d import node_count_distribution
    from jaxdiff.molecules3d import context, diffusion

    train, test, elements = load_data(config.data)
    k = len(elements)
    xh = states(train, k)
    n_max = xh.shape[1]
    module, net, pre, loss = build_model(config)
    sample = build_sampler(config, net, pre, k)
    counts = node_count_distribution(train["num_atoms"], n_max)
    e = config.eval
    names = tuple(config.data.conditioning)
    arrays = {"xh": xh, "mask": train["mask"]}
    if names:
        props = context.molecule_properties(train, names, elements)
        norm = context.PropertyNorm.fit(props)
        arrays["context"] = norm(props)

    def init(key):
        ctx = {"context": jnp.zeros((1, len(names)))} if names else {}
        return module.init(key, jnp.zeros((1,) + xh.shape[1:]), jnp.zeros((1,)), jnp.ones((1, n_max), bool),
                           **ctx)["params"]

    def draw_samples(params, key, num: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, float]:
        """(positions, atoms, masks, {"targets": (num, C)} of a conditional model or {}, seconds)."""
        k_mask, k_sample = jax.random.split(key)
        if names:
            rng = np.random.default_rng(int(jax.random.randint(k_mask, (), 0, 2**31 - 1)))
            sizes, targets = context.draw_targets(rng, num, train["num_atoms"], props)
            masks, extra = np.arange(n_max)[None, :] < sizes[:, None], {"targets": targets}
        else:
            masks, extra = np.asarray(diffusion.sample_masks(k_mask, counts, num)), {}
        t0 = time.perf_counter()
        pos, atoms = [], []
        for i in range(0, num, e.batch_size):
            rows = slice(i, i + e.batch_size)
            ctx = jnp.asarray(norm(targets[rows])) if names else None
            out = sample(params, jax.random.fold_in(k_sample, i), jnp.asarray(masks[rows]), ctx)
            pos.append(np.asarray(out[0]))
            atoms.append(np.asarray(out[1]))
        return np.concatenate(pos), np.concatenate(atoms), masks, extra, time.perf_counter() - t0

    def evaluate(params, key, outputs) -> dict:
        pos, atoms, masks, extra, seconds = draw_samples(params, key, e.num_samples)
        outputs.npz("samples.npz", positions=pos, atoms=atoms, mask=masks, **extra)
        draw(pos, atoms, masks, elements, outputs)
        real = np.random.default_rng(0).permutation(len(test["index"]))[:e.num_samples]
        seen = training_smiles(train, config.data, elements) if e.rdkit else None
        scores = score(pos, atoms, masks, elements, e.rdkit, seen)
        if names:
            scores |= conditioning_scores(atoms, extra["targets"], names, elements)
        return {"samples": scores,
                "held-out real molecules": score(test["positions"][real], test["atoms"][real], test["mask"][real],
                                                 elements, e.rdkit, seen),
                "num_samples": e.num_samples, "sample_seconds": round(seconds, 1), "sampler": config.sample.sampler,
                "num_params": int(sum(x.size for x in jax.tree.leaves(params)))}

    def sample_only(params, key, outputs) -> dict:
        pos, atoms, masks, extra, seconds = draw_samples(params, key, config.sample.num_samples)
        outputs.npz("samples.npz", positions=pos, atoms=atoms, mask=masks, **extra)
        draw(pos, atoms, masks, elements, outputs)
        return {"num_samples": len(pos), "sample_seconds": round(seconds, 1)}

    return Experiment(source=ArraySource(**arrays), init=init, loss=loss, evaluate=evaluate,
                      sample=sample_only)

