"""3-D views of molecules: one view per molecule, one line per bond, atoms coloured by element."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from jaxdiff.molecules3d.plot import COLOURS, draw_molecules
from tests.molecules3d.test_stability import batch, ethene, water


def test_views_bonds_and_colours():
    pos, atoms = batch(water(), ethene())
    fig = draw_molecules(pos, atoms, cols=2, titles=["water", "ethene"])
    water_ax, ethene_ax = fig.axes
    assert [len(a.lines) for a in fig.axes] == [2, 5] and water_ax.get_title() == "water"
    assert max(line.get_linewidth() for line in ethene_ax.lines) == pytest.approx(1.6)  # the double bond
    colours = water_ax.collections[0].get_facecolors()
    np.testing.assert_allclose(colours[0], to_rgba(COLOURS["O"]))
    np.testing.assert_allclose(colours[1], to_rgba(COLOURS["H"]))
    with pytest.raises(ValueError, match="titles must hold one title per molecule"):
        draw_molecules(pos, atoms, titles=["one"])
    with pytest.raises(ValueError, match="cols must be >= 1"):
        draw_molecules(pos, atoms, cols=0)
