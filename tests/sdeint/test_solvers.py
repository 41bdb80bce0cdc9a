"""Solver plumbing: pytrees, scalar noise, Brownian-tree input, batching, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.sdeint import (
    VirtualBrownianTree,
    euler_maruyama,
    increments,
    milstein,
    sdeint,
    sra1,
    stochastic_heun,
    time_grid,
)

TS = jnp.linspace(0.0, 1.0, 9)


def test_pytree_state_matches_array_state():
    f = lambda x, t: jax.tree.map(lambda a: -a, x)  # noqa: E731
    g = lambda x, t: jax.tree.map(lambda a: 0.3 * a, x)  # noqa: E731
    dw = increments(jax.random.key(0), TS, (3,))
    x_arr = sdeint(milstein, f, g, jnp.arange(1.0, 4.0), TS, dw)
    tree = sdeint(milstein, f, g, {"a": jnp.arange(1.0, 3.0), "b": jnp.array(3.0)}, TS, {"a": dw[:, :2], "b": dw[:, 2]})
    np.testing.assert_allclose(jnp.concatenate([tree["a"], tree["b"][None]]), x_arr, rtol=1e-6)


def test_scalar_noise_broadcasts_and_save_all():
    dw = increments(jax.random.key(1), TS)  # (8,): one Wiener process for all components
    g = lambda x, t: jnp.array([1.0, 2.0])  # noqa: E731
    xs = sdeint(euler_maruyama, lambda x, t: 0 * x, g, jnp.zeros(2), TS, dw, save_all=True)
    assert xs.shape == (9, 2)
    np.testing.assert_allclose(xs[:, 1], 2 * xs[:, 0], rtol=1e-6)
    np.testing.assert_allclose(xs[-1, 0], dw.sum(), rtol=1e-5)


def test_tree_input_equals_its_grid_increments_and_vmap_batches():
    f = lambda x, t: jnp.sin(x)  # noqa: E731
    g = lambda x, t: jnp.ones_like(x)  # noqa: E731
    bt = VirtualBrownianTree(0.0, 1.0, jax.random.key(2), shape=(5,), depth=6, levy_area=True)
    x0 = jnp.zeros(5)
    from_tree = sdeint(sra1, f, g, x0, TS, bt)
    np.testing.assert_allclose(from_tree, sdeint(sra1, f, g, x0, TS, bt.grid_increments(TS)), rtol=1e-6)
    dw = increments(jax.random.key(3), TS, (4, 5))
    batched = jax.vmap(lambda w: sdeint(stochastic_heun, f, g, x0, TS, w), in_axes=1)(dw)
    np.testing.assert_allclose(batched[2], sdeint(stochastic_heun, f, g, x0, TS, dw[:, 2]), rtol=1e-6)


def test_bad_input_names_the_argument():
    f = lambda x, t: -x  # noqa: E731
    g = lambda x, t: x  # noqa: E731
    x0, dw = jnp.ones(3), jnp.zeros((8, 3))
    with pytest.raises(ValueError, match=r"^f\(x, t\)"):
        sdeint(euler_maruyama, lambda x, t: x[:2], g, x0, TS, dw)
    with pytest.raises(ValueError, match=r"^g\(x, t\)"):
        sdeint(euler_maruyama, f, lambda x, t: jnp.ones((3, 3)), x0, TS, dw)
    with pytest.raises(ValueError, match="ts must be strictly increasing"):
        sdeint(euler_maruyama, f, g, x0, TS.at[3].set(TS[2]), dw)
    with pytest.raises(ValueError, match="ts must be a 1-D"):
        sdeint(euler_maruyama, f, g, x0, TS[:1], dw[:0])
    with pytest.raises(ValueError, match="bm must have a leading step axis"):
        sdeint(euler_maruyama, f, g, x0, TS, dw[:5])
    with pytest.raises(ValueError, match="bm per-step shape"):
        sdeint(euler_maruyama, f, g, x0, TS, jnp.zeros((8, 2)))
    with pytest.raises(ValueError, match="bm must be a pair"):
        sdeint(sra1, f, g, x0, TS, dw)
    with pytest.raises(ValueError, match="dt must be > 0"):
        time_grid(0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="dt must be > 0"):
        time_grid(0.0, 1.0, -0.1)
    np.testing.assert_allclose(time_grid(0.0, 1.0, 0.25), [0, 0.25, 0.5, 0.75, 1.0])


def test_key_draws_noise_in_the_scan(x64):
    f = lambda x, t: jax.tree.map(jnp.negative, x)  # noqa: E731
    g = lambda x, t: jax.tree.map(lambda a: 0.5 * jnp.ones_like(a), x)  # noqa: E731
    keys = jax.random.split(jax.random.key(5), 4000)
    x1 = jax.vmap(lambda k: sdeint(sra1, f, g, {"a": jnp.zeros(2), "b": jnp.zeros(())}, TS, k))(keys)
    # OU from 0: Var X_1 = sigma² (1 - e^{-2}) / 2 per component, independent components.
    for v in (x1["a"][:, 0], x1["a"][:, 1], x1["b"]):
        np.testing.assert_allclose(v.var(), 0.25 * (1 - np.exp(-2.0)) / 2, rtol=0.08)
    assert abs(np.corrcoef(x1["a"][:, 0], x1["b"])[0, 1]) < 0.06
    again = [sdeint(euler_maruyama, f, g, jnp.zeros(2), TS, keys[0]) for _ in range(2)]
    np.testing.assert_array_equal(*again)


def test_key_noise_blocks_with_a_remainder(x64):
    f = lambda x, t: -x  # noqa: E731
    g = lambda x, t: 0.5 * jnp.ones_like(x)  # noqa: E731
    key = jax.random.key(6)
    n = TS.shape[0] - 1
    for block in (1, 3, n, 10 * n):  # full blocks only, a remainder, one block, clipped to n
        path = sdeint(euler_maruyama, f, g, jnp.zeros(2), TS, key, save_all=True, noise_block=block)
        assert path.shape == (n + 1, 2)
        np.testing.assert_array_equal(path[-1], sdeint(euler_maruyama, f, g, jnp.zeros(2), TS, key, noise_block=block))
        # the recorded path satisfies the EM recursion with increments of the right size
        dw = (path[1:] - path[:-1] + jnp.diff(TS)[:, None] * path[:-1]) / 0.5
        assert np.all(np.isfinite(dw)) and 0.2 < float(jnp.mean(dw**2 / jnp.diff(TS)[:, None])) < 3
    keys = jax.random.split(key, 4000)
    ends = {b: jax.vmap(lambda k: sdeint(euler_maruyama, f, g, jnp.zeros(()), TS, k, noise_block=b))(keys)
            for b in (1, 3)}
    for v in ends.values():
        np.testing.assert_allclose(v.var(), 0.25 * (1 - np.exp(-2.0)) / 2, rtol=0.1)
    with pytest.raises(ValueError, match="noise_block"):
        sdeint(euler_maruyama, f, g, jnp.zeros(2), TS, key, noise_block=0)
