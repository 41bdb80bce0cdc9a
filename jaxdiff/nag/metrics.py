"""Generation metrics of sampled cells: validity, uniqueness, novelty and operation statistics."""

from __future__ import annotations

import numpy as np

from jaxdiff.nag.space import NUM_EDGES, OPS, check_cells, unique_index

__all__ = ["op_frequencies", "generation_metrics"]


def op_frequencies(cells) -> np.ndarray:
    """Frequency of each operation on each edge, ``(6, 5)`` (rows sum to 1), of cells ``(N, 6)``, N > 0."""
    cells = check_cells(cells)
    if cells.ndim != 2 or not len(cells):
        raise ValueError(f"cells must have shape (N, {NUM_EDGES}) with N > 0, got {cells.shape}")
    return np.stack([np.bincount(cells[:, e], minlength=len(OPS)) for e in range(NUM_EDGES)]) / len(cells)


def generation_metrics(cells, valid, train_classes, reference_cells) -> dict:
    """Metrics of ``N`` generated cells.

    Args:
        cells: ``(N, 6)`` decoded cells (``encoding.decode``).
        valid: ``(N,)`` bool, the matrix decoded as generated (``decode``'s validity).
        train_classes: isomorphism classes the score model was trained on (indices into ``unique_cells``).
        reference_cells: ``(M, 6)`` cells whose operation statistics the samples should match (the data).

    Returns:
        ``validity`` (fraction valid), ``uniqueness`` (distinct isomorphism classes per valid cell),
        ``novelty`` (fraction of the distinct valid classes outside ``train_classes``),
        ``op_tv`` (total variation between the per-edge operation frequencies of the valid cells and of
        ``reference_cells``, averaged over edges), ``op_frequencies`` ``(6, 5)`` of the valid cells.
    """
    cells = check_cells(cells)
    valid = np.asarray(valid, bool)
    if valid.shape != cells.shape[:1]:
        raise ValueError(f"valid must have shape ({len(cells)},), got {valid.shape}")
    good = cells[valid]
    out = {"num_samples": len(cells), "validity": float(valid.mean())}
    if not len(good):
        return out
    classes = np.unique(unique_index(good))
    freq = op_frequencies(good)
    out.update(uniqueness=len(classes) / len(good),
               novelty=float(np.mean(~np.isin(classes, np.asarray(train_classes)))),
               op_tv=float(0.5 * np.abs(freq - op_frequencies(reference_cells)).sum(1).mean()),
               op_frequencies=freq.round(4).tolist())
    return out
