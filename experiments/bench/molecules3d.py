r"""Equivariant diffusion (EDM-3D) on QM9 with hydrogens, trained for a fixed number of CPU minutes.

    python -m experiments.bench.molecules3d [--minutes=30] [--out=workdir/molecules3d_bench]

Trains the ``qm9_3d`` config's EGNN (``experiments.tasks.molecules3d``; ``--hidden``, ``--num_blocks``)
on the training split for ``--minutes`` of wall-clock training (compilation included, evaluation
excluded). Batches are drawn from one atom-count bucket at a time and cropped to it (``BUCKETS``), so a
batch of small molecules does not pay for 29 slots; a bucket is drawn with the probability of its
share of the data. At each of ``--curve`` (minutes) the EMA parameters sample ``--curve_samples``
molecules (atom counts from the training distribution) and their atom and molecule stability is
recorded; at the end ``--num_samples`` molecules give atom and molecule stability, RDKit validity,
uniqueness, validity × uniqueness and novelty (distinct valid SMILES outside the training split's),
next to the same numbers of as many held-out real molecules
(the floor of the distance rule; its stability also over all of QM9) and Hoogeboom et al.'s published EDM figures (reached after about
1,100 epochs on a GPU). Each ``--churn`` value adds a row of the same final scores from EDM's stochastic
sampler (``edm``, ``s_churn`` that value, the same grid; noise projected to the CoM-free subspace).
Writes ``results.json``, ``results.md``, ``molecules.png`` and the EMA parameters (``ema_params.msgpack``,
flax serialisation) under ``--out``.
"""

from __future__ import annotations

import os
import time

import numpy as np

BUCKETS = (12, 16, 20, 24, 29)  # atom-count bucket edges of the with-hydrogens view
PUBLISHED = {"atom_stability": 0.987, "molecule_stability": 0.820, "validity": 0.919, "valid_unique": 0.907}


def bucket_of(num_atoms: np.ndarray) -> np.ndarray:
    """The index into ``BUCKETS`` of the smallest edge >= each atom count."""
    return np.searchsorted(np.asarray(BUCKETS), num_atoms)


def make_config(hidden: int, num_blocks: int, batch_size: int, lr: float, num_steps: int, churn: float = 0.0,
                sin_embedding: bool = False):
    """The ``qm9_3d`` config resized; ``churn > 0`` samples with ``edm`` at that ``s_churn`` instead of Heun;
    ``sin_embedding`` gives the EGNN sinusoidal distance features."""
    from experiments.configs import qm9_3d

    c = qm9_3d.get_config()
    c.model.update(dict(hidden=hidden, num_blocks=num_blocks, sin_embedding=sin_embedding))
    c.train.batch_size = batch_size
    c.optim.learning_rate = lr
    c.sample.num_steps = num_steps
    if churn > 0:
        c.sample.sampler = "edm"
        c.sample.options.s_churn = churn
    return c


def qm9_floor(chunk: int = 10_000) -> dict:
    """Atom and molecule stability of all 130,831 QM9 geometries with hydrogens (the distance rule's floor)."""
    from jaxdiff.data.qm9_3d import load_qm9_3d
    from jaxdiff.molecules3d.stability import stability

    data = load_qm9_3d()
    stable_atoms = stable_molecules = 0
    for i in range(0, len(data["index"]), chunk):
        s = stability(data["positions"][i:i + chunk], data["atoms"][i:i + chunk], data["mask"][i:i + chunk])
        stable_atoms += int(s["atom_stable"].sum())
        stable_molecules += int(s["molecule_stable"].sum())
    return {"atom_stability": stable_atoms / int(data["mask"].sum()),
            "molecule_stability": stable_molecules / len(data["index"])}


def sampler(config, net, pre, counts: np.ndarray, chunk: int):
    """``draw(params, key, num) -> (positions, atoms, mask)`` padded to 29: atom counts drawn from
    ``counts``, sampled bucket by bucket in chunks of ``chunk`` (one compilation per bucket)."""
    import jax
    import jax.numpy as jnp

    from experiments.tasks.molecules3d import build_sampler

    sample = build_sampler(config, net, pre, 5)
    n_max = BUCKETS[-1]

    def draw(params, key, num: int):
        rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
        n = rng.choice(len(counts), size=num, p=counts)
        pos, atoms = np.zeros((num, n_max, 3), np.float32), np.full((num, n_max), -1, np.int32)
        for b, edge in enumerate(BUCKETS):
            rows = np.flatnonzero(bucket_of(n) == b)
            for i in range(0, len(rows), chunk):
                part = rows[i:i + chunk]
                sizes = np.concatenate([n[part], np.ones(chunk - len(part), int)])  # padded with 1-atom rows
                mask = jnp.asarray(np.arange(edge)[None, :] < sizes[:, None])
                p, a = sample(params, jax.random.fold_in(key, b * 100_000 + i), mask)
                pos[part, :edge], atoms[part, :edge] = np.asarray(p)[:len(part)], np.asarray(a)[:len(part)]
        return pos, atoms, atoms >= 0

    return draw


def main(minutes: float, out: str, *, hidden: int, num_blocks: int, batch_size: int, lr: float, num_steps: int,
         curve: list[float], curve_samples: int, num_samples: int, chunk: int, seed: int,
         churns: tuple[float, ...] = (), sin_embedding: bool = False) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import serialization

    from experiments.checks import optim_config
    from experiments.outputs import Outputs
    from experiments.tasks import molecules3d as task
    from jaxdiff.data.qm9_3d import node_count_distribution
    from jaxdiff.train import create_train_state, make_optimizer, make_train_step

    config = make_config(hidden, num_blocks, batch_size, lr, num_steps, sin_embedding=sin_embedding)
    train, test, elements = task.load_data(config.data)
    xh = task.states(train, len(elements))
    module, net, pre, loss_fn = task.build_model(config)
    counts = node_count_distribution(train["num_atoms"], BUCKETS[-1])
    draw = sampler(config, net, pre, counts, chunk)
    optimizer = make_optimizer(optim_config(config))
    step = jax.jit(make_train_step(loss_fn, optimizer, batch_size=batch_size,
                                   ema_halflife_nimg=config.train.ema_halflife_nimg), donate_argnums=0)
    params = module.init(jax.random.key(seed), jnp.zeros((1, 12, xh.shape[-1])), jnp.zeros((1,)),
                         jnp.ones((1, 12), bool))["params"]
    state = create_train_state(params, optimizer, jax.random.key(seed + 1))
    buckets = bucket_of(train["num_atoms"])
    members = [np.flatnonzero(buckets == b) for b in range(len(BUCKETS))]
    share = np.array([len(m) for m in members], float) / len(buckets)
    rng = np.random.default_rng(seed)
    outputs = Outputs(out)
    rows, trained, steps, molecules = [], 0.0, 0, 0
    for target in sorted(curve) + [minutes]:
        t0 = time.perf_counter()
        while trained + time.perf_counter() - t0 < target * 60:
            b = rng.choice(len(BUCKETS), p=share)
            pick = rng.choice(members[b], size=batch_size)
            edge = BUCKETS[b]
            state, metrics = step(state, {"xh": jnp.asarray(xh[pick, :edge]), "mask": jnp.asarray(train["mask"][pick, :edge])})
            steps += 1
            molecules += batch_size
            if steps % 50 == 0:
                loss = float(metrics["loss"])
                print(f"{(trained + time.perf_counter() - t0) / 60:5.1f} min, step {steps}, loss {loss:.4f}",
                      flush=True)
        trained += time.perf_counter() - t0
        if target == minutes:
            break
        t1 = time.perf_counter()
        pos, atoms, mask = draw(state.ema_params, jax.random.key(seed + 2), curve_samples)
        s = task.score(pos, atoms, mask, elements, rdkit=False)
        rows.append({"minutes": round(trained / 60, 1), "steps": steps, "epochs": round(molecules / len(xh), 3), **s})
        print(f"curve: {rows[-1]} (evaluated in {time.perf_counter() - t1:.0f} s)", flush=True)
    seen = task.training_smiles(train, config.data, elements)
    t1 = time.perf_counter()
    pos, atoms, mask = draw(state.ema_params, jax.random.key(seed + 3), num_samples)
    final = task.score(pos, atoms, mask, elements, rdkit=True, train_smiles=seen)
    sample_seconds = time.perf_counter() - t1
    stochastic = []
    for churn in churns:
        draw_c = sampler(make_config(hidden, num_blocks, batch_size, lr, num_steps, churn, sin_embedding), net, pre,
                         counts, chunk)
        p, a, m = draw_c(state.ema_params, jax.random.key(seed + 3), num_samples)
        stochastic.append({"s_churn": churn, **task.score(p, a, m, elements, rdkit=True, train_smiles=seen)})
        print(f"edm, s_churn {churn}: {stochastic[-1]}", flush=True)
    curve_final = task.score(pos[:curve_samples], atoms[:curve_samples], mask[:curve_samples], elements, rdkit=False)
    rows.append({"minutes": round(trained / 60, 1), "steps": steps, "epochs": round(molecules / len(xh), 3),
                 **curve_final})
    real = np.random.default_rng(0).permutation(len(test["index"]))[:num_samples]
    floor = task.score(test["positions"][real], test["atoms"][real], test["mask"][real], elements, rdkit=True,
                       train_smiles=seen)
    outputs.npz("samples.npz", positions=pos, atoms=atoms, mask=mask)

    def write_params(path):
        with open(path, "wb") as f:
            f.write(serialization.to_bytes(state.ema_params))

    outputs.save("ema_params.msgpack", write_params)
    task.draw(pos, atoms, mask, elements, outputs)
    result = {"minutes": minutes, "steps": steps, "epochs": round(molecules / len(xh), 3), "train_size": len(xh),
              "num_params": int(sum(x.size for x in jax.tree.leaves(state.params))), "curve": rows,
              "final": final, "stochastic": stochastic, "real_floor": floor, "qm9_floor": qm9_floor(),
              "published": PUBLISHED, "num_samples": num_samples,
              "sample_seconds": round(sample_seconds, 1), "sampler": f"heun, {num_steps} steps",
              "model": {"hidden": hidden, "num_blocks": num_blocks, "sin_embedding": sin_embedding},
              "batch_size": batch_size, "lr": lr}
    outputs.json("results.json", result)
    outputs.text("results.md", markdown(result))
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    """The curve and the final table as markdown."""
    lines = ["| minutes | steps | epochs | atom stability | molecule stability |", "|---|---|---|---|---|"]
    lines += [f"| {r['minutes']} | {r['steps']} | {r['epochs']} | {r['atom_stability']:.3f} | "
              f"{r['molecule_stability']:.3f} |" for r in result["curve"]]
    keys = ("atom_stability", "molecule_stability", "validity", "uniqueness", "valid_unique", "novelty")
    lines += ["", "| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    rows = [(result["sampler"], result["final"])]
    rows += [(f"edm, s_churn {r['s_churn']:g}", r) for r in result["stochastic"]]
    for name, r in [(f"EDM-3D here ({s})", r) for s, r in rows] + [("held-out real molecules", result["real_floor"]),
                    ("all QM9 geometries", result["qm9_floor"]), ("Hoogeboom et al. (published)", result["published"])]:
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if k in r else "" for k in keys) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_float("minutes", 30.0, "Training wall-clock budget in CPU minutes (evaluation excluded).")
    flags.DEFINE_string("out", "workdir/molecules3d_bench", "Where results.json, results.md and molecules.png go.")
    flags.DEFINE_integer("hidden", 64, "EGNN width.")
    flags.DEFINE_integer("num_blocks", 4, "EGNN blocks.")
    flags.DEFINE_integer("batch_size", 64, "Molecules per step.")
    flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")
    flags.DEFINE_integer("num_steps", 25, "Heun steps of the sampler (2 * steps - 1 network calls).")
    flags.DEFINE_list("curve", ["2", "5", "10", "20"], "Training minutes at which the stability is measured.")
    flags.DEFINE_integer("curve_samples", 100, "Molecules sampled at each point of the curve.")
    flags.DEFINE_integer("num_samples", 500, "Molecules sampled at the end.")
    flags.DEFINE_integer("chunk", 50, "Molecules per sampler call.")
    flags.DEFINE_integer("seed", 0, "Initialisation, data and sampling seed.")
    flags.DEFINE_list("churn", [], "s_churn values of EDM's stochastic sampler: one more final row each.")
    flags.DEFINE_bool("sin_embedding", False, "Sinusoidal distance features in the EGNN (Hoogeboom et al.'s).")
    FLAGS = flags.FLAGS

    def run(argv):
        del argv
        if FLAGS.minutes <= 0:
            raise app.UsageError(f"--minutes must be > 0, got {FLAGS.minutes}")
        curve = [float(c) for c in FLAGS.curve if 0 < float(c) < FLAGS.minutes]
        os.makedirs(FLAGS.out, exist_ok=True)
        main(FLAGS.minutes, FLAGS.out, hidden=FLAGS.hidden, num_blocks=FLAGS.num_blocks, batch_size=FLAGS.batch_size,
             lr=FLAGS.lr, num_steps=FLAGS.num_steps, curve=curve, curve_samples=FLAGS.curve_samples,
             num_samples=FLAGS.num_samples, chunk=FLAGS.chunk, seed=FLAGS.seed,
             churns=tuple(float(c) for c in FLAGS.churn), sin_embedding=FLAGS.sin_embedding)

    app.run(run)
