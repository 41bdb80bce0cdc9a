"""Dense padded graphs: one-hot node and edge classes plus a node mask.

A batch of graphs with at most ``n`` nodes, ``a`` node classes and ``b`` edge
classes (edge class 0 means "no edge") is a :class:`Graph` of

- ``nodes`` (..., n, a): one-hot rows for real nodes, all-zero rows for padding;
- ``edges`` (..., n, n, b): one-hot, symmetric, for every pair of distinct real
  nodes (absent bonds are class 0); the diagonal and any pair touching a padded
  node are all zero;
- ``mask`` (..., n) bool: which nodes are real.

Integer form: ``atoms`` (..., n) int with -1 for padding, ``bonds`` (..., n, n)
int with 0 for "no edge". Probabilities over classes (a denoiser's output, a
posterior) use the same layout with rows summing to one on valid positions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Graph(NamedTuple):
    nodes: jax.Array
    edges: jax.Array
    mask: jax.Array


def pair_mask(mask: jax.Array) -> jax.Array:
    """(..., n) bool -> (..., n, n) bool: both nodes real and ``i != j``."""
    n = mask.shape[-1]
    return mask[..., :, None] & mask[..., None, :] & ~jnp.eye(n, dtype=bool)


def from_ints(atoms: jax.Array, bonds: jax.Array, num_node_classes: int, num_edge_classes: int) -> Graph:
    """Integer graph -> one-hot :class:`Graph`.

    atoms (..., n) int, -1 for padding; bonds (..., n, n) int in [0, b), symmetric.
    """
    atoms, bonds = jnp.asarray(atoms), jnp.asarray(bonds)
    mask = atoms >= 0
    nodes = jax.nn.one_hot(atoms, num_node_classes) * mask[..., None]
    edges = jax.nn.one_hot(bonds, num_edge_classes) * pair_mask(mask)[..., None]
    return Graph(nodes, edges, mask)


def to_ints(graph: Graph) -> tuple[jax.Array, jax.Array]:
    """One-hot (or probability) :class:`Graph` -> (atoms (..., n), bonds (..., n, n)) by argmax.

    Padded atoms become -1; bonds on the diagonal or touching padding become 0.
    """
    atoms = jnp.where(graph.mask, jnp.argmax(graph.nodes, -1), -1)
    bonds = jnp.where(pair_mask(graph.mask), jnp.argmax(graph.edges, -1), 0)
    return atoms, bonds


def apply_mask(graph: Graph) -> Graph:
    """Zero the rows of padded nodes, the diagonal and pairs touching padding."""
    return Graph(graph.nodes * graph.mask[..., None],
                 graph.edges * pair_mask(graph.mask)[..., None], graph.mask)


def symmetrize_upper(edges: jax.Array) -> jax.Array:
    """(..., n, n, b) -> the same with the strict lower triangle mirrored from the upper one."""
    n = edges.shape[-2]
    upper = jnp.triu(jnp.ones((n, n), bool), k=1)[..., None]
    return jnp.where(upper, edges, jnp.swapaxes(edges, -2, -3) * jnp.swapaxes(upper, 0, 1))


def permute(graph: Graph, perm: jax.Array) -> Graph:
    """Relabel nodes: node ``i`` of the result is node ``perm[i]`` of ``graph``. perm (n,) int."""
    return Graph(graph.nodes[..., perm, :], graph.edges[..., perm, :, :][..., perm, :],
                 graph.mask[..., perm])
