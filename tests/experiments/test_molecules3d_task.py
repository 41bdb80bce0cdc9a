"""The 3-D molecule task through the runner (``experiments.run.run``, what ``python -m experiments.run``
calls) on a tiny EGNN, and its config errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from experiments import cli, run
from experiments.checks import ConfigError
from experiments.configs import qm9_3d
from experiments.tasks import molecules3d as task
from jaxdiff.molecules3d.context import molecule_properties, num_heavy_atoms
from jaxdiff.molecules3d.qm9 import geometry_smiles, training_half

TINY = {
    "data.num_train": 256, "model.hidden": 8, "model.num_blocks": 1, "train.batch_size": 8,
    "train.num_steps": 2, "train.log_every": 1, "train.checkpoint_every": 2, "sample.num_steps": 2,
    "sample.sampler": "edm", "sample.options.s_churn": 10.0, "eval.num_samples": 6, "eval.batch_size": 6,
}


def tiny(**changes):
    c = qm9_3d.get_config()
    cli.apply_overrides(c, [f"{k}={v}" for k, v in (TINY | changes).items()])
    return c


def test_runner_trains_samples_in_the_subspace_and_scores(tmp_path):
    wd = str(tmp_path / "run")
    returned = run.run(tiny(), wd, progress=False)
    for name in ("metrics.json", "molecules.png", "samples.npz", "config.json"):
        assert os.path.exists(os.path.join(wd, name)), name
    with open(os.path.join(wd, "metrics.json")) as f:
        m = json.load(f)
    assert m["samples"] == returned["samples"]
    assert m["step"] == 2 and m["num_samples"] == 6 and m["sampler"] == "edm" and m["num_params"] > 0
    for scores in (m["samples"], m["held-out real molecules"]):
        assert set(scores) == {"atom_stability", "molecule_stability", "validity", "uniqueness", "valid_unique",
                               "novelty", "nonfinite"}
        assert all(0 <= v <= 1 for v in scores.values())
    assert m["held-out real molecules"]["atom_stability"] > 0.9
    s = np.load(os.path.join(wd, "samples.npz"))
    mask = s["mask"]
    assert s["positions"].shape == (6, 29, 3) and np.all(s["atoms"][~mask] == -1) and np.all(s["positions"][~mask] == 0)
    assert np.all(s["atoms"][mask] >= 0) and np.all(s["atoms"][mask] < 5)
    centre = s["positions"].sum(axis=1) / mask.sum(axis=1)[:, None]
    # churned (stochastic) sampling kept the centre of mass at zero, up to float32 rounding of the positions
    assert np.abs(centre).max() <= 1e-6 * max(1.0, np.abs(s["positions"]).max())


def test_conditional_runner_draws_targets_jointly_and_scores_the_heavy_atom_count(tmp_path):
    wd = str(tmp_path / "cond")
    config = tiny(**{"data.conditioning": "num_heavy_atoms,gap", "model.sin_embedding": True})
    assert config.data.conditioning == ("num_heavy_atoms", "gap")
    m = run.run(config, wd, progress=False)
    assert "num_heavy_atoms_mae" not in m["held-out real molecules"]
    s = np.load(os.path.join(wd, "samples.npz"))
    train, _, elements = task.load_data(config.data)
    error = np.abs(num_heavy_atoms(s["atoms"], elements) - s["targets"][:, 0])
    assert m["samples"]["num_heavy_atoms_mae"] == pytest.approx(error.mean())
    assert m["samples"]["num_heavy_atoms_mae_shuffled"] >= 0
    props = {tuple(r) for r in molecule_properties(train, ("num_heavy_atoms", "gap"), elements)}
    n = s["mask"].sum(axis=1)
    assert s["targets"].shape == (6, 2) and all(tuple(t) in props for t in s["targets"])  # training molecules'
    assert all(((train["num_atoms"] == k) & (molecule_properties(train, ("gap",), elements)[:, 0] == t[1])).any()
               for k, t in zip(n, s["targets"]))  # ... with their atom counts


def test_conditioning_scores_against_shuffled_targets():
    """A generator that hits every target scores 0; shuffling the targets among molecules of one atom
    count keeps what the count determines (here everything: each size has one heavy-atom count), where
    shuffling over all molecules does not."""
    elements = ("H", "C")
    sizes, heavy = np.array([3, 3, 3, 5, 5, 5, 5]), np.array([1, 1, 1, 4, 4, 4, 4])
    atoms = np.full((7, 5), -1)
    for i, (n, h) in enumerate(zip(sizes, heavy)):
        atoms[i, :n] = [1] * h + [0] * (n - h)
    scores = task.conditioning_scores(atoms, np.stack([heavy, np.zeros(7)], 1), ("num_heavy_atoms", "gap"), elements)
    assert scores["num_heavy_atoms_mae"] == 0 and scores["num_heavy_atoms_mae_same_size"] == 0
    assert scores["num_heavy_atoms_mae_shuffled"] > 0
    assert task.conditioning_scores(atoms, np.zeros((7, 1)), ("gap",), elements) == {}


def test_novelty_is_against_the_molecules_trained_on():
    """A training molecule (moved and rotated) is not novel, a held-out one is; the training set is the
    ``num_train`` subset actually trained on."""
    cfg = tiny().data
    train, test, elements = task.load_data(cfg)
    seen = task.training_smiles(train, cfg, elements)
    assert len(train["index"]) == 256 and 240 < len(seen) <= 256
    held_out = next(i for i, s in enumerate(geometry_smiles(
        {k: v[:50] for k, v in test.items()}, elements)) if s and s not in seen)
    c, s_ = np.cos(0.7), np.sin(0.7)
    turn = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]])
    known = int(np.flatnonzero(geometry_smiles(train, elements) != "")[0])
    pos = np.stack([train["positions"][known] @ turn + 2.0, test["positions"][held_out]])
    atoms = np.stack([train["atoms"][known], test["atoms"][held_out]])
    mask = np.stack([train["mask"][known], test["mask"][held_out]])
    m = task.score(pos, atoms, mask, elements, rdkit=True, train_smiles=seen)
    assert m["validity"] == 1.0 and m["uniqueness"] == 1.0 and m["novelty"] == 0.5
    assert task.score(pos[:1], atoms[:1], mask[:1], elements, rdkit=True, train_smiles=seen)["novelty"] == 0.0
    assert "novelty" not in task.score(pos, atoms, mask, elements, rdkit=True)


def test_half_trains_on_one_half_of_the_split():
    whole, test, _ = task.load_data(tiny(**{"data.num_train": 0}).data)
    halves = [task.load_data(tiny(**{"data.num_train": 0, "data.half": h}).data) for h in ("a", "b")]
    for (train, held_out, _), h in zip(halves, ("a", "b")):
        np.testing.assert_array_equal(train["index"], training_half(whole, h)["index"])
        np.testing.assert_array_equal(held_out["index"], test["index"])
    assert len(halves[0][0]["index"]) + len(halves[1][0]["index"]) == len(whole["index"])


@pytest.mark.parametrize("changes, match", [
    ({"data.name": "zinc"}, "config.data.name: unknown 'zinc'; choose one of qm9"),
    ({"data.num_train": -1}, "config.data.num_train: must be >= 0"),
    ({"data.half": "c"}, "config.data.half: unknown 'c'; choose one of , a, b"),
    ({"model.hidden": 0}, "config.model.hidden: must be > 0, got 0"),
    ({"diffusion.sigma_data": 0.0}, "config.diffusion.sigma_data: must be > 0"),
    ({"sample.sampler": "heun"}, "config.sample.options: sampler 'heun' takes no option 's_churn'"),
    ({"sample.sampler": "pf_ode", "sample.options": "{}"}, "config.sample.sampler: 'pf_ode' is adaptive; choose a fixed-grid sampler"),
    ({"sample.sampler": "nope"}, "config.sample.sampler: "),
    ({"eval.batch_size": 0}, "config.eval.batch_size: must be > 0"),
    ({"data.conditioning": "alpha,weight"},
     "config.data.conditioning: unknown 'weight'; choose one of alpha, gap, homo, lumo, mu, Cv, num_heavy_atoms"),
    ({"data.conditioning": "gap,gap"}, r"config.data.conditioning: names a property twice"),
])
def test_bad_config_fails_at_start_up_naming_the_field(tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        run.check(tiny(**changes), str(tmp_path), "train")
