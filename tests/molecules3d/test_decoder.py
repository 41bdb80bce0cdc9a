"""SyCo's inverse map: invariances of the decoder's logits, and a small overfit that decodes known graphs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from rdkit import Chem

from jaxdiff.data.qm9_3d import one_hot
from jaxdiff.molecules3d import decoder, syco
from jaxdiff.train import create_train_state, make_train_step

MODEL = decoder.GraphDecoder(hidden=32, num_blocks=2, num_rbf=16)
SMILES = ["Cc1ccccc1", "CC#N", "CC(C)=O", "OCC1CC(F)C1N", "c1cc[nH]c1", "N#CC(=O)O"]


@pytest.fixture(scope="module")
def batch():
    data = syco.build_conformers(SMILES, seed=0)
    return {"positions": jnp.asarray(data["positions"]), "features": jnp.asarray(one_hot(data["atoms"], len(syco.ATOM_TYPES))),
            "mask": jnp.asarray(data["mask"]), "atoms": jnp.asarray(data["atoms"], jnp.int32),
            "bonds": jnp.asarray(data["bonds"], jnp.int32)}


@pytest.fixture(scope="module")
def apply():
    return jax.jit(lambda p, x, h, m: MODEL.apply({"params": p}, x, h, m))


@pytest.fixture(scope="module")
def trained(batch):
    params = MODEL.init(jax.random.key(0), batch["positions"], batch["features"], batch["mask"])["params"]
    loss_fn = decoder.decoder_loss(MODEL, position_noise=0.02)
    optimizer = optax.adam(3e-3)
    step = make_train_step(loss_fn, optimizer, batch_size=len(SMILES), ema_halflife_nimg=1.0)
    train = jax.jit(lambda state: jax.lax.scan(lambda s, _: step(s, batch), state, length=300))
    state, metrics = train(create_train_state(params, optimizer, jax.random.key(1)))
    return state.params, float(metrics["loss"][0]), float(metrics["loss"][-1])


def test_logits_are_invariant_and_permutation_equivariant(batch, trained, apply):
    """Float32: trained logits reach hundreds, so the bound is relative (1e-5) as well as absolute."""
    params = trained[0]
    x, h, m = batch["positions"], batch["features"], batch["mask"]
    atoms, bonds = apply(params, x, h, m)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    moved = apply(params, x @ q.astype(np.float32) + jnp.array([1.0, -2.0, 0.5]) * m[..., None], h, m)
    np.testing.assert_allclose(moved[0], atoms, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(moved[1], bonds, rtol=1e-5, atol=1e-4)
    perm = np.concatenate([np.random.default_rng(1).permutation(7), [7, 8]])  # toluene: 7 real atoms
    permuted = apply(params, x[:1, perm], h[:1, perm], m[:1, perm])
    np.testing.assert_allclose(permuted[0], atoms[:1, perm], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(permuted[1], bonds[:1][:, perm][:, :, perm], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(bonds, np.swapaxes(bonds, 1, 2), atol=1e-5)


def test_overfit_decodes_the_known_graphs(batch, trained, apply):
    params, first, last = trained
    assert last < 0.05 * first, (first, last)
    atoms, bonds = decoder.decode(*apply(params, batch["positions"], batch["features"], batch["mask"]), batch["mask"])
    np.testing.assert_array_equal(atoms, batch["atoms"])
    np.testing.assert_array_equal(bonds, batch["bonds"])
    for k, smiles in enumerate(SMILES):
        assert Chem.MolToSmiles(syco.to_mol(atoms[k], bonds[k])) == Chem.CanonSmiles(smiles)


def test_bad_input_is_named(batch):
    x, h = batch["positions"][:1], batch["features"][:1]
    with pytest.raises(ValueError, match="mask must select at least one point"):
        MODEL.init(jax.random.key(0), x, h, np.zeros((1, 9), bool))
    with pytest.raises(ValueError, match=r"h must have shape \(B, n, F\)"):
        MODEL.init(jax.random.key(0), x, h[0], batch["mask"][:1])
    with pytest.raises(ValueError, match="bond_logits must have shape"):
        decoder.decode(np.zeros((1, 9, 4)), np.zeros((1, 9, 5)), np.ones((1, 9), bool))
    with pytest.raises(ValueError, match="position_noise and feature_noise must be >= 0"):
        decoder.decoder_loss(MODEL, position_noise=-1.0)
