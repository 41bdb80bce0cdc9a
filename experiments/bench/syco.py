r"""SyCo on QM9: molecular graphs lifted to ETKDG point clouds, a 3-D EDM, and the learned inverse map.

    python -m experiments.bench.syco [--train_molecules=20000 --decoder_minutes=5 --generation_minutes=25 \
        --samples=1000 --reference_size=2000 --out=/tmp/syco]

Data: ETKDGv3 conformers (seed 0, ``jaxdiff.molecules3d.syco.load_syco_qm9``) of ``--train_molecules``
graphs drawn uniformly at random (permutation seed 0) from the graph benchmarks' training split, and of
the graph benchmarks' held-out real molecules: the graph task (``experiments/tasks/graph.py``) orders the
test split by ``default_rng(0).permutation``, draws ``--samples`` condition targets, then the
``--reference_size`` reference molecules, then ``--samples`` held-out real molecules, and those last are
the ones lifted here. Molecules ETKDG cannot embed are counted and left out of training and of the
conformer scores.

Part ``decoder``: a ``GraphDecoder`` (given positions and one-hot atom types, trained with Gaussian noise
on both) is fitted for ``--decoder_minutes``, then scored on the held-out ETKDG conformers and on the
DFT geometries of the same held-out molecules (``jaxdiff.data.qm9_3d``, heavy atoms, reordered to the
graph's atom order by ``syco.align_to_graph``): atom accuracy, bond accuracy over all pairs and over the
true bonds, whole-graph exact match, and SMILES match (the decoded molecule is the held-out one).

Part ``generation``: an equivariant EDM (``EGNNDynamics``, CoM-free positions + scaled one-hot features)
trained on the ETKDG point clouds for ``--generation_minutes``, sampled with Heun on a Karras grid
(atom counts from the training distribution), decoded by the decoder and scored with
``jaxdiff.graphs.metrics`` as the graph benchmarks are: validity as generated (the decoded molecule
sanitises), then uniqueness, novelty against the whole graph training split, FCD and MOSES similarities
against the graph benchmarks' reference molecules, on the valence-corrected largest fragment. The last
row scores the held-out real molecules (every one, embedded or not) the same way: the graph benchmarks'
floor, on the same molecules and reference. Each ``--churn`` value scores the same model once more with
EDM's stochastic sampler (``edm`` at that ``s_churn``, the same grid, churn noise projected to the
CoM-free subspace); the EMA parameters are saved (``ema_params.msgpack``).

Prints markdown tables and writes them with the raw figures to ``--out``.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import serialization

NUM_TYPES = 5  # syco.ATOM_TYPES: C N O F nH
CHARGES = np.array([6, 7, 8, 9, 7])


def embedded_only(data: dict) -> dict:
    return {k: v[data["embedded"]] for k, v in data.items() if k != "build_seconds"}


def clouds(data: dict) -> dict:
    """The decoder's batch arrays of a conformer set (one-hot features)."""
    from jaxdiff.data.qm9_3d import one_hot

    return {"positions": data["positions"].astype(np.float32), "features": one_hot(data["atoms"], NUM_TYPES),
            "mask": data["mask"], "atoms": data["atoms"].astype(np.int32), "bonds": data["bonds"].astype(np.int32)}


def fit(loss_fn, params, data: dict, seconds: float, *, batch_size: int, learning_rate: float,
        ema_halflife_nimg: float, seed: int):
    """Trains on random batches of ``data`` for ``seconds`` of wall clock; returns (state, steps, last loss)."""
    from jaxdiff.train import OptimConfig, create_train_state, make_optimizer, make_train_step

    optimizer = make_optimizer(OptimConfig(learning_rate=learning_rate, warmup_steps=200))
    step = jax.jit(make_train_step(loss_fn, optimizer, batch_size=batch_size, ema_halflife_nimg=ema_halflife_nimg))
    state = create_train_state(params, optimizer, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    n = len(next(iter(data.values())))
    start, steps, losses = time.perf_counter(), 0, []
    while time.perf_counter() - start < seconds:
        idx = rng.integers(0, n, batch_size)
        state, metrics = step(state, {k: v[idx] for k, v in data.items()})
        steps += 1
        if steps % 200 == 0:
            losses.append(float(metrics["loss"]))
            print(f"  step {steps}: loss {losses[-1]:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return state, steps, float(metrics["loss"])


def predict(apply, params, positions, features, mask, chunk: int = 500):
    """Decoded graphs (atoms (N, n), bonds (N, n, n)) in fixed-size chunks (one compilation)."""
    from jaxdiff._arrays import in_chunks
    from jaxdiff.molecules3d.decoder import decode

    return in_chunks(lambda x, h, m: decode(*apply(params, x, h, m), m), positions, features, mask, chunk=chunk)


def accuracy(apply, params, data: dict, smiles) -> dict:
    from rdkit import Chem

    from jaxdiff.molecules3d.syco import to_mol

    atoms, bonds = predict(apply, params, data["positions"], data["features"], data["mask"])
    mask = data["mask"]
    pairs = mask[:, :, None] & mask[:, None] & np.triu(np.ones(mask.shape[1:] * 2, bool), k=1)
    right_bonds = bonds == data["bonds"]
    exact = (atoms == data["atoms"]).all(1) & (right_bonds | ~pairs).all((1, 2))
    decoded = [to_mol(a, b) for a, b in zip(atoms, bonds)]
    oracle = [to_mol(a, b) for a, b in zip(data["atoms"], data["bonds"])]
    same = [m is not None and Chem.MolToSmiles(m) == s for m, s in zip(decoded, smiles)]
    return {"molecules": int(len(mask)), "atom_accuracy": float((atoms == data["atoms"])[mask].mean()),
            "bond_accuracy": float(right_bonds[pairs].mean()),
            "bond_accuracy_true_bonds": float(right_bonds[pairs & (data["bonds"] > 0)].mean()),
            "exact_graph": float(exact.mean()), "smiles_match": float(np.mean(same)),
            "valid": float(np.mean([m is not None for m in decoded])),
            "smiles_match_of_true_graph": float(np.mean([m is not None and Chem.MolToSmiles(m) == s
                                                         for m, s in zip(oracle, smiles)]))}


def dft_clouds(test: dict) -> tuple[dict, int]:
    """The DFT heavy-atom geometries of the held-out molecules in their graphs' atom order; (clouds, unaligned)."""
    from jaxdiff.data.qm9_3d import load_qm9_3d
    from jaxdiff.molecules3d.syco import align_to_graph

    dft = load_qm9_3d(hydrogens=False)
    row_of = {int(q): r for r, q in enumerate(dft["index"])}
    keep, positions = [], []
    for k, q in enumerate(test["index"]):
        r = row_of[int(q)]
        perm = align_to_graph(test["atoms"][k], test["bonds"][k], dft["atoms"][r], dft["positions"][r])
        if perm is None:
            continue
        pos = np.zeros_like(dft["positions"][r])
        pos[:len(perm)] = dft["positions"][r][perm]
        keep.append(k)
        positions.append(pos)
    out = {k: v[keep] for k, v in test.items() if k != "build_seconds"}
    out["positions"] = np.stack(positions).astype(np.float32)
    return out, len(test["index"]) - len(keep)


def graph_metrics(mols, train_smiles, reference_stats, reference_smiles) -> dict:
    """The graph benchmarks' metrics of decoded molecules (None = invalid): validity as generated, the rest on
    the valence-corrected largest fragment (kekulised integer graphs, as the graph task scores them)."""
    from rdkit import Chem

    from jaxdiff.graphs import metrics as gm
    from jaxdiff.graphs.molecules import mol_to_ints

    strict = [None if m is None else Chem.MolToSmiles(m) for m in mols]
    lcc = [None] * len(mols)
    for k, m in enumerate(mols):
        if m is not None:
            atoms, bonds = mol_to_ints(m, 9)
            lcc[k] = gm.graph_smiles([atoms], [bonds], "lcc")[0]
    return {"valid": float(np.mean([s is not None for s in strict])),
            "valid_connected": float(np.mean([s is not None and "." not in s for s in strict])),
            "uniqueness": gm.uniqueness(lcc), "novelty": gm.novelty(lcc, train_smiles),
            "fcd": gm.fcd(lcc, reference_stats) if sum(s is not None for s in lcc) >= 2 else float("nan"),
            "fragment_similarity": gm.fragment_similarity(lcc, reference_smiles),
            "scaffold_similarity": gm.scaffold_similarity(lcc, reference_smiles),
            "internal_diversity": gm.internal_diversity(lcc)}


def main(argv):
    del argv
    from jaxdiff import losses, precond, samplers, schedules
    from jaxdiff.data.qm9_3d import node_count_distribution
    from jaxdiff.graphs import metrics as gm
    from jaxdiff.graphs.qm9 import load_qm9, split_qm9
    from jaxdiff.molecules3d import decoder, diffusion, features, syco
    from jaxdiff.molecules3d.egnn import EGNNDynamics
    from jaxdiff.nn import as_net

    F = flags.FLAGS
    os.makedirs(F.out, exist_ok=True)
    results = {"flags": {k: F[k].value for k in ("train_molecules", "samples", "reference_size", "decoder_minutes",
                                                  "generation_minutes", "sampler_steps", "churn")}}
    raw_train = syco.load_syco_qm9("train", F.train_molecules)
    raw_test = syco.load_syco_qm9("test", F.samples, offset=F.samples + F.reference_size)
    for name, raw in (("train", raw_train), ("test", raw_test)):
        results[f"{name}_conformers"] = {"molecules": int(len(raw["embedded"])),
                                         "failed_to_embed": int((~raw["embedded"]).sum()),
                                         "ms_per_molecule": 1e3 * float(raw["build_seconds"]) / len(raw["embedded"])}
    print(results, flush=True)
    train, test = embedded_only(raw_train), embedded_only(raw_test)

    # ------------------------------------------------------------------ inverse map
    model = decoder.GraphDecoder(hidden=F.decoder_hidden, num_blocks=3)
    train_clouds = clouds(train)
    params = jax.jit(model.init)(jax.random.key(0), *(train_clouds[k][:2] for k in ("positions", "features", "mask")))
    params = params["params"]
    loss_fn = decoder.decoder_loss(model, position_noise=F.position_noise, feature_noise=F.feature_noise)
    print(f"decoder: {sum(p.size for p in jax.tree.leaves(params)):,} parameters", flush=True)
    state, steps, last = fit(loss_fn, params, train_clouds, 60 * F.decoder_minutes, batch_size=128,
                             learning_rate=2e-3, ema_halflife_nimg=20_000, seed=0)
    dec_params = state.ema_params
    apply = jax.jit(lambda p, x, h, m: model.apply({"params": p}, x, h, m))
    dft, unaligned = dft_clouds(raw_test)  # every held-out molecule, embedded by ETKDG or not
    results["decoder"] = {"steps": steps, "last_loss": last,
                          "etkdg": accuracy(apply, dec_params, clouds(test), test["smiles"]),
                          "dft": accuracy(apply, dec_params, clouds(dft), dft["smiles"]) | {"unaligned": unaligned}}
    print(json.dumps(results["decoder"], indent=1), flush=True)
    with open(os.path.join(F.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    # ------------------------------------------------------------------ generation
    if F.generation_minutes > 0:
        onehot = train_clouds["features"]
        h = features.scale_features(onehot, np.where(train["mask"], CHARGES[np.maximum(train["atoms"], 0)], 0))
        xh = np.asarray(diffusion.pack(train["positions"], h, train["mask"]))
        net_module = EGNNDynamics(hidden=F.edm_hidden, num_blocks=F.edm_blocks)
        pre = precond.EDMPrecond(sigma_data=1.0)
        net = as_net(net_module)
        edm_params = jax.jit(net_module.init)(jax.random.key(1), xh[:2], jnp.zeros(2), train["mask"][:2])["params"]
        print(f"EDM: {sum(p.size for p in jax.tree.leaves(edm_params)):,} parameters", flush=True)
        edm_loss = diffusion.denoising_loss(net, pre, losses.EDMNoise(sigma_data=1.0))
        state, edm_steps, edm_last = fit(edm_loss, edm_params, {"xh": xh, "mask": train["mask"]},
                                         60 * F.generation_minutes, batch_size=64, learning_rate=1e-3,
                                         ema_halflife_nimg=50_000, seed=1)
        dist = node_count_distribution(train["num_atoms"], 9)
        rng = np.random.default_rng(2)
        sizes = rng.choice(10, size=F.samples, p=dist)
        mask = np.arange(9)[None] < sizes[:, None]
        sigmas = schedules.karras(F.sampler_steps, sigma_min=0.002, sigma_max=80.0)
        sigma_max = float(sigmas[0])
        with open(os.path.join(F.out, "ema_params.msgpack"), "wb") as f:
            f.write(serialization.to_bytes(state.ema_params))

        def generate(sampler: str, options: dict):
            """Decoded samples of ``sampler``: (xh (S, 9, 4 + NUM_TYPES), atoms, bonds, seconds)."""
            spec = samplers.get(sampler)

            @jax.jit
            def sample(p, key, m):
                k_prior, k_noise = jax.random.split(key)
                x0 = diffusion.prior(k_prior, m, NUM_TYPES + 1, sigma_max)
                noise = None if spec.deterministic else diffusion.SubspaceNoise(m)
                return spec.fn(precond.denoiser(net, p, pre), x0, sigmas, key=k_noise, noise=noise, mask=m,
                               **options)

            start = time.perf_counter()
            xs = np.concatenate([np.asarray(sample(state.ema_params, jax.random.fold_in(jax.random.key(3), s),
                                                   jnp.asarray(mask[s:s + 500])))
                                 for s in range(0, F.samples, 500)])
            seconds = time.perf_counter() - start
            one_hot_gen, _ = features.unscale_features(xs[..., 3:])
            a, b = predict(apply, dec_params, xs[..., :3], np.asarray(one_hot_gen) * mask[..., None], mask)
            return xs, a, b, seconds

        out, atoms, bonds, sample_seconds = generate("heun", {})
        np.savez(os.path.join(F.out, "samples.npz"), xh=out, mask=mask, atoms=atoms, bonds=bonds)
        mols = [syco.to_mol(a, b) for a, b in zip(atoms, bonds)]
        graphs_train, graphs_test = split_qm9(load_qm9(), seed=0, test_fraction=0.1)
        order = np.random.default_rng(0).permutation(len(graphs_test["smiles"]))
        reference = list(graphs_test["smiles"][order[F.samples:F.samples + F.reference_size]])
        ref_stats = gm.chemnet_stats(reference)
        real = [syco.parse_smiles(s) for s in raw_test["smiles"]]
        results["generation"] = {
            "steps": edm_steps, "last_loss": edm_last, "sample_seconds": sample_seconds,
            "nfe": 2 * F.sampler_steps - 1,
            "syco": graph_metrics(mols, graphs_train["smiles"], ref_stats, reference),
            "real_held_out": graph_metrics(real, graphs_train["smiles"], ref_stats, reference)}
        results["generation"]["churn"] = {}
        for churn in F.churn:
            _, a, b, seconds = generate("edm", {"s_churn": float(churn)})
            results["generation"]["churn"][churn] = {
                "sample_seconds": seconds,
                "syco": graph_metrics([syco.to_mol(*g) for g in zip(a, b)], graphs_train["smiles"], ref_stats,
                                      reference)}
        print(json.dumps(results["generation"], indent=1), flush=True)
        with open(os.path.join(F.out, "samples.txt"), "w") as f:
            f.write("\n".join(str(None if m is None else syco.Chem.MolToSmiles(m)) for m in mols))
    with open(os.path.join(F.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    flags.DEFINE_integer("train_molecules", 20_000, "Random molecules of the graph training split to embed.")
    flags.DEFINE_float("decoder_minutes", 5.0, "Wall-clock budget for training the inverse map.")
    flags.DEFINE_integer("decoder_hidden", 64, "Width of the inverse map.")
    flags.DEFINE_float("position_noise", 0.05, "Std of the decoder's training noise on positions (angstrom).")
    flags.DEFINE_float("feature_noise", 0.1, "Std of the decoder's training noise on one-hot atom types.")
    flags.DEFINE_float("generation_minutes", 25.0, "Wall-clock budget for training the EDM (0: skip generation).")
    flags.DEFINE_integer("edm_hidden", 128, "Width of the EGNN of the EDM.")
    flags.DEFINE_integer("edm_blocks", 4, "EGNN blocks of the EDM.")
    flags.DEFINE_integer("samples", 1000, "Molecules to generate, and held-out real molecules (graph task's num_samples).")
    flags.DEFINE_integer("reference_size", 2000, "Held-out reference molecules of FCD and similarities (graph task's).")
    flags.DEFINE_integer("sampler_steps", 40, "Heun steps on the Karras grid (2 * steps - 1 NFE).")
    flags.DEFINE_list("churn", [], "s_churn values of EDM's stochastic sampler (same grid, noise projected to the "
                      "CoM-free subspace): one more generation row each, from the same model.")
    flags.DEFINE_string("out", "/tmp/syco", "Output directory (results.json, samples.txt).")
    app.run(main)
