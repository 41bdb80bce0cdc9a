"""DiffusionNAG's representation of a cell: an operator-type matrix over a fixed 8-node DAG.

The cell's operations move from edges to nodes: node 0 is the input, nodes 1–6 are the operations
of the edges of ``jaxdiff.nag.space.EDGES`` in that order, node 7 is the output. Node ``1 + e``
feeds node ``1 + f`` when edge ``e`` ends where edge ``f`` starts; the input feeds the edges out of
cell node 0, and the edges into cell node 3 feed the output::

    0 → 1, 2, 4      1 → 3, 5      2 → 6      3 → 6      4, 5, 6 → 7

The node order is topological. Every cell shares this DAG (``ADJACENCY``), so a cell is the
matrix alone: ``(8, 7)`` one-hot rows over ``NODE_TYPES`` (input, output, then the five
operations). ``encode`` and ``decode`` convert; ``decode`` reads the argmax of each row, so it
accepts the one-hot matrix, its centred form ``2 A - 1`` and any noisy or generated matrix alike.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxdiff.nag.space import EDGES, NUM_EDGES, OPS, cell_string, check_cells

__all__ = [
    "NODE_TYPES", "NUM_NODES", "NUM_TYPES", "ADJACENCY", "check_adjacency", "reachability",
    "attention_mask", "encode", "decode", "to_networkx",
]

NODE_TYPES = ("input", "output") + OPS
NUM_NODES = NUM_EDGES + 2
NUM_TYPES = len(NODE_TYPES)
_INPUT, _OUTPUT = 0, NUM_NODES - 1  # nodes
_INPUT_TYPE, _OUTPUT_TYPE, _FIRST_OP = 0, 1, 2  # columns of NODE_TYPES


def _adjacency() -> np.ndarray:
    a = np.zeros((NUM_NODES, NUM_NODES), np.int8)
    for e, (i, j) in enumerate(EDGES):
        if i == 0:
            a[_INPUT, 1 + e] = 1
        if j == 3:
            a[1 + e, _OUTPUT] = 1
        for f, (k, _) in enumerate(EDGES):
            if k == j:
                a[1 + e, 1 + f] = 1
    a.flags.writeable = False
    return a


ADJACENCY = _adjacency()


def check_adjacency(adjacency, name: str = "adjacency") -> np.ndarray:
    """``adjacency`` as an int8 ``(8, 8)`` array, or ``ValueError`` naming ``name`` unless it is the
    NAS-Bench-201 DAG ``ADJACENCY`` (the only DAG of this space; ``A[i, j] = 1`` for an edge i → j)."""
    a = np.asarray(adjacency)
    if a.shape != ADJACENCY.shape:
        raise ValueError(f"{name} must be the {NUM_NODES}x{NUM_NODES} NAS-Bench-201 DAG, got shape {a.shape}")
    if not np.array_equal(a != 0, ADJACENCY != 0):
        extra = np.argwhere((a != 0) & (ADJACENCY == 0))
        missing = np.argwhere((a == 0) & (ADJACENCY != 0))
        which = (f"edge {tuple(int(v) for v in extra[0])} is not in it" if len(extra)
                 else f"edge {tuple(int(v) for v in missing[0])} is missing")
        raise ValueError(f"{name} is not the NAS-Bench-201 DAG (jaxdiff.nag.encoding.ADJACENCY): {which}")
    return a.astype(np.int8)


@functools.lru_cache(maxsize=1)
def _closure() -> np.ndarray:
    r = ADJACENCY.astype(bool)
    for k in range(NUM_NODES):  # Floyd–Warshall on booleans
        r = r | (r[:, [k]] & r[[k], :])
    r.flags.writeable = False
    return r


def reachability() -> np.ndarray:
    """``R[i, j]``: a directed path leads from node i to node j (i ≠ j), ``(8, 8)`` bool."""
    return _closure()


def attention_mask() -> np.ndarray:
    """``M[i, j]``: node i may attend to node j, ``(8, 8)`` bool: j = i, j is an ancestor of i, or
    j is a descendant of i. Two operations that lie on no common path (e.g. edges (0→1) and (0→2))
    do not see each other in one attention layer."""
    r = reachability()
    return r | r.T | np.eye(NUM_NODES, dtype=bool)


def encode(cells) -> np.ndarray:
    """Cells ``(B, 6)`` -> operator-type matrices ``(B, 8, 7)`` float32, one-hot rows over ``NODE_TYPES``."""
    cells = check_cells(cells)
    if cells.ndim != 2:
        raise ValueError(f"cells must have shape (B, {NUM_EDGES}), got {cells.shape}")
    types = np.concatenate([np.full((len(cells), 1), _INPUT_TYPE), cells + _FIRST_OP,
                            np.full((len(cells), 1), _OUTPUT_TYPE)], axis=1)
    return np.eye(NUM_TYPES, dtype=np.float32)[types]


def decode(x) -> tuple[np.ndarray, np.ndarray]:
    """Operator-type matrices ``(B, 8, 7)`` (one-hot, centred or noisy) -> ``(cells, valid)``.

    ``cells`` ``(B, 6)`` int64: the argmax over the five operation columns of rows 1–6, always a
    cell of the space (the discretisation to a valid cell). ``valid`` ``(B,)`` bool: the argmax of
    every row over all seven types is already right, i.e. ``input`` on row 0, ``output`` on row 7
    and an operation on rows 1–6 (validity as generated).
    """
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (NUM_NODES, NUM_TYPES):
        raise ValueError(f"x must have shape (B, {NUM_NODES}, {NUM_TYPES}) (operator-type matrices), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite")
    cells = np.argmax(x[:, 1:-1, _FIRST_OP:], axis=-1).astype(np.int64)
    types = np.argmax(x, axis=-1)
    valid = (types[:, 0] == _INPUT_TYPE) & (types[:, -1] == _OUTPUT_TYPE) & np.all(types[:, 1:-1] >= _FIRST_OP, axis=1)
    return cells, valid


def to_networkx(cell):
    """The 8-node DAG of one cell ``(6,)`` as a ``networkx.DiGraph``: node attribute ``op`` (its
    type name), graph attribute ``name`` (the NAS-Bench-201 string)."""
    import networkx as nx

    cell = check_cells(cell, "cell")
    if cell.shape != (NUM_EDGES,):
        raise ValueError(f"cell must have shape ({NUM_EDGES},), got {cell.shape}")
    g = nx.DiGraph(name=cell_string(cell))
    types = ["input"] + [OPS[op] for op in cell] + ["output"]
    for i, t in enumerate(types):
        g.add_node(i, op=t)
    g.add_edges_from((int(i), int(j)) for i, j in np.argwhere(ADJACENCY))
    return g
