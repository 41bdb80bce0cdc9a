"""Predictor guidance: the tilt, the predictor gradient, the guided sampler, the predictor loss."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.graphs import discrete as D
from jaxdiff.graphs.graph import Graph, from_ints, pair_mask, permute, to_ints
from jaxdiff.graphs.guidance import (
    PropertyPredictor,
    guidance_grad,
    guide_posterior,
    guided_sample,
    predictor_loss,
)

A, B, N = 3, 3, 5
TRANSITION = D.marginal_transition([0.6, 0.3, 0.1], [0.7, 0.2, 0.1])
# Two graphs: 4 real nodes (atoms 0, 2, 1, 0; bonds 0-1 type 1, 1-2 type 2, 2-3 type 1) and 2 real nodes.
ATOMS = np.array([[0, 2, 1, 0, -1], [1, 1, -1, -1, -1]])
BONDS = np.zeros((2, N, N), int)
for g, i, j, k in [(0, 0, 1, 1), (0, 1, 2, 2), (0, 2, 3, 1), (1, 0, 1, 1)]:
    BONDS[g, i, j] = BONDS[g, j, i] = k
W_NODE = jnp.array([0.5, -1.0, 2.0])
W_EDGE = jnp.array([0.0, 1.0, -0.5])


def linear_predictor(graph: Graph, t: jax.Array) -> jax.Array:
    """y_hat = sum_i <W_NODE, x_i> + sum_{i != j} <W_EDGE, e_ij> (each pair counted twice): (B, 1)."""
    del t
    return ((graph.nodes @ W_NODE).sum(-1) + (graph.edges @ W_EDGE).sum((-2, -1)))[:, None]


def toy_denoiser(graph: Graph, t: jax.Array):
    """A fixed, input-dependent 'denoiser': logits favour the current classes, more so late in time."""
    node_bias = jnp.array([0.3, 0.0, -0.2])
    return 2.0 * graph.nodes * (1 - t)[:, None, None] + node_bias, 1.5 * graph.edges - t[:, None, None, None]


def _graph():
    return from_ints(ATOMS, BONDS, A, B)


def _random_params(predictor: PropertyPredictor, graph: Graph):
    """Initial parameters plus noise, so the zero-initialised readout is not identically 0."""
    params = predictor.init(jax.random.key(0), graph, jnp.zeros(graph.mask.shape[0]))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def test_guide_posterior_closed_form_and_normalised():
    rng = np.random.default_rng(0)
    mask = jnp.array([[True, True, True, False, False]] * 2)
    nodes = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, N, A)), jnp.float32), -1) * mask[..., None]
    edges = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, N, N, B)), jnp.float32), -1)
    edges = edges * pair_mask(mask)[..., None]
    edges = (edges + jnp.swapaxes(edges, 1, 2)) / 2
    grad_x = jnp.broadcast_to(jnp.array([1.0, 0.0, -1.0]), nodes.shape) * mask[..., None]
    grad_e = jnp.broadcast_to(jnp.array([0.0, 2.0, 0.0]), edges.shape) * pair_mask(mask)[..., None]
    probs, grad = Graph(nodes, edges, mask), Graph(grad_x, grad_e, mask)
    for lam in (0.0, 0.5, 3.0):
        out = guide_posterior(probs, grad, lam)
        expect = nodes * jnp.exp(-lam * grad_x)
        expect = expect / jnp.maximum(expect.sum(-1, keepdims=True), 1e-30) * mask[..., None]
        np.testing.assert_allclose(out.nodes, expect, atol=1e-6)
        real = np.asarray(mask)
        np.testing.assert_allclose(np.asarray(out.nodes.sum(-1))[real], 1.0, atol=1e-6)
        np.testing.assert_allclose(np.asarray(out.edges.sum(-1))[np.asarray(pair_mask(mask))], 1.0, atol=1e-6)
        assert np.all(np.asarray(out.nodes)[~real] == 0) and np.all(np.asarray(out.edges)[~real] == 0)
        np.testing.assert_allclose(out.edges, jnp.swapaxes(out.edges, 1, 2), atol=1e-7)
        if lam > 0:  # negative gradient gains mass, positive loses it; the bond class with grad 2 loses
            assert np.all(np.asarray(out.nodes[..., 2] > nodes[..., 2])[real])
            assert np.all(np.asarray(out.nodes[..., 0] < nodes[..., 0])[real])
            assert np.all(np.asarray(out.edges[..., 1] < edges[..., 1])[np.asarray(pair_mask(mask))])
        else:
            chex.assert_trees_all_equal((out.nodes, out.edges), (nodes, edges))


def test_guide_posterior_keeps_zero_classes_and_extreme_scales_finite():
    mask = jnp.array([[True, True]])
    nodes = jnp.array([[[0.0, 0.2, 0.8], [1.0, 0.0, 0.0]]])
    edges = jnp.zeros((1, 2, 2, B)).at[0, 0, 1].set(jnp.array([0.5, 0.5, 0.0])).at[0, 1, 0].set(
        jnp.array([0.5, 0.5, 0.0]))
    grad = Graph(jnp.array([[[-1e6, 1e3, 0.0], [5.0, -5.0, 0.0]]]), jnp.zeros_like(edges), mask)
    out = guide_posterior(Graph(nodes, edges, mask), grad, 1e4)
    chex.assert_tree_all_finite(out.nodes)
    assert out.nodes[0, 0, 0] == 0  # a class with zero probability stays impossible, whatever its gradient
    np.testing.assert_allclose(out.nodes[0, 0], [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out.nodes[0, 1], [1.0, 0.0, 0.0])  # the only supported class keeps all mass
    np.testing.assert_allclose(out.edges, edges, atol=1e-7)


def test_guidance_grad_linear_predictor():
    graph = _graph()
    y_hat = linear_predictor(graph, None)
    target = jnp.array([[1.0], [jnp.nan]])  # the second graph is unguided
    grad = guidance_grad(linear_predictor, graph, jnp.array([0.5, 0.5]), target)
    coef = 2 * (y_hat[0, 0] - 1.0)  # d(y_hat - y)^2 / d y_hat
    real, pairs = np.asarray(graph.mask[0]), np.asarray(pair_mask(graph.mask)[0])
    np.testing.assert_allclose(np.asarray(grad.nodes[0])[real], np.tile(coef * W_NODE, (4, 1)), rtol=1e-6)
    # each unordered pair appears twice in the edge tensor: its gradient is twice an entry's
    np.testing.assert_allclose(np.asarray(grad.edges[0])[pairs], np.tile(2 * coef * W_EDGE, (12, 1)), rtol=1e-6)
    assert np.all(np.asarray(grad.nodes[0])[~real] == 0) and np.all(np.asarray(grad.edges[0])[~pairs] == 0)
    assert np.all(np.asarray(grad.nodes[1]) == 0) and np.all(np.asarray(grad.edges[1]) == 0)
    np.testing.assert_array_equal(grad.edges, jnp.swapaxes(grad.edges, 1, 2))


def test_guidance_grad_tilts_towards_target():
    """A small tilt moves the expected prediction towards the target, from either side."""
    mask = _graph().mask
    uniform = Graph(jnp.full((2, N, A), 1 / A) * mask[..., None],
                    jnp.full((2, N, N, B), 1 / B) * pair_mask(mask)[..., None], mask)
    base = linear_predictor(uniform, None)[:, 0]
    for target in (base + 5.0, base - 5.0):
        grad = guidance_grad(linear_predictor, uniform, jnp.zeros(2), target[:, None])
        tilted = guide_posterior(uniform, grad, 0.01)
        moved = linear_predictor(tilted, None)[:, 0]
        assert np.all(np.abs(np.asarray(moved - target)) < np.abs(np.asarray(base - target)))


def _samplers():
    predictor = PropertyPredictor(A, B, hidden_nodes=16, hidden_edges=8, hidden_global=8, depth=1, num_heads=2)
    predict = functools.partial(predictor.apply, _random_params(predictor, _graph()))
    kw = dict(transition=TRANSITION, num_steps=20, sample_steps=10)
    plain = jax.jit(lambda key, mask: D.sample(toy_denoiser, key, mask, **kw))
    guided = jax.jit(lambda key, mask, target, lam: guided_sample(toy_denoiser, predict, key, mask, target,
                                                                  scale=lam, **kw))
    return plain, guided


def test_zero_scale_matches_unguided_sampler():
    plain, guided = _samplers()
    mask = jnp.arange(N) < jnp.array([5, 3, 4, 1, 5, 2, 5, 4])[:, None]
    target = jnp.linspace(-3, 3, 8)[:, None]
    for seed in range(2):
        key = jax.random.key(seed)
        a, b = plain(key, mask), guided(key, mask, target, 0.0)
        chex.assert_trees_all_equal(a, b)
        c = guided(key, mask, target, 50.0)  # the same compiled function with a large weight changes draws
        assert not np.array_equal(np.asarray(to_ints(a)[0]), np.asarray(to_ints(c)[0]))
        np.testing.assert_array_equal(c.edges, jnp.swapaxes(c.edges, 1, 2))
        assert np.all(np.asarray(c.nodes.sum(-1)) == np.asarray(mask))


def test_guided_sampler_moves_property():
    """Guiding the number of class-2 nodes up (down) yields more (fewer) of them than unguided sampling."""
    def count2(graph, t):
        del t
        return graph.nodes[..., 2].sum(-1, keepdims=True)

    kw = dict(transition=TRANSITION, num_steps=20, sample_steps=10)
    run = jax.jit(lambda key, target, lam: guided_sample(toy_denoiser, count2, key, mask, target, scale=lam, **kw))
    mask = jnp.ones((64, N), bool)
    key = jax.random.key(3)
    counts = {}
    for name, target, lam in (("none", 0.0, 0.0), ("up", 5.0, 1.0), ("down", 0.0, 1.0)):
        out = run(key, jnp.full((64, 1), target), lam)
        counts[name] = float(out.nodes[..., 2].sum(-1).mean())
    assert counts["up"] > counts["none"] + 1.0
    assert counts["down"] < counts["none"] - 0.2


def test_predictor_shapes_invariance_and_padding():
    predictor = PropertyPredictor(A, B, num_targets=2, hidden_nodes=16, hidden_edges=8, hidden_global=8,
                                  depth=2, num_heads=2)
    graph = _graph()
    assert np.all(np.asarray(predictor.apply(predictor.init(jax.random.key(0), graph, 0.0), graph, 0.0)) == 0)
    params = _random_params(predictor, graph)
    t = jnp.array([0.2, 0.7])
    out = predictor.apply(params, graph, t)
    chex.assert_shape(out, (2, 2))
    chex.assert_tree_all_finite(out)
    assert np.all(np.asarray(out) != 0)
    perm = jnp.array([3, 0, 4, 2, 1])
    np.testing.assert_allclose(predictor.apply(params, permute(graph, perm), t), out, rtol=1e-5, atol=1e-5)
    junk = Graph(jnp.where(graph.mask[..., None], graph.nodes, 7.0), graph.edges + 3.0 * ~pair_mask(graph.mask)[
        ..., None], graph.mask)
    np.testing.assert_allclose(predictor.apply(params, junk, t), out, rtol=1e-5, atol=1e-5)


def test_predictor_loss_decreases():
    """A tiny predictor fits the number of class-1 atoms of noisy synthetic graphs."""
    rng = np.random.default_rng(0)
    atoms = rng.integers(0, A, (64, N))
    atoms[rng.random((64, N)) < 0.3] = -1
    bonds = np.triu(rng.integers(0, B, (64, N, N)), 1)
    bonds = bonds + bonds.transpose(0, 2, 1)
    bonds = np.where((atoms[:, :, None] >= 0) & (atoms[:, None, :] >= 0), bonds, 0)
    graph0 = from_ints(atoms, bonds, A, B)
    count = (atoms == 1).sum(1, keepdims=True).astype(np.float32)
    target = jnp.asarray((count - count.mean()) / count.std())
    predictor = PropertyPredictor(A, B, hidden_nodes=16, hidden_edges=8, hidden_global=8, depth=1, num_heads=2)
    params = predictor.init(jax.random.key(0), graph0, jnp.zeros(64))
    opt = optax.adam(5e-3)
    state = opt.init(params)
    loss_fn = functools.partial(predictor_loss, predictor.apply, transition=TRANSITION, num_steps=100)

    @jax.jit
    def step(params, state, key):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, graph0, target, key)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    @jax.jit
    def mean_loss(params):  # fixed noise keys, so the two evaluations compare like with like
        keys = jax.random.split(jax.random.key(1000), 8)
        return jax.vmap(lambda k: loss_fn(params, graph0, target, k)[0])(keys).mean()

    def clean_mse(params):  # nearly noise-free graphs (t = 1 of 100): the learnable part of the task
        return float(((predictor.apply(params, graph0, 0.01) - target) ** 2).mean())

    before, clean_before = mean_loss(params), clean_mse(params)
    for i in range(100):
        params, state, _ = step(params, state, jax.random.key(i))
    after, clean_after = mean_loss(params), clean_mse(params)
    assert after < 0.8 * before, (before, after)  # heavily noised graphs bound the loss away from 0
    assert clean_after < 0.25 * clean_before, (clean_before, clean_after)


def test_bad_inputs():
    graph = _graph()
    t = jnp.zeros(2)
    with pytest.raises(ValueError, match="num_targets"):
        guidance_grad(linear_predictor, graph, t, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="target must be"):
        guidance_grad(linear_predictor, graph, t, jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match="target must be"):
        guidance_grad(linear_predictor, graph, t, jnp.zeros(2))
    grad = guidance_grad(linear_predictor, graph, t, jnp.zeros((2, 1)))
    for lam in (-1.0, float("nan"), float("inf"), [1.0, 2.0], "1"):
        with pytest.raises(ValueError, match="scale"):
            guide_posterior(graph, grad, lam)
    with pytest.raises(ValueError, match="grad must match"):
        guide_posterior(graph, Graph(grad.nodes[:, :3], grad.edges, graph.mask), 1.0)
    kw = dict(transition=TRANSITION, num_steps=10)
    mask = graph.mask
    with pytest.raises(ValueError, match="scale"):
        guided_sample(toy_denoiser, linear_predictor, jax.random.key(0), mask, jnp.zeros((2, 1)), scale=-0.5, **kw)
    with pytest.raises(ValueError, match="num_targets"):
        guided_sample(toy_denoiser, linear_predictor, jax.random.key(0), mask, jnp.zeros((2, 2)), scale=1.0, **kw)
    with pytest.raises(ValueError, match="sample_steps"):
        guided_sample(toy_denoiser, linear_predictor, jax.random.key(0), mask, jnp.zeros((2, 1)), scale=1.0,
                      sample_steps=11, **kw)
    with pytest.raises(ValueError, match="mask"):
        guided_sample(toy_denoiser, linear_predictor, jax.random.key(0), mask.astype(int), jnp.zeros((2, 1)),
                      scale=1.0, **kw)
    predictor = PropertyPredictor(A, B, num_targets=1, hidden_nodes=8, hidden_edges=4, hidden_global=4, depth=1,
                                  num_heads=2)
    params = predictor.init(jax.random.key(0), graph, t)
    with pytest.raises(ValueError, match="num_targets"):
        predictor_loss(predictor.apply, params, graph, jnp.zeros((2, 2)), jax.random.key(0), **kw)
