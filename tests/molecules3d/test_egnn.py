"""EGNN: E(3) and permutation equivariance (with raw or sinusoidal distance features), padding, the
diffusion network's output, the distance embedding's closed form."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxdiff.molecules3d.egnn import EGNN, EGNNDynamics, sin_embedding

B, N, F = 3, 7, 5
MASK = np.array([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4], bool)
TOL = {"float32": 1e-5, "float64": 1e-10}
# the sinusoidal features' shortest period (15/1024 Å) turns float32 rounding of a distance (~1e-7 relative)
# into ~1e-4 of a feature, which the random O(1) weights amplify; float64 keeps the 1e-10 bound
SIN_TOL = {"float32": 5e-3, "float64": 1e-10}


def orthogonal(seed: int, det: float) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) * det > 0 else q * np.array([1.0, 1.0, -1.0])


def inputs(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, N, 3)) * 1.5
    h = rng.normal(size=(B, N, F))
    return x.astype(dtype), h.astype(dtype)


def randomise(params, seed: int):
    """Random O(1) weights, so the coordinate updates are large (the trained init starts them near zero)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, p.shape, p.dtype) * 0.4 for k, p in zip(keys, leaves)])


@pytest.fixture(scope="module", params=[False, True], ids=["raw", "sin"])
def egnn(request):
    model = EGNN(out_features=4, hidden=16, num_blocks=2, sublayers=2, attention=True, sin_embedding=request.param)
    x, h = inputs(np.float32)
    params = randomise(jax.jit(model.init)(jax.random.key(0), h, x, MASK), 1)
    return (jax.jit(lambda h, x, mask: model.apply(params, h, x, mask)), lambda *a: model.apply(params, *a),
            SIN_TOL if request.param else TOL)


@pytest.fixture(scope="module", params=[False, True], ids=["raw", "sin"])
def dynamics(request):
    model = EGNNDynamics(hidden=16, num_blocks=2, sublayers=1, attention=False, tanh=False, sin_embedding=request.param)
    x, h = inputs(np.float32)
    xh = np.concatenate([x, h], axis=-1)
    params = randomise(jax.jit(model.init)(jax.random.key(0), xh, np.zeros(B), MASK), 2)
    return (jax.jit(lambda xh, c, mask: model.apply(params, xh, c, mask)), lambda *a: model.apply(params, *a),
            SIN_TOL if request.param else TOL)


def close(a, b, tol):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()))
    assert np.abs(a - b).max() <= tol * scale, np.abs(a - b).max() / scale


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_egnn_is_e3_and_permutation_equivariant(egnn, dtype):
    egnn, _, tol = egnn
    with jax.enable_x64(dtype == "float64"):
        x, h = inputs(dtype)
        h_out, x_out = egnn(h, x, MASK)
        assert h_out.dtype == dtype and x_out.dtype == dtype
        assert np.abs(np.asarray(x_out) - x * MASK[..., None]).max() > 0.1  # the positions really move
        for det in (1.0, -1.0):
            r = orthogonal(3, det).astype(dtype)
            t = np.array([3.0, -2.0, 0.5], dtype)
            h2, x2 = egnn(h, x @ r + t, MASK)
            close(h2, h_out, tol[dtype])
            close(x2, (np.asarray(x_out) @ r + t) * MASK[..., None], tol[dtype])
        perm = np.random.default_rng(4).permutation(N)  # mixes real and padding slots
        h3, x3 = egnn(h[:, perm], x[:, perm], MASK[:, perm])
        close(h3, np.asarray(h_out)[:, perm], tol[dtype])
        close(x3, np.asarray(x_out)[:, perm], tol[dtype])


def test_padding_changes_nothing(egnn):
    egnn, _, _ = egnn
    x, h = inputs(np.float32)
    h_out, x_out = egnn(h, x, MASK)
    assert np.all(np.asarray(h_out)[~MASK] == 0) and np.all(np.asarray(x_out)[~MASK] == 0)
    rng = np.random.default_rng(5)
    junk_x = np.where(MASK[..., None], x, rng.normal(size=x.shape) * 100).astype(np.float32)
    junk_h = np.where(MASK[..., None], h, rng.normal(size=h.shape) * 100).astype(np.float32)
    h2, x2 = egnn(junk_h, junk_x, MASK)
    np.testing.assert_array_equal(h2, h_out)
    np.testing.assert_array_equal(x2, x_out)
    # more padding slots: the real atoms' outputs are unchanged
    pad = ((0, 0), (0, 4), (0, 0))
    h4, x4 = egnn(np.pad(h, pad), np.pad(x, pad), np.pad(MASK, pad[:2]))
    close(np.asarray(h4)[:, :N], h_out, 1e-5)
    close(np.asarray(x4)[:, :N], x_out, 1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dynamics_output_is_com_free_translation_invariant_rotation_equivariant(dynamics, dtype):
    dynamics, _, tol = dynamics
    with jax.enable_x64(dtype == "float64"):
        x, h = inputs(dtype)
        c = np.array([-1.0, 0.3, 2.0], dtype)
        out = np.asarray(dynamics(np.concatenate([x, h], -1), c, MASK))
        assert out.shape == (B, N, 3 + F)
        assert np.all(out[~MASK] == 0)
        assert np.abs(out[..., :3].sum(axis=1)).max() <= TOL[dtype] * np.abs(out[..., :3]).max()
        assert np.abs(out[..., :3]).max() > 0.01
        r, t = orthogonal(6, -1.0).astype(dtype), np.array([1.0, 2.0, -3.0], dtype)
        moved = np.asarray(dynamics(np.concatenate([x @ r + t, h], -1), c, MASK))
        close(moved[..., :3], out[..., :3] @ r, tol[dtype])
        close(moved[..., 3:], out[..., 3:], tol[dtype])
        other = np.asarray(dynamics(np.concatenate([x, h], -1), c + 1, MASK))
        assert np.abs(other - out).max() > 1e-3  # the noise level is an input


def test_bad_input(egnn, dynamics):
    """Checked when traced, so also under jit (the mask's values only outside it)."""
    (_, egnn, _), (_, dynamics, _) = egnn, dynamics
    x, h = inputs(np.float32)
    with pytest.raises(ValueError, match="mask must select"):
        egnn(h, x, np.zeros((B, N), bool))
    with pytest.raises(ValueError, match=r"h must have shape \(B, n, F\)"):
        egnn(h[:, :4], x, MASK)
    with pytest.raises(ValueError, match="xh must have shape"):
        dynamics(x, np.zeros(B), MASK)
    with pytest.raises(ValueError, match="c_noise must have shape"):
        dynamics(np.concatenate([x, h], -1), np.zeros(B + 1), MASK)


def test_sin_embedding_closed_form():
    """Hoogeboom et al.'s defaults: 6 frequencies 2π · 4^k / 15, sin then cos of the distance."""
    d = np.array([1.5, 0.0, 7.0])
    with jax.enable_x64(True):
        emb = np.asarray(sin_embedding(np.reshape(d**2, (3, 1))))
        assert emb.shape == (3, 12) and emb.dtype == np.float64
        angle = 2 * np.pi * 4.0 ** np.arange(6) / 15 * np.sqrt(d[:, None] ** 2 + 1e-8)
        np.testing.assert_allclose(emb, np.concatenate([np.sin(angle), np.cos(angle)], -1), rtol=0, atol=1e-12)
        np.testing.assert_allclose(emb[0, [0, 6]], [np.sin(np.pi / 5), np.cos(np.pi / 5)], atol=1e-8)  # 2π/15 · 1.5
    assert sin_embedding(np.ones((2, 5, 5, 1)), max_res=8.0, min_res=1.0, div_factor=2.0).shape == (2, 5, 5, 8)
    with pytest.raises(ValueError, match=r"radial must have shape \(..., 1\)"):
        sin_embedding(np.ones((3, 2)))
    with pytest.raises(ValueError, match="div_factor > 1"):
        sin_embedding(np.ones((3, 1)), div_factor=1.0)
