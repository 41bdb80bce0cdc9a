"""Graph denoisers: shapes, symmetry, equivariance, padding, conditioning, structural features."""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.graphs.graph import Graph, from_ints, permute
from jaxdiff.graphs.nets import (
    ConditionEncoder,
    DiGressTransformer,
    GraphDiT,
    cycle_counts,
    extra_features,
    spectral_features,
)
from jaxdiff.nn.dit import DiTBlock

A, B, N = 4, 3, 6  # node classes, edge classes, node slots
SIZES = (6, 4, 1, 0)  # real nodes per graph of the test batch (the last one empty)
T = jnp.array([0.1, 0.5, 0.9, 0.3])
NAN = float("nan")
# Rows: base; numeric value changed; numeric 0 missing; categorical null.
NUMERIC = jnp.array([[0.5, -1.0], [1.5, -1.0], [NAN, -1.0], [0.5, -1.0]])
CATEGORICAL = jnp.array([[1], [1], [1], [-1]])

COND = dict(num_numeric=2, categorical_sizes=(3,))
MODELS = {
    "dit": GraphDiT(A, B, N, hidden=32, depth=2, num_heads=4, num_clusters=8, **COND),
    "dit_additive_linear": GraphDiT(A, B, N, hidden=32, depth=2, num_heads=4, conditioning="additive",
                                    numeric_encoder="linear", **COND),
    "digress": DiGressTransformer(A, B, hidden_nodes=32, hidden_edges=16, hidden_global=16, depth=2,
                                  num_heads=4, num_eigenvalues=3, **COND),
}


def rbg_key(seed: int) -> jax.Array:
    """A PRNG key whose random ops compile much faster than threefry's (for the jitted inits)."""
    return jax.random.key(seed, impl="rbg")


def random_graph(key: jax.Array, sizes: tuple[int, ...], n: int) -> Graph:
    """Random molecule-like graphs: node i real iff i < sizes[g]."""
    k_atoms, k_bonds = jax.random.split(key)
    atoms = jax.random.randint(k_atoms, (len(sizes), n), 0, A)
    atoms = jnp.where(jnp.arange(n) < jnp.array(sizes)[:, None], atoms, -1)
    bonds = jnp.triu(jax.random.randint(k_bonds, (len(sizes), n, n), 0, B), 1)
    return from_ints(atoms, bonds + jnp.swapaxes(bonds, 1, 2), A, B)


GRAPH = random_graph(jax.random.key(0), SIZES, N)
CYCLE_COUNTS = jax.jit(cycle_counts)
SPECTRAL = jax.jit(spectral_features, static_argnames="k")


@pytest.fixture(scope="module", params=list(MODELS))
def net(request):
    """(name, model, jitted apply, params at init, perturbed params): one compile per model and shape."""
    model = MODELS[request.param]
    @jax.jit
    def init():
        """(params, params + 0.3 N(0, 1)): the second has nonzero adaLN and heads."""
        params = model.init(rbg_key(1), GRAPH, T, NUMERIC, CATEGORICAL)
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(rbg_key(2), len(leaves))
        noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
        return params, jax.tree.unflatten(tree, noisy)

    return request.param, model, jax.jit(model.apply), *init()


def test_shapes_symmetry_finite(net):
    _, _, apply, _, params = net
    nodes, edges = apply(params, GRAPH, T, NUMERIC, CATEGORICAL)
    chex.assert_shape([nodes, edges], [(len(SIZES), N, A), (len(SIZES), N, N, B)])
    np.testing.assert_array_equal(edges, jnp.swapaxes(edges, 1, 2))
    chex.assert_tree_all_finite((nodes, edges))


def test_graph_dit_init_returns_inputs(net):
    name, _, apply, params, _ = net
    if not name.startswith("dit"):
        pytest.skip("Graph-DiT only")
    nodes, edges = apply(params, GRAPH, T, NUMERIC, CATEGORICAL)
    chex.assert_trees_all_equal((nodes, edges), (GRAPH.nodes, GRAPH.edges))


def test_permutation(net):
    name, _, apply, _, params = net
    perm = jnp.array([3, 0, 5, 1, 4, 2])
    nodes, edges = apply(params, GRAPH, T, NUMERIC, CATEGORICAL)
    p_nodes, p_edges = apply(params, permute(GRAPH, perm), T, NUMERIC, CATEGORICAL)
    equivariant = (np.allclose(p_nodes, nodes[:, perm], atol=1e-5)
                   and np.allclose(p_edges, edges[:, perm][:, :, perm], atol=1e-5))
    # Graph-DiT embeds and decodes bond rows by position, so it is not equivariant (by design).
    assert equivariant == (name == "digress")


def test_padding_invariance(net):
    _, _, apply, _, params = net
    small = random_graph(jax.random.key(3), (4, 2, 3, 1), 4)
    k_nodes, k_edges = jax.random.split(jax.random.key(4))
    pad = N - 4
    garbage = Graph(
        jnp.concatenate([small.nodes, jax.random.normal(k_nodes, (4, pad, A)).at[:, 0, 0].set(NAN)], 1),
        jax.random.normal(k_edges, (4, N, N, B)).at[:, :4, :4].set(small.edges).at[:, 0, -1].set(NAN),
        jnp.pad(small.mask, ((0, 0), (0, pad))),
    )
    nodes, edges = apply(params, small, T, NUMERIC, CATEGORICAL)
    p_nodes, p_edges = apply(params, garbage, T, NUMERIC, CATEGORICAL)
    real = small.mask
    both = real[:, :, None] & real[:, None, :]
    # The networks' products run at the device's default precision (the precision policy,
    # docs/design/precision.md): TF32 on recent NVIDIA GPUs, inputs rounded to 11 significant bits.
    # XLA may pick a TF32 kernel for one of the two shapes and a float32 one for the other: the real
    # logits then differ by up to 1.8e-2 (1 + |logit|) (Graph-DiT; DiGress 7e-3, 1.0e-3 seen on an
    # H100), measured on the CPU with TF32-rounded product inputs; 5e-2 covers that. Padding that
    # leaked would carry the NaN garbage into the real logits. On the CPU, float32: 1e-5.
    tol = 1e-5 if jax.default_backend() == "cpu" else 5e-2
    np.testing.assert_allclose(p_nodes[:, :4][real], nodes[real], rtol=tol, atol=tol)
    np.testing.assert_allclose(p_edges[:, :4, :4][both], edges[both], rtol=tol, atol=tol)
    chex.assert_tree_all_finite((p_nodes, p_edges))


def test_conditions_change_output(net):
    _, _, apply, _, params = net
    same = jax.tree.map(lambda x: jnp.repeat(x[:1], len(SIZES), 0), GRAPH)
    nodes, edges = apply(params, same, jnp.full(len(SIZES), 0.5), NUMERIC, CATEGORICAL)
    for row in (1, 2, 3):  # value changed, value missing, categorical null
        assert not np.allclose(nodes[row], nodes[0], atol=1e-4)
        assert not np.allclose(edges[row], edges[0], atol=1e-4)


def test_missing_conditions_finite_grads(net):
    _, _, apply, _, params = net
    numeric = NUMERIC.at[:, 1].set(NAN)
    categorical = jnp.full_like(CATEGORICAL, -1)

    @jax.jit
    def loss(p):
        nodes, edges = apply(p, GRAPH, T, numeric, categorical)
        return (jnp.sum(jax.nn.log_softmax(nodes) * GRAPH.nodes)
                + jnp.sum(jax.nn.log_softmax(edges) * GRAPH.edges))

    value, grads = jax.value_and_grad(loss)(params)
    chex.assert_tree_all_finite((value, grads))
    if "condition" in grads["params"]:  # Graph-DiT: the learned null embeddings are trained
        assert jnp.abs(grads["params"]["condition"]["numeric_null"][1]).max() > 0


def test_adaln_zero_block_is_identity_at_init():
    x = jax.random.normal(jax.random.key(5), (2, N, 32))
    c = jax.random.normal(jax.random.key(6), (2, 32))
    mask = jnp.arange(N) < jnp.array([[6], [3]])
    block = DiTBlock(num_heads=4)
    params = jax.jit(block.init)(rbg_key(7), x, c, mask=mask)
    np.testing.assert_array_equal(jax.jit(block.apply)(params, x, c, mask=mask), x)


@pytest.mark.parametrize("encoder", ["cluster", "linear"])
def test_condition_encoder_none_is_all_missing(encoder):
    enc = ConditionEncoder(16, numeric_encoder=encoder, num_clusters=5, **COND)
    params = jax.jit(enc.init)(rbg_key(8), T, NUMERIC, CATEGORICAL)
    apply = jax.jit(enc.apply)
    missing = apply(params, T, jnp.full((4, 2), NAN), jnp.full((4, 1), -1))
    np.testing.assert_array_equal(apply(params, T), missing)
    chex.assert_tree_all_finite(missing)
    c = apply(params, T, NUMERIC, CATEGORICAL)
    assert c.shape == (4, 16) and not np.allclose(c, missing)


def brute_force_cycles(adj: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """(per node, total) simple k-cycles by enumerating vertex orders."""
    n = len(adj)
    node, total = np.zeros(n), 0
    for subset in itertools.combinations(range(n), k):
        for rest in itertools.permutations(subset[1:]):
            cycle = (subset[0],) + rest
            if rest[0] < rest[-1] and all(adj[cycle[i], cycle[(i + 1) % k]] for i in range(k)):
                total += 1
                node[list(subset)] += 1
    return node, total


def adjacency(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    adj = np.zeros((n, n), np.float32)
    for i, j in edges:
        adj[i, j] = adj[j, i] = 1
    return adj


def complete(n: int) -> np.ndarray:
    return 1 - np.eye(n, dtype=np.float32)


def cycle(n: int) -> np.ndarray:
    return adjacency(n, [(i, (i + 1) % n) for i in range(n)])


def padded(adj: np.ndarray, n: int = 7) -> np.ndarray:
    """Adds isolated nodes up to n (they change no cycle count)."""
    return np.pad(adj, ((0, n - len(adj)), (0, n - len(adj))))


def test_cycle_counts_known_graphs():
    # (graph, 3-cycles through node 0, 4-cycles through node 0, [3-, 4-, 5-, 6-cycles] of the graph)
    cases = [
        (cycle(3), 1, 0, [1, 0, 0, 0]),
        (cycle(4), 0, 1, [0, 1, 0, 0]),
        (complete(4), 3, 3, [4, 3, 0, 0]),
        (cycle(5), 0, 0, [0, 0, 1, 0]),
        (complete(5), 6, 12, [10, 15, 12, 0]),
        (cycle(6), 0, 0, [0, 0, 0, 1]),
        (complete(6), 10, 30, [20, 45, 72, 60]),
    ]
    node, glob = CYCLE_COUNTS(jnp.asarray(np.stack([padded(c[0]) for c in cases])))
    for g, (adj, node3, node4, graph) in enumerate(cases):
        real = len(adj)
        np.testing.assert_allclose(node[g, :real, 0], node3)
        np.testing.assert_allclose(node[g, :real, 1], node4)
        np.testing.assert_allclose(glob[g], graph)
        assert not node[g, real:].any()


def test_cycle_counts_match_brute_force():
    rng = np.random.default_rng(0)
    density = np.array([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])[:, None, None]
    upper = np.triu(rng.random((7, 7, 7)) < density, 1)
    adj = (upper | np.swapaxes(upper, 1, 2)).astype(np.float32)
    node, glob = CYCLE_COUNTS(jnp.asarray(adj))
    for g in range(len(adj)):
        for j, k in enumerate((3, 4, 5, 6)):
            per_node, total = brute_force_cycles(adj[g], k)
            assert glob[g, j] == pytest.approx(total, abs=1e-3)
            if k < 6:
                np.testing.assert_allclose(node[g, :, j], per_node, atol=1e-3)


def test_spectral_features_components_and_padding():
    # Triangle {0,1,2}, edge {3,4}, isolated 5, padded 6, 7; a 4-path; an empty graph.
    adj = np.stack([adjacency(8, [(0, 1), (1, 2), (0, 2), (3, 4)]),
                    adjacency(8, [(0, 1), (1, 2), (2, 3)]), np.zeros((8, 8), np.float32)])
    mask = jnp.arange(8) < jnp.array([[6], [4], [0]])
    components, eigenvalues, largest = SPECTRAL(jnp.asarray(adj), mask, k=5)
    np.testing.assert_array_equal(components, [3, 1, 0])
    path = 2 - 2 * np.cos(np.pi * np.arange(1, 4) / 4)
    np.testing.assert_allclose(eigenvalues, [[2, 3, 3, 0, 0], [*path, 0, 0], [0] * 5], atol=1e-4)
    np.testing.assert_array_equal(largest[0], [1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(largest[1], [1, 1, 1, 1, 0, 0, 0, 0])
    assert not largest[2].any()
    # Fewer padded slots: same features on the real nodes.
    small = SPECTRAL(jnp.asarray(adj[:2, :6, :6]), mask[:2, :6], k=5)
    np.testing.assert_array_equal(small[0], components[:2])
    np.testing.assert_allclose(small[1], eigenvalues[:2], atol=1e-5)
    np.testing.assert_array_equal(small[2], largest[:2, :6])


def test_extra_features_shapes_and_masking():
    node, glob = jax.jit(extra_features, static_argnames="num_eigenvalues")(GRAPH, num_eigenvalues=3)
    chex.assert_shape([node, glob], [(len(SIZES), N, 4), (len(SIZES), 5 + 3)])
    assert not node[~GRAPH.mask].any()
    assert ((node >= 0) & (node <= 1)).all() and jnp.isfinite(glob).all()


def test_bad_arguments():
    dit, digress = MODELS["dit"], MODELS["digress"]
    with pytest.raises(ValueError, match="conditioning"):
        GraphDiT(A, B, N, hidden=8, depth=1, num_heads=2, conditioning="film").init(
            jax.random.key(0), GRAPH, T)
    with pytest.raises(ValueError, match="max_nodes"):
        GraphDiT(A, B, 4, hidden=8, depth=1, num_heads=2).init(jax.random.key(0), GRAPH, T)
    with pytest.raises(ValueError, match="numeric_encoder"):
        ConditionEncoder(8, numeric_encoder="mlp").init(jax.random.key(0), T)
    with pytest.raises(ValueError, match="numeric"):
        dit.init(jax.random.key(0), GRAPH, T, NUMERIC[:, :1], CATEGORICAL)
    with pytest.raises(ValueError, match="categorical"):
        digress.init(jax.random.key(0), GRAPH, T, NUMERIC, CATEGORICAL.astype(jnp.float32))
    with pytest.raises(ValueError, match="graph.edges"):
        digress.init(jax.random.key(0), GRAPH._replace(edges=GRAPH.edges[..., :2]), T)
    with pytest.raises(ValueError, match="t must"):
        dit.init(jax.random.key(0), GRAPH, T[:2])
