"""Property conditioning: the network uses the context and stays equivariant with it; the norm and the
joint targets; a tiny conditional EDM overfit on two molecules generates the heavy-atom count it is
asked for."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff import losses, precond, samplers, schedules
from jaxdiff.data.qm9_3d import VOCABULARY, load_qm9_3d, one_hot
from jaxdiff.molecules3d import context, diffusion, features
from jaxdiff.molecules3d.egnn import EGNNDynamics
from jaxdiff.nn import as_net
from tests.molecules3d.test_egnn import MASK, close, inputs, orthogonal, randomise

B, N, F = 3, 7, 5


@pytest.fixture(scope="module")
def conditional():
    model = EGNNDynamics(hidden=16, num_blocks=2, attention=True)
    x, h = inputs(np.float32)
    params = randomise(jax.jit(model.init)(jax.random.key(0), np.concatenate([x, h], -1), np.zeros(B), MASK,
                                  context=np.zeros((B, 2))), 3)
    return jax.jit(lambda xh, c, mask, ctx: model.apply(params, xh, c, mask, context=ctx))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_context_changes_the_output_and_keeps_equivariance(conditional, dtype):
    tol = {"float32": 1e-5, "float64": 1e-10}[dtype]
    with jax.enable_x64(dtype == "float64"):
        x, h = inputs(dtype)
        c, ctx = np.array([-1.0, 0.3, 2.0], dtype), np.array([[0.5, -1.0], [1.5, 0.0], [-2.0, 1.0]], dtype)
        out = np.asarray(conditional(np.concatenate([x, h], -1), c, MASK, ctx))
        assert out.shape == (B, N, 3 + F) and np.all(out[~MASK] == 0)
        r, t = orthogonal(7, -1.0).astype(dtype), np.array([1.0, 2.0, -3.0], dtype)
        moved = np.asarray(conditional(np.concatenate([x @ r + t, h], -1), c, MASK, ctx))
        close(moved[..., :3], out[..., :3] @ r, tol)
        close(moved[..., 3:], out[..., 3:], tol)
        other = np.asarray(conditional(np.concatenate([x, h], -1), c, MASK, ctx + np.array([1.0, 0.0], dtype)))
        assert np.abs(other - out).max() > 1e-3  # the context is an input
        assert np.abs(other[..., :3].sum(axis=1)).max() <= tol * np.abs(other[..., :3]).max()  # still CoM-free
    with pytest.raises(ValueError, match=r"context must have shape \(B, C\) with B = 3"):
        conditional(np.concatenate([x, h], -1).astype(np.float32), np.zeros(B, np.float32), MASK, np.zeros((2, 2)))


def test_norm_properties_and_joint_targets():
    values = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 40.0]])
    norm = context.PropertyNorm.fit(values)
    np.testing.assert_allclose(norm.mean, [3.0, 20.0])
    np.testing.assert_allclose(norm.mad, [4 / 3, 40 / 3])  # mean |v - mean|
    np.testing.assert_allclose(norm(values)[:, 0], [-1.5, 0.0, 1.5], rtol=1e-6)
    with pytest.raises(ValueError, match=r"columns \[1\] are constant"):
        context.PropertyNorm.fit(np.array([[1.0, 2.0], [3.0, 2.0]]))
    counts, targets = context.draw_targets(np.random.default_rng(0), 200, np.array([4, 9, 12]), values)
    pairs = {(int(n), tuple(v)) for n, v in zip(counts, targets)}
    assert pairs == {(4, (1.0, 10.0)), (9, (3.0, 10.0)), (12, (5.0, 40.0))}  # drawn jointly, all three seen
    assert context.num_heavy_atoms(np.array([[0, 1, 2, -1], [0, 0, 0, 3]]), VOCABULARY).tolist() == [2, 1]
    data = load_qm9_3d()
    rows = [int(np.flatnonzero(data["index"] == i)[0]) for i in (1, 2, 25)]  # CH4, NH3, NCCN
    view = {k: v[rows] for k, v in data.items()}
    props = context.molecule_properties(view, ("num_heavy_atoms", "alpha", "gap"), VOCABULARY)
    np.testing.assert_allclose(props[:, 0], [1, 1, 4])
    np.testing.assert_allclose(props[0, 1:], [13.21, 0.5048])  # methane's polarisability (bohr³) and gap (Ha)
    with pytest.raises(ValueError, match="names must be among"):
        context.molecule_properties(view, ("weight",), VOCABULARY)


def test_shuffle_within_size_permutes_inside_each_atom_count():
    sizes = np.array([3, 5, 3, 5, 3, 7])
    values = np.arange(6.0) * 10
    out = context.shuffle_within_size(values, sizes, np.random.default_rng(0))
    for n in (3, 5, 7):
        np.testing.assert_array_equal(np.sort(out[sizes == n]), values[sizes == n])
    assert not np.array_equal(out, values)  # this seed moves something
    with pytest.raises(ValueError, match="values and sizes must describe the same molecules"):
        context.shuffle_within_size(values, sizes[:5], np.random.default_rng(0))


def test_overfit_conditional_model_generates_the_heavy_atom_count_asked_for():
    """NH3 (1 heavy atom) and NCCN (4) have 4 atoms each: only the context tells them apart."""
    data = load_qm9_3d()
    rows = [int(np.flatnonzero(data["index"] == i)[0]) for i in (2, 25)]
    view = {k: v[rows, :4] if v.ndim > 1 else v[rows] for k, v in data.items()}
    h = features.scale_features(one_hot(view["atoms"], 5), view["charges"])
    xh = diffusion.pack(view["positions"], h, view["mask"])
    props = context.molecule_properties(view, ("num_heavy_atoms",), VOCABULARY)
    norm = context.PropertyNorm.fit(props)
    ctx = jnp.asarray(norm(props))
    module = EGNNDynamics(hidden=32, num_blocks=2)
    net, pre = as_net(module), precond.EDMPrecond(sigma_data=1.0)
    loss_fn = diffusion.denoising_loss(net, pre, losses.EDMNoise(P_mean=-1.2, P_std=1.2, sigma_data=1.0))
    params = module.init(jax.random.key(0), xh, jnp.zeros(2), view["mask"], context=ctx)["params"]
    opt = optax.adam(3e-3)

    @jax.jit
    def train(params, key):
        def step(carry, k):
            params, state = carry
            pick = jax.random.randint(k, (32,), 0, 2)
            batch = {"xh": xh[pick], "mask": jnp.asarray(view["mask"])[pick], "context": ctx[pick]}
            grads = jax.grad(lambda p: loss_fn(p, batch, jax.random.fold_in(k, 1))[0])(params)
            updates, state = opt.update(grads, state)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, 600))[0][0]

    params = train(params, jax.random.key(1))
    mask = jnp.ones((32, 4), bool)

    @jax.jit
    def generate(target):
        x = diffusion.prior(jax.random.key(2), mask, 6, 80.0)
        out = samplers.heun(precond.denoiser(net, params, pre), x, schedules.karras(12, 0.002, 80.0), mask=mask,
                            context=jnp.broadcast_to(target, (32, 1)))
        return diffusion.decode(out, mask, 5)[1]

    few = context.num_heavy_atoms(generate(ctx[0]), VOCABULARY)
    many = context.num_heavy_atoms(generate(ctx[1]), VOCABULARY)
    assert few.mean() < 1.5 and many.mean() > 3.5
