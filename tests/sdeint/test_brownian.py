"""Brownian increments, exact coarsening, bridge refinement and the virtual Brownian tree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.sdeint import VirtualBrownianTree, coarsen, increments, path, refine


def test_increments_variance_and_independence(x64):
    ts = jnp.array([0.0, 0.1, 0.4, 1.0])
    dw, hh = increments(jax.random.key(0), ts, (20000,), levy_area=True)
    assert dw.shape == hh.shape == (3, 20000)
    np.testing.assert_allclose(dw.var(1), np.diff(ts), rtol=0.05)
    np.testing.assert_allclose(hh.var(1), np.diff(ts) / 12, rtol=0.05)
    assert np.abs(np.corrcoef(np.concatenate([dw, hh]))[np.triu_indices(6, 1)]).max() < 0.03


def test_coarsen_is_exact_and_has_right_law(x64):
    ts = jnp.linspace(0.0, 1.0, 65)
    dw, hh = increments(jax.random.key(1), ts, (20000,), levy_area=True)
    tc, dwc, hhc = coarsen(ts, dw, hh, factor=8)
    np.testing.assert_allclose(tc, ts[::8])
    np.testing.assert_allclose(dwc, dw.reshape(8, 8, -1).sum(1), atol=1e-12)
    np.testing.assert_allclose(hhc.var(1), np.full(8, 1 / 8 / 12), rtol=0.05)
    assert abs(np.corrcoef(hhc[0], dwc[0])[0, 1]) < 0.03
    with pytest.raises(ValueError, match="factor"):
        coarsen(ts, dw, factor=7)


def test_refine_keeps_points_and_bridges(x64):
    ts = jnp.array([0.0, 0.5, 1.0])
    w = jnp.stack([jnp.zeros(20000), jnp.ones(20000), jnp.zeros(20000)])
    tf, wf = refine(jax.random.key(2), ts, w)
    np.testing.assert_allclose(tf, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(wf[::2], w)
    np.testing.assert_allclose(wf[1].mean(), 0.5, atol=0.01)
    np.testing.assert_allclose(wf[1].var(), 0.5 / 4, rtol=0.05)


@pytest.mark.parametrize("levy_area", [False, True])
def test_tree_same_values_in_any_order_and_resolution(x64, levy_area):
    bt = VirtualBrownianTree(0.0, 2.0, jax.random.key(3), shape=(4,), tol=1e-3, levy_area=levy_area)
    assert bt.depth == 11
    coarse, fine = jnp.linspace(0.0, 2.0, 9), jnp.linspace(0.0, 2.0, 257)
    fine_first = bt.evaluate(fine)[::32]
    backwards = bt.evaluate(coarse[::-1])[::-1]
    mixed = bt.evaluate(jnp.array([1.75, 0.37, 0.0, 1.61, 0.25, 2.0, 0.01, 1.0, 1.99]))
    np.testing.assert_allclose(bt.evaluate(coarse), fine_first, atol=1e-12)
    np.testing.assert_allclose(backwards, fine_first, atol=1e-12)
    np.testing.assert_allclose(np.asarray(mixed)[[2, 4, 7, 0, 5]], np.asarray(fine_first)[[0, 1, 4, 7, 8]], atol=1e-12)
    np.testing.assert_array_equal(backwards[0], np.zeros(4))
    # Increments over a coarse grid are sums over a finer one, also off the dyadic points.
    inc_c, inc_f = bt.grid_increments(coarse + 0.1 * (1 - coarse)), bt.grid_increments(fine + 0.1 * (1 - fine))
    if levy_area:
        np.testing.assert_allclose(inc_c[1], coarsen(fine, *inc_f, factor=32)[2], atol=1e-9)
        inc_c, inc_f = inc_c[0], inc_f[0]
    np.testing.assert_allclose(inc_c, inc_f.reshape(8, 32, 4).sum(1), atol=1e-12)


@pytest.mark.parametrize("levy_area", [False, True])
def test_tree_increments_have_brownian_law(x64, levy_area):
    bt = VirtualBrownianTree(0.0, 1.0, jax.random.key(4), shape=(20000,), depth=12, levy_area=levy_area)
    ts = jnp.array([0.0, 0.13, 0.5, 0.51, 1.0])  # off-dyadic, unequal steps
    out = bt.grid_increments(ts)
    dw = out[0] if levy_area else out
    np.testing.assert_allclose(dw.var(1), np.diff(ts), rtol=0.06)
    assert np.abs(np.corrcoef(dw)[np.triu_indices(4, 1)]).max() < 0.03
    np.testing.assert_allclose(path(dw)[-1], bt.evaluate(ts)[-1], atol=1e-12)
    if levy_area:
        np.testing.assert_allclose(out[1].var(1), np.diff(ts) / 12, rtol=0.06)
        assert np.abs(np.corrcoef(np.concatenate([dw, out[1]]))[np.triu_indices(8, 1)]).max() < 0.03
    s, t = jnp.array(0.13), jnp.array(0.51)
    inc = bt.increment(s, t)
    np.testing.assert_allclose(inc[0] if levy_area else inc, dw[1] + dw[2], atol=1e-12)
    if levy_area:  # H over [s, t] from the two sub-steps' (dW, H)
        sub = coarsen(ts[1:4], dw[1:3], out[1][1:3], factor=2)[2][0]
        np.testing.assert_allclose(inc[1], sub, atol=1e-9)


def test_tree_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="tol"):
        VirtualBrownianTree(0.0, 1.0, key)
    with pytest.raises(ValueError, match="depth"):
        VirtualBrownianTree(0.0, 1.0, key, depth=-1)
    with pytest.raises(ValueError, match="t1"):
        VirtualBrownianTree(1.0, 1.0, key, depth=3)
    with pytest.raises(ValueError, match="ts"):
        VirtualBrownianTree(0.0, 1.0, key, depth=3).grid_increments(jnp.array([0.0, 0.5, 0.5]))
