"""Equivariant EDM on the house seam: CoM-free noise and denoiser, and a small overfit on water."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff import losses, precond, samplers, schedules
from jaxdiff.data import qm9_3d
from jaxdiff.molecules3d import diffusion, features
from jaxdiff.molecules3d.egnn import EGNNDynamics
from jaxdiff.nn import as_net

MODEL = EGNNDynamics(hidden=32, num_blocks=2, sublayers=1)
PRE = precond.EDMPrecond(sigma_data=1.0)
STEPS = 800


def pairwise(p) -> np.ndarray:
    """Sorted distances of every point cloud p (S, k, 3): (S, k (k - 1) / 2)."""
    k = p.shape[1]
    d = np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)
    return np.sort(d[:, *np.triu_indices(k, 1)], axis=1)


@pytest.fixture(scope="module")
def water():
    """Water (QM9 index 3) padded to 4 slots, 32 copies: xh (32, 4, 3 + 6) and mask (32, 4)."""
    data = qm9_3d.load_qm9_3d()
    row = np.flatnonzero(data["index"] == 3)[:1]
    h = features.scale_features(qm9_3d.one_hot(data["atoms"][row, :4], 5), data["charges"][row, :4])
    xh = diffusion.pack(data["positions"][row, :4], h, data["mask"][row, :4])
    return {"xh": jnp.repeat(xh, 32, axis=0), "mask": jnp.repeat(data["mask"][row, :4], 32, axis=0)}


@pytest.fixture(scope="module")
def trained(water):
    net = as_net(MODEL)
    loss_fn = diffusion.denoising_loss(net, PRE, losses.EDMNoise(sigma_data=1.0))
    params = jax.jit(MODEL.init)(jax.random.key(0), water["xh"], jnp.zeros(32), water["mask"])["params"]
    optimizer = optax.adam(3e-3)

    @jax.jit
    def evaluate(p):
        keys = jax.random.split(jax.random.key(10_000), 8)
        return jnp.mean(jax.vmap(lambda k: loss_fn(p, water, k)[0])(keys))

    @jax.jit
    def train(params):
        def step(carry, i):
            p, s = carry
            grads, _ = jax.grad(loss_fn, has_aux=True)(p, water, jax.random.key(i))
            updates, s = optimizer.update(grads, s)
            return (optax.apply_updates(p, updates), s), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(STEPS))
        return params

    before = float(evaluate(params))
    params = train(params)
    return net, params, before, float(evaluate(params))


def test_noise_and_pack_live_on_the_subspace():
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    n = np.asarray(diffusion.noise(jax.random.key(0), mask, 6))
    assert n.shape == (2, 4, 9) and np.all(n[~mask] == 0)
    assert np.abs(n[..., :3].sum(axis=1)).max() < 1e-6 and np.abs(n[..., 3:]).min(where=mask[..., None], initial=9) > 0
    np.testing.assert_array_equal(diffusion.free_dimensions(mask, 6), [2 * 3 + 18, 3 + 12])
    xh = np.asarray(diffusion.pack(np.ones((2, 4, 3)) * 7, np.ones((2, 4, 6)), mask))
    assert np.all(xh[..., :3] == 0) and np.all(xh[~mask] == 0) and np.all(xh[mask][:, 3:] == 1)
    with pytest.raises(ValueError, match="mask must select"):
        diffusion.pack(np.ones((1, 4, 3)), np.ones((1, 4, 6)), np.zeros((1, 4), bool))
    with pytest.raises(ValueError, match=r"features must have shape \(B, n, d\)"):
        diffusion.pack(np.ones((1, 4, 3)), np.ones((4, 6)), np.ones((1, 4), bool))


def test_denoiser_is_equivariant_and_com_free(water, trained):
    net, params, _, _ = trained
    D = jax.jit(lambda x, sigma: precond.denoiser(net, params, PRE)(x, sigma, mask=water["mask"][:4]))
    x = water["xh"][:4] + 0.3 * diffusion.noise(jax.random.key(1), water["mask"][:4], 6)
    out = np.asarray(D(x, 0.3))
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotated = np.asarray(D(jnp.concatenate([x[..., :3] @ q, x[..., 3:]], -1), 0.3))
    np.testing.assert_allclose(rotated[..., :3], out[..., :3] @ q, atol=1e-5)
    np.testing.assert_allclose(rotated[..., 3:], out[..., 3:], atol=1e-5)
    assert np.abs(out[..., :3].sum(axis=1)).max() < 1e-5 and np.all(out[:, 3] == 0)


def test_overfits_water_and_heun_samples_its_geometry(water, trained):
    net, params, before, after = trained
    assert after < 0.3 * before, (before, after)
    sigmas = schedules.karras(18, sigma_min=0.002, sigma_max=80.0)
    mask = water["mask"][:16]
    x = diffusion.prior(jax.random.key(5), mask, 6, float(sigmas[0]))
    heun = jax.jit(lambda x: samplers.get("heun").fn(precond.denoiser(net, params, PRE), x, sigmas, mask=mask))
    out = np.asarray(heun(x))
    assert np.all(out[:, 3] == 0) and np.abs(out[:, :3, :3].sum(axis=1)).max() < 1e-5
    one_hot, charges = features.unscale_features(out[:, :3, 3:])
    np.testing.assert_array_equal(np.sort(np.argmax(one_hot, -1), axis=1), np.tile([0, 0, 3], (16, 1)))  # H H O
    expected = np.where(np.argmax(one_hot, -1) == 3, 8, 1)
    assert np.median(np.abs(charges - expected)) < 0.5 and np.abs(charges - expected).max() < 1.5
    error = np.abs(pairwise(out[:, :3, :3]) - pairwise(np.asarray(water["xh"][:1, :3, :3])))
    assert np.median(error) < 0.1 and error.max() < 0.3, error  # O-H 0.96 A, H-H 1.51 A


STOCHASTIC = ("edm", "euler_ancestral", "dpmpp_2m_sde", "restart", "ddpm")
SAMPLER_OPTIONS = {"edm": dict(s_churn=40.0)}


@pytest.fixture(scope="module")
def padded_prior():
    mask = jnp.arange(7)[None, :] < jnp.array([[7], [4], [1]])
    return mask, diffusion.prior(jax.random.key(0), mask, 2, 80.0)


def gaussian_denoiser(x, sigma):
    """The exact denoiser of N(0, I) data on the subspace: linear, so it keeps the state there."""
    return x / (1 + jnp.reshape(sigma, (-1, 1, 1)) ** 2)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_samplers_stay_in_the_subspace_with_subspace_noise(name, padded_prior):
    mask, x = padded_prior
    sigmas = schedules.karras(8, 0.002, 80.0)
    options = SAMPLER_OPTIONS.get(name, {})

    def run(x, noise):
        fn = samplers.get(name).fn
        return jax.jit(lambda x: fn(gaussian_denoiser, x, sigmas, key=jax.random.key(1), noise=noise, **options))(x)

    out = run(x, diffusion.SubspaceNoise(mask))
    com = jnp.sum(out[..., :3], axis=1) / jnp.sum(mask, axis=1)[:, None]
    assert jnp.abs(com).max() <= 1e-6
    assert jnp.all(out[~mask] == 0)
    if name == "edm":  # the control: the default i.i.d. noise leaves the subspace
        free = run(x, samplers.noise.gaussian)
        assert jnp.abs(jnp.sum(free[..., :3] * mask[..., None], axis=1)).max() > 1e-2
        assert jnp.abs(free[~mask]).max() > 1e-2


def test_subspace_noise_is_the_subspace_normal_and_projects_any_base():
    mask = jnp.arange(5)[None, :] < jnp.array([[5], [3]])
    noise = diffusion.SubspaceNoise(mask)
    z = jax.jit(jax.vmap(lambda k: noise(k, 0, 1.0, 0.5, (2, 5, 4), jnp.float32)))(
        jax.random.split(jax.random.key(0), 4000))
    # positions: covariance of the projection (1 - 1/n on the diagonal); features: 1 on real atoms, 0 on padding
    np.testing.assert_allclose(jnp.var(z[:, 0, :, 0]), 1 - 1 / 5, atol=0.05)
    np.testing.assert_allclose(jnp.var(z[:, 1, :3, 1]), 1 - 1 / 3, atol=0.05)
    np.testing.assert_allclose(jnp.var(z[:, 1, :3, 3]), 1.0, atol=0.06)
    assert jnp.all(z[:, 1, 3:] == 0)
    tree = samplers.noise.BrownianTreeNoise(0.01, 1.0)
    w = diffusion.SubspaceNoise(mask, base=tree)(jax.random.key(0), 0, 1.0, 0.5, (2, 5, 4), jnp.float32)
    b = tree(jax.random.key(0), 0, 1.0, 0.5, (2, 5, 4), jnp.float32)
    np.testing.assert_allclose(w, diffusion.pack(b[..., :3], b[..., 3:], mask), atol=1e-6)
    with pytest.raises(ValueError, match="shape must be"):
        noise(jax.random.key(0), 0, 1.0, 0.5, (2, 4, 4), jnp.float32)
    with pytest.raises(ValueError, match="mask must have shape"):
        diffusion.SubspaceNoise(jnp.ones(3, bool))
    with pytest.raises(ValueError, match="key is required"):
        noise(None, 0, 1.0, 0.5, (2, 5, 4), jnp.float32)


def test_sample_masks_follow_the_count_distribution_and_decode_reads_types():
    p = np.array([0, 0.2, 0.0, 0.8])
    masks = np.asarray(diffusion.sample_masks(jax.random.key(0), p, 4000))
    counts = masks.sum(axis=1)
    assert masks.shape == (4000, 3) and set(np.unique(counts)) == {1, 3}
    np.testing.assert_allclose(np.mean(counts == 3), 0.8, atol=0.03)
    np.testing.assert_array_equal(masks, np.arange(3)[None] < counts[:, None])  # real atoms first
    with pytest.raises(ValueError, match="distribution must be probabilities"):
        diffusion.sample_masks(jax.random.key(0), np.array([0.5, 0.5]), 2)
    mask = np.array([[True, True, False]])
    h = features.scale_features(qm9_3d.one_hot(np.array([[3, 0, -1]]), 5), np.array([[8, 1, 0]]))
    xh = diffusion.pack(np.arange(9.0).reshape(1, 3, 3), h, mask)
    pos, atoms = diffusion.decode(xh + 0.05, mask, 5)
    np.testing.assert_array_equal(atoms, [[3, 0, -1]])
    np.testing.assert_allclose(pos, np.where(mask[..., None], xh[..., :3] + 0.05, 0))
    with pytest.raises(ValueError, match="xh must have dims \\+ num_types \\+ 1 = 8 channels"):
        diffusion.decode(xh, mask, 4)
