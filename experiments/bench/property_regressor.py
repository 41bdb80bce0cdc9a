r"""Hoogeboom et al.'s evaluation of a conditional EDM: a property regressor trained on one half of the
training split scores the molecules a model trained on the other half generates for a target property.

    python -m experiments.bench.property_regressor --property=alpha --steps=2000 --out=workdir/regressor_alpha
    python -m experiments.run --config=experiments/configs/qm9_3d.py --workdir=workdir/qm9_3d_alpha \
        --config.data.conditioning=alpha --config.data.half=b --config.train.num_steps=2500
    python -m experiments.bench.property_regressor --property=alpha --out=workdir/regressor_alpha \
        --score=workdir/qm9_3d_alpha

Part 1 (no saved regressor under ``--out``): a ``jaxdiff.molecules3d.regressor.PropertyRegressor`` is
trained for ``--steps`` on half ``a`` of the QM9 training split (``jaxdiff.molecules3d.qm9.training_half``,
with hydrogens), L1 on the property normalised by half a's mean and mean absolute deviation, then scored on
the held-out split (the graph benchmarks' test molecules): its mean absolute error in the property's units
(the protocol's lower bound), next to predicting half a's median (no information) and half a's median per
atom count (the atom count alone). Saves the EMA parameters as ``regressor.msgpack``; later runs with
the same ``--out`` reuse them (and their size).

Part 2 (``--score``, a runner workdir of the ``qm9_3d`` config conditioned on ``--property`` and trained on
half ``b``): the regressor predicts the property of every generated molecule of its ``samples.npz``;
mean absolute error against the molecule's target, against the targets shuffled (Hoogeboom et al.'s "naive"
upper bound: the condition ignored) and shuffled among molecules of one atom count (what the atom count
alone, fixed by sampling, gives), and half a's median per atom count against the targets (their "#Atoms").

Writes ``results.json`` (part 1) or ``score.json`` (part 2) under ``--out``.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("property", "alpha", "A DFT property of jaxdiff.data.qm9_3d.PROPERTIES.")
    flags.DEFINE_integer("steps", 2000, "Training steps of the regressor.")
    flags.DEFINE_integer("batch_size", 64, "Its batch.")
    flags.DEFINE_float("lr", 1e-3, "Its Adam learning rate (after 200 warm-up steps; EMA weights are scored).")
    flags.DEFINE_integer("hidden", 64, "Width of its EGNN.")
    flags.DEFINE_integer("num_blocks", 3, "EGNN blocks.")
    flags.DEFINE_string("out", "workdir/regressor", "Where the regressor and the results go.")
    flags.DEFINE_string("score", None, "A conditional qm9_3d runner workdir whose samples.npz to score.")


def views(prop: str) -> dict:
    """Half a and the held-out split of QM9 with hydrogens, with the property and one-hot atom types."""
    from jaxdiff.data.qm9_3d import VOCABULARY, load_qm9_3d, one_hot
    from jaxdiff.molecules3d.context import molecule_properties
    from jaxdiff.molecules3d.qm9 import split_qm9_3d, training_half

    train, test = split_qm9_3d(load_qm9_3d(True))
    out = {}
    for name, view in (("a", training_half(train, "a")), ("test", test)):
        out[name] = {"positions": view["positions"].astype(np.float32), "mask": view["mask"],
                     "features": one_hot(view["atoms"], len(VOCABULARY)), "num_atoms": view["num_atoms"],
                     "values": molecule_properties(view, [prop], VOCABULARY)}
    return out


def per_count_median(num_atoms, values, query) -> np.ndarray:
    """(len(query),): the median of ``values`` (N, 1) over the molecules of each queried atom count (the
    overall median for a count never seen)."""
    values = np.asarray(values)[:, 0]
    table = {int(n): np.median(values[num_atoms == n]) for n in np.unique(num_atoms)}
    return np.array([table.get(int(n), np.median(values)) for n in query])


def train(data: dict, norm, module):
    from jaxdiff.molecules3d import regressor
    from jaxdiff.train import OptimConfig, create_train_state, make_optimizer, make_train_step

    a = data["a"]
    arrays = {k: a[k] for k in ("positions", "features", "mask")} | {"targets": norm(a["values"])}
    params = jax.jit(module.init)(jax.random.key(0), a["positions"][:2], a["features"][:2], a["mask"][:2])["params"]
    print(f"regressor: {sum(p.size for p in jax.tree.leaves(params)):,} parameters, {len(a['mask']):,} molecules",
          flush=True)
    optimizer = make_optimizer(OptimConfig(learning_rate=FLAGS.lr, warmup_steps=200))
    step = jax.jit(make_train_step(regressor.regressor_loss(module), optimizer, batch_size=FLAGS.batch_size,
                                   ema_halflife_nimg=20_000.0))
    state = create_train_state(params, optimizer, jax.random.key(1))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(1, FLAGS.steps + 1):
        idx = rng.integers(0, len(a["mask"]), FLAGS.batch_size)
        state, metrics = step(state, {k: v[idx] for k, v in arrays.items()})
        if i % 500 == 0 or i == FLAGS.steps:
            print(f"  step {i}: L1 (normalised) {float(metrics['loss']):.4f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return state.ema_params, time.perf_counter() - start


def main(_):
    from flax import serialization

    from jaxdiff.data.qm9_3d import PROPERTIES
    from jaxdiff.molecules3d import regressor
    from jaxdiff.molecules3d.context import PropertyNorm, shuffle_within_size

    if FLAGS.property not in PROPERTIES:
        raise app.UsageError(f"--property must be one of {', '.join(PROPERTIES)}, got {FLAGS.property!r}")
    os.makedirs(FLAGS.out, exist_ok=True)
    path = os.path.join(FLAGS.out, "regressor.msgpack")
    data = views(FLAGS.property)
    norm = PropertyNorm.fit(data["a"]["values"])
    size = {"hidden": FLAGS.hidden, "num_blocks": FLAGS.num_blocks}
    if os.path.exists(path):  # score with the saved regressor's own size
        with open(os.path.join(FLAGS.out, "results.json")) as f:
            settings = json.load(f)["settings"]
        size = {k: settings[k] for k in size}
    module = regressor.PropertyRegressor(num_properties=1, **size)
    template = jax.jit(module.init)(jax.random.key(0), *(data["a"][k][:2] for k in ("positions", "features", "mask")))
    a, test = data["a"], data["test"]

    def predict(params, positions, features, mask):
        return norm.mean + norm.mad * regressor.predict(module, params, positions, features, mask)[:, 0]

    if not os.path.exists(path):
        params, seconds = train(data, norm, module)
        with open(path, "wb") as f:
            f.write(serialization.to_bytes(params))
        truth = test["values"][:, 0]
        pred = predict(params, test["positions"], test["features"], test["mask"])
        result = {"property": FLAGS.property, "unit": PROPERTIES[FLAGS.property], "steps": FLAGS.steps,
                  "train_seconds": round(seconds, 1), "half_a": len(a["mask"]), "test": len(truth),
                  "mae_regressor": float(np.abs(pred - truth).mean()),
                  "mae_median": float(np.abs(np.median(a["values"]) - truth).mean()),
                  "mae_median_per_atom_count": float(np.abs(
                      per_count_median(a["num_atoms"], a["values"], test["num_atoms"]) - truth).mean()),
                  "settings": {k: FLAGS[k].value for k in ("batch_size", "lr", "hidden", "num_blocks")}}
        with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result, indent=1), flush=True)
    if FLAGS.score:
        from jaxdiff.data.qm9_3d import VOCABULARY, one_hot

        with open(path, "rb") as f:
            params = serialization.from_bytes(template["params"], f.read())
        with open(os.path.join(FLAGS.score, "config.json")) as f:
            conditioning = list(json.load(f)["data"]["conditioning"])
        if FLAGS.property not in conditioning:
            raise app.UsageError(f"--score: {FLAGS.score} is conditioned on {conditioning}, not {FLAGS.property!r}")
        s = np.load(os.path.join(FLAGS.score, "samples.npz"))
        target = s["targets"][:, conditioning.index(FLAGS.property)]
        mask, atoms = s["mask"], s["atoms"]
        finite = np.all(np.isfinite(s["positions"]), axis=(1, 2))
        pos = np.where(finite[:, None, None], s["positions"], 0.0).astype(np.float32)
        pred = predict(params, pos, one_hot(np.where(mask, atoms, -1), len(VOCABULARY)), mask)
        sizes = mask.sum(1)
        rng = np.random.default_rng(0)
        same_size = shuffle_within_size(target, sizes, rng)
        result = {"property": FLAGS.property, "samples": len(target), "nonfinite": int((~finite).sum()),
                  "mae": float(np.abs(pred - target)[finite].mean()),
                  "mae_shuffled": float(np.abs(pred - rng.permutation(target))[finite].mean()),
                  "mae_shuffled_same_size": float(np.abs(pred - same_size)[finite].mean()),
                  "mae_atom_count": float(np.abs(per_count_median(a["num_atoms"], a["values"], sizes) - target).mean()),
                  "correlation": float(np.corrcoef(pred[finite], target[finite])[0, 1])}
        with open(os.path.join(FLAGS.out, "score.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result, indent=1), flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
