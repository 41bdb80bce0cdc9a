"""The property regressor: invariances, padding, chunked prediction, and a small overfit of a geometric property."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.data.qm9_3d import one_hot
from jaxdiff.molecules3d import regressor, syco
from jaxdiff.train import create_train_state, make_train_step

MODEL = regressor.PropertyRegressor(num_properties=2, hidden=32, num_blocks=2)
SMILES = ["Cc1ccccc1", "CC#N", "CC(C)=O", "OCC1CC(F)C1N"]
SCALES = (1.0, 1.25)  # every molecule twice, the second stretched: same atoms, another geometry


def gyration(x, mask):
    """(B,) mean squared distance of the real atoms from their centre: a property only geometry gives."""
    m = mask[..., None]
    centre = (x * m).sum(1) / m.sum(1)
    return (((x - centre[:, None]) ** 2).sum(-1) * mask).sum(1) / mask.sum(1)


@pytest.fixture(scope="module")
def batch():
    data = syco.build_conformers(SMILES, seed=0)
    x = np.concatenate([s * np.asarray(data["positions"], np.float32) for s in SCALES])
    mask, atoms = np.tile(np.asarray(data["mask"]), (2, 1)), np.tile(data["atoms"], (2, 1))
    g, n = gyration(x, mask), mask.sum(1)
    targets = np.stack([(g - g.mean()) / g.std(), (n - n.mean()) / n.std()], -1).astype(np.float32)
    return {"positions": jnp.asarray(x), "features": jnp.asarray(one_hot(atoms, len(syco.ATOM_TYPES))),
            "mask": jnp.asarray(mask), "targets": jnp.asarray(targets)}


@pytest.fixture(scope="module")
def trained(batch):
    params = MODEL.init(jax.random.key(0), batch["positions"], batch["features"], batch["mask"])["params"]
    optimizer = optax.adam(3e-3)
    step = make_train_step(regressor.regressor_loss(MODEL), optimizer, batch_size=len(SMILES) * len(SCALES), ema_halflife_nimg=1.0)
    train = jax.jit(lambda state: jax.lax.scan(lambda s, _: step(s, batch), state, length=800))
    state, metrics = train(create_train_state(params, optimizer, jax.random.key(1)))
    return state.params, float(metrics["loss"][0]), float(metrics["loss"][-1])


def test_invariant_to_rigid_motions_permutations_and_padding(batch, trained):
    params = trained[0]
    x, h, m = (np.asarray(batch[k]) for k in ("positions", "features", "mask"))
    out = regressor.predict(MODEL, params, x, h, m)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    q[:, 0] *= -np.sign(np.linalg.det(q))  # a reflection as well as a rotation
    moved = (x @ q.astype(np.float32) + np.array([1.0, -2.0, 0.5], np.float32)) * m[..., None]
    np.testing.assert_allclose(regressor.predict(MODEL, params, moved, h, m), out, rtol=1e-5, atol=1e-4)
    perm = np.concatenate([np.random.default_rng(1).permutation(7), np.arange(7, x.shape[1])])  # toluene: 7 atoms
    np.testing.assert_allclose(regressor.predict(MODEL, params, x[:1, perm], h[:1, perm], m[:1, perm]), out[:1],
                               rtol=1e-5, atol=1e-4)
    pad = lambda a, v: np.concatenate([a, np.full(a.shape[:1] + (2,) + a.shape[2:], v, a.dtype)], 1)
    padded = regressor.predict(MODEL, params, pad(x, 7.0), pad(h, 1.0), pad(m, False))
    np.testing.assert_allclose(padded, out, rtol=1e-5, atol=1e-4)


def test_chunked_prediction_matches_one_call(batch, trained):
    args = [np.asarray(batch[k]) for k in ("positions", "features", "mask")]
    whole = MODEL.apply({"params": trained[0]}, *args)
    np.testing.assert_allclose(regressor.predict(MODEL, trained[0], *args, chunk=3), whole, rtol=1e-5, atol=1e-5)


def test_overfit_reads_the_geometry(batch, trained):
    """Each molecule appears with the same atoms at two sizes: fitting the radius of gyration needs the positions."""
    params, first, last = trained
    assert last < 0.1 * first, (first, last)
    pred = regressor.predict(MODEL, params, *(np.asarray(batch[k]) for k in ("positions", "features", "mask")))
    np.testing.assert_allclose(pred, batch["targets"], atol=0.15)
