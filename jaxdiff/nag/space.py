"""The NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 operations, 5^6 = 15,625 cells, 6,466 unique.

A cell is an integer vector ``(6,)`` of operation indices into ``OPS``, one per edge of ``EDGES``
in NAS-Bench-201's string order ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: edges (0→1), (0→2),
(1→2), (0→3), (1→3), (2→3). Node 0 is the cell's input, node 3 its output, and every node sums
its incoming edges.

Isomorphic cells (the rule of NAS-Bench-201, ``Structure.to_unique_str(consider_zero=True)``,
whose classes number 6,466): node 0 is the expression ``0``; node j's expression is the sorted
list, joined by ``+``, of one term per incoming edge ``i → j``: ``#`` (zero) when the edge is
``none`` or when node i's expression is exactly ``#``; node i's expression itself for
``skip_connect``; ``(expr_i)@op`` for the other operations. Two cells are isomorphic when node 3's
expressions are equal: addition commutes, skip is the identity, and an edge out of a zero node is
zero. Zero terms stay in the sums and a node whose inputs are all zero is ``#`` only when it has one
input (node 1), so cells that compute the same function can still differ (this is the rule whose
count NAS-Bench-201 publishes).

Each class is represented by its first member in the enumeration order of ``all_cells``
(lexicographic in the operation indices); ``unique_cells`` lists the representatives, and
``unique_index`` maps any cell to its class.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

__all__ = [
    "OPS", "EDGES", "NUM_EDGES", "NUM_CELLS", "NUM_UNIQUE", "check_cells", "all_cells", "cell_code",
    "isomorphism_key", "unique_cells", "unique_index", "cell_string", "parse_cell_string",
]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_EDGES = len(EDGES)
NUM_CELLS = len(OPS) ** NUM_EDGES
NUM_UNIQUE = 6466


def check_cells(cells, name: str = "cells") -> np.ndarray:
    """``cells`` as an int64 array ``(..., 6)`` of operation indices; ``ValueError`` naming ``name``
    when the last axis is not 6 or an index lies outside ``[0, 5)`` (the vocabulary ``OPS``)."""
    a = np.asarray(cells)
    if a.ndim < 1 or a.shape[-1] != NUM_EDGES:
        raise ValueError(f"{name} must have shape (..., {NUM_EDGES}) (one operation per edge), got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integer operation indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= len(OPS))
    if bad.any():
        raise ValueError(f"{name} holds operation index {a[bad].flat[0]} outside the vocabulary "
                         f"[0, {len(OPS)}): {', '.join(f'{i}={op}' for i, op in enumerate(OPS))}")
    return a


@functools.lru_cache(maxsize=1)
def _all_cells() -> np.ndarray:
    cells = np.array(list(itertools.product(range(len(OPS)), repeat=NUM_EDGES)), np.int8)
    cells.flags.writeable = False
    return cells


def all_cells() -> np.ndarray:
    """Every cell, ``(15625, 6)`` int8, in lexicographic order: row ``k`` is ``k`` in base 5."""
    return _all_cells()


def cell_code(cells) -> np.ndarray:
    """Row index of each cell in ``all_cells``: the base-5 number of its operations, shape ``(...)``."""
    cells = check_cells(cells)
    return cells @ (len(OPS) ** np.arange(NUM_EDGES - 1, -1, -1))


def isomorphism_key(cell) -> str:
    """NAS-Bench-201's expression of node 3 (the module docstring states the rule); equal keys
    mean isomorphic cells."""
    cell = check_cells(cell, "cell")
    if cell.shape != (NUM_EDGES,):
        raise ValueError(f"cell must have shape ({NUM_EDGES},), got {cell.shape}")
    nodes = {0: "0"}
    for j in (1, 2, 3):
        terms = []
        for (i, target), op in zip(EDGES, cell):
            if target != j:
                continue
            if OPS[op] == "none" or nodes[i] == "#":
                terms.append("#")
            elif OPS[op] == "skip_connect":
                terms.append(nodes[i])
            else:
                terms.append(f"({nodes[i]})@{OPS[op]}")
        nodes[j] = "+".join(sorted(terms))
    return nodes[3]


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[np.ndarray, np.ndarray]:
    """(representatives (6466, 6), class of every cell (15625,))."""
    first: dict[str, int] = {}
    index = np.empty(NUM_CELLS, np.int64)
    reps = []
    for k, cell in enumerate(all_cells()):
        key = isomorphism_key(cell)
        if key not in first:
            first[key] = len(reps)
            reps.append(cell)
        index[k] = first[key]
    reps = np.array(reps, np.int8)
    reps.flags.writeable = False
    index.flags.writeable = False
    return reps, index


def unique_cells() -> np.ndarray:
    """The representative of every isomorphism class, ``(6466, 6)`` int8, in order of first
    appearance in ``all_cells`` (computed once, about half a second)."""
    return _classes()[0]


def unique_index(cells) -> np.ndarray:
    """Isomorphism class of each cell ``(..., 6)``: indices into ``unique_cells``, shape ``(...)``."""
    return _classes()[1][cell_code(cells)]


def cell_string(cell) -> str:
    """NAS-Bench-201's string of a cell, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
    cell = check_cells(cell, "cell")
    if cell.shape != (NUM_EDGES,):
        raise ValueError(f"cell must have shape ({NUM_EDGES},), got {cell.shape}")
    nodes = []
    for j in (1, 2, 3):
        nodes.append("|" + "|".join(f"{OPS[op]}~{i}" for (i, t), op in zip(EDGES, cell) if t == j) + "|")
    return "+".join(nodes)


def parse_cell_string(text: str) -> np.ndarray:
    """The cell ``(6,)`` int64 of a NAS-Bench-201 string; ``ValueError`` naming ``text`` otherwise."""
    try:
        nodes = text.split("+")
        pairs = [term.split("~") for node in nodes for term in node.strip("|").split("|")]
        ops = [OPS.index(op) for op, _ in pairs]
        edges = tuple((int(i), j + 1) for j, node in enumerate(nodes) for i in
                      (term.split("~")[1] for term in node.strip("|").split("|")))
    except ValueError:
        raise ValueError(f"text must be a NAS-Bench-201 cell string such as {cell_string([0] * NUM_EDGES)!r} "
                         f"with operations from {OPS}, got {text!r}") from None
    if edges != EDGES:
        raise ValueError(f"text must list the edges {EDGES} in NAS-Bench-201's order, got {edges} in {text!r}")
    return np.array(ops, np.int64)
