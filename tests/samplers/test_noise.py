"""Noise sources: i.i.d. Gaussian and the virtual Brownian tree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules, sdeint
from jaxdiff.denoisers import gaussian_denoiser
from jaxdiff.samplers.noise import BrownianTreeNoise, gaussian

KEY = jax.random.key(0)


def test_gaussian_source():
    a = gaussian(KEY, 3, 1.0, 0.5, (1000,), jnp.float32)
    np.testing.assert_array_equal(a, gaussian(KEY, 3, 2.0, 0.1, (1000,), jnp.float32))
    assert float(jnp.abs(a - gaussian(KEY, 4, 1.0, 0.5, (1000,), jnp.float32)).max()) > 0.1
    assert abs(float(a.std()) - 1) < 0.1
    with pytest.raises(ValueError, match="key is required"):
        gaussian(None, 0, 1.0, 0.5, (2,), jnp.float32)


def _increments(tree, grid, shape, dtype=jnp.float32):
    """Unnormalised increments W(grid[k+1]) - W(grid[k]): (len(grid) - 1, *shape)."""
    def inc(s, sn):
        return tree(KEY, 0, s, sn, shape, dtype) * jnp.sqrt(jnp.abs(sn - s))

    return jax.vmap(inc)(grid[:-1], grid[1:])


def test_brownian_tree_consistent_across_step_counts(x64):
    """The same key gives one path: fine increments sum to the coarse increment, whatever the grid."""
    tree = BrownianTreeNoise(0.002, 80.0)
    shape = (4, 3)
    coarse = schedules.karras(5, 0.002, 80.0, dtype=jnp.float64)[:-1]
    fine = schedules.karras(37, 0.002, 80.0, dtype=jnp.float64)[:-1]
    total = _increments(tree, fine, shape, jnp.float64).sum(0)
    np.testing.assert_allclose(total, _increments(tree, coarse, shape, jnp.float64).sum(0), atol=1e-10)
    w_end = tree.w(KEY, 0.002, shape, jnp.float64) - tree.w(KEY, 80.0, shape, jnp.float64)
    np.testing.assert_allclose(total, w_end, atol=1e-10)
    np.testing.assert_array_equal(tree.w(KEY, 0.002, shape, jnp.float64), 0)
    # out-of-range levels clip to the interval
    np.testing.assert_array_equal(tree.w(KEY, 100.0, shape, jnp.float64), tree.w(KEY, 80.0, shape, jnp.float64))


def test_brownian_tree_increment_statistics():
    """Normalised increments over a non-dyadic grid are N(0, 1), independent across intervals, and
    overlapping intervals correlate as sqrt(|short| / |long|) (dpmpp_sde's two draws per step)."""
    tree = BrownianTreeNoise(0.002, 80.0)
    n = 20000
    grid = jnp.array([80.0, 31.0, 7.3, 1.1, 0.37, 0.0213, 0.002])
    z = jax.vmap(lambda s, sn: tree(KEY, 0, s, sn, (n,), jnp.float32))(grid[:-1], grid[1:])
    np.testing.assert_allclose(z.mean(1), 0, atol=0.04)
    np.testing.assert_allclose(z.var(1), 1, atol=0.05)
    corr = np.corrcoef(np.asarray(z))
    np.testing.assert_allclose(corr - np.eye(len(z)), 0, atol=0.04)
    long, short = tree(KEY, 0, 2.0, 0.5, (n,), jnp.float32), tree(KEY, 1, 2.0, 1.25, (n,), jnp.float32)
    np.testing.assert_allclose(np.corrcoef(long, short)[0, 1], np.sqrt(0.75 / 1.5), atol=0.03)
    np.testing.assert_array_equal(tree(KEY, 0, 1.0, 1.0, (3,), jnp.float32), 0)  # empty interval


def test_brownian_tree_key_and_depth():
    tree = BrownianTreeNoise(0.1, 10.0)
    a = tree(KEY, 0, 5.0, 2.0, (100,), jnp.float32)
    np.testing.assert_array_equal(a, tree(KEY, 7, 5.0, 2.0, (100,), jnp.float32))
    assert float(jnp.abs(a - tree(jax.random.key(1), 0, 5.0, 2.0, (100,), jnp.float32)).max()) > 0.1
    with pytest.raises(ValueError, match="key is required"):
        tree(None, 0, 5.0, 2.0, (2,), jnp.float32)
    with pytest.raises(ValueError, match="depth"):
        BrownianTreeNoise(0.1, 10.0, depth=-1)


def test_brownian_tree_in_sampler_is_jittable():
    denoiser = gaussian_denoiser(jnp.zeros((2,)), var=1.0)
    x = 10.0 * jax.random.normal(jax.random.key(1), (16, 2))
    sigmas = schedules.karras(8, 0.01, 10.0)
    tree = BrownianTreeNoise(0.01, 10.0)
    run = jax.jit(lambda x, key: samplers.dpmpp_2m_sde(denoiser, x, sigmas, key=key, noise=tree))
    out = run(x, KEY)
    eager = samplers.dpmpp_2m_sde(denoiser, x, sigmas, key=KEY, noise=tree)
    np.testing.assert_allclose(out, eager, rtol=1e-5, atol=1e-5)
    assert bool(jnp.all(jnp.isfinite(out)))


def test_brownian_tree_noise_is_the_virtual_brownian_tree(x64):
    """The samplers' Brownian noise is an adapter over ``sdeint.VirtualBrownianTree``: W(σ) is the
    tree's B(u) on [0, 1] at u = (σ - σ_min) / (σ_max - σ_min), scaled by sqrt(σ_max - σ_min)."""
    source = BrownianTreeNoise(0.5, 4.5, depth=12)
    tree = sdeint.VirtualBrownianTree(0.0, 1.0, KEY, shape=(3,), depth=12, dtype=jnp.float64)
    np.testing.assert_allclose(source.w(KEY, 2.5, (3,), jnp.float64), 2.0 * tree.evaluate(0.5), rtol=1e-12)
    np.testing.assert_allclose(source(KEY, 0, 4.5, 0.5, (3,), jnp.float64), tree.increment(1.0, 0.0), rtol=1e-12)
