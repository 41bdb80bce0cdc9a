"""3-D pictures of molecules: atoms coloured by element, bonds from the distance rule of ``stability``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxdiff.molecules3d.stability import ELEMENTS, bond_orders

COLOURS = {"H": "#d9d9d9", "C": "#404040", "N": "#3050f8", "O": "#ff0d0d", "F": "#30c030"}
SIZES = {"H": 20, "C": 60, "N": 60, "O": 60, "F": 60}


def draw_molecules(positions, atoms, mask=None, *, elements: Sequence[str] = ELEMENTS, cols: int = 4,
                   titles: Sequence[str] | None = None, size: float = 2.5) -> Figure:
    """A grid of 3-D views, one per molecule: a scatter of its atoms, a line per bond (thicker for
    higher orders).

    Args:
        positions: (B, n, 3) coordinates in ångström.
        atoms: (B, n) integer indices into ``elements``; -1 (or anything, where ``mask`` is False) on padding.
        mask: (B, n) the real atoms; None means ``atoms >= 0``.
        elements: the element of each atom index, among H C N O F.
        cols: views per row, >= 1.
        titles: B titles (e.g. "stable"), or None.
        size: inches per view.
    """
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    orders = bond_orders(positions, atoms, mask, elements)
    positions, atoms = np.asarray(positions, np.float64), np.asarray(atoms)
    mask = atoms >= 0 if mask is None else np.asarray(mask).astype(bool)
    b = len(positions)
    if titles is not None and len(titles) != b:
        raise ValueError(f"titles must hold one title per molecule ({b}), got {len(titles)}")
    rows = max(1, -(-b // cols))
    fig = Figure(figsize=(size * cols, size * rows))
    for k in range(b):
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        real = np.flatnonzero(mask[k])
        p = positions[k]
        for i, j in zip(*np.nonzero(np.triu(orders[k], 1))):
            ax.plot(*p[[i, j]].T, color="#808080", linewidth=0.8 * orders[k, i, j])
        names = [elements[a] for a in atoms[k, real]]
        ax.scatter(*p[real].T, c=[COLOURS[e] for e in names], s=[SIZES[e] for e in names],
                   edgecolors="black", linewidths=0.3, depthshade=False)
        r = max(np.abs(p[real]).max(), 1.0)
        ax.set(xlim=(-r, r), ylim=(-r, r), zlim=(-r, r))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    return fig
