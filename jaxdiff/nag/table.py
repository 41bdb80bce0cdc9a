"""Property tables: measured properties of the cells of the NAS-Bench-201 space.

A ``PropertyTable`` holds, for a set of isomorphism classes (all 6,466, or a subset), the
representative cell, validation and test accuracy per training seed, parameter count and FLOPs.
Any cell of the space is looked up through its class (``jaxdiff.nag.space.unique_index``), so the
15,625 cells share the 6,466 rows. Tables are ``.npz`` files; ``experiments/bench/nb201_digits.py``
builds the digits table into ``DEFAULT_PATH``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from jaxdiff.nag.space import NUM_UNIQUE, check_cells, unique_cells, unique_index

__all__ = ["PROPERTIES", "DEFAULT_PATH", "PropertyTable", "load_table"]

PROPERTIES = ("val_acc", "test_acc", "params", "flops")
DEFAULT_PATH = "~/.cache/jaxdiff/nag/nb201_digits_v1.npz"


@dataclasses.dataclass(frozen=True, eq=False)
class PropertyTable:
    """Measured properties of ``N`` isomorphism classes.

    Attributes:
        classes: ``(N,)`` int64, indices into ``jaxdiff.nag.space.unique_cells`` (sorted, distinct).
        val_acc: ``(N, S)`` validation accuracy after training with each of ``S`` seeds (NaN where a
            seed did not train the cell: the seeds after the first may cover a subset, the noise floor).
        test_acc: ``(N, S)`` test accuracy, same runs.
        params: ``(N,)`` trainable parameters.
        flops: ``(N,)`` multiply-accumulates per image.
        info: how the table was made (skeleton, data, seeds, build time, machine).
    """

    classes: np.ndarray
    val_acc: np.ndarray
    test_acc: np.ndarray
    params: np.ndarray
    flops: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        classes = np.asarray(self.classes, np.int64)
        n = classes.shape[0]
        if classes.ndim != 1 or np.any(np.diff(classes) <= 0) or (n and (classes[0] < 0 or classes[-1] >= NUM_UNIQUE)):
            raise ValueError(f"classes must be sorted distinct indices in [0, {NUM_UNIQUE}), got shape {classes.shape}")
        for name in ("val_acc", "test_acc"):
            a = np.asarray(getattr(self, name))
            if a.ndim != 2 or a.shape[0] != n:
                raise ValueError(f"{name} must have shape ({n}, num_seeds), got {a.shape}")
        for name in ("params", "flops"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {np.shape(getattr(self, name))}")
        rows = np.full(NUM_UNIQUE, -1, np.int64)
        rows[classes] = np.arange(n)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "_rows", rows)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def cells(self) -> np.ndarray:
        """The representative cells ``(N, 6)``."""
        return unique_cells()[self.classes].astype(np.int64)

    def values(self, name: str) -> np.ndarray:
        """Property ``name`` of every row, ``(N,)`` float64: accuracies are averaged over the seeds that
        trained every row (so every row's value has the same noise)."""
        if name not in PROPERTIES:
            raise ValueError(f"name must be one of {PROPERTIES}, got {name!r}")
        v = np.asarray(getattr(self, name), np.float64)
        return v[:, np.isfinite(v).all(0)].mean(1) if v.ndim == 2 else v

    def value_range(self, name: str) -> tuple[float, float]:
        """``(min, max)`` of property ``name`` over the table."""
        v = self.values(name)
        return float(v.min()), float(v.max())

    def check_target(self, name: str, target) -> float:
        """``target`` as a float, or ``ValueError`` naming ``target`` when it lies outside the range of
        property ``name`` over the table (guidance toward it would extrapolate the predictor)."""
        lo, hi = self.value_range(name)
        if not lo <= float(target) <= hi:
            raise ValueError(f"target must lie in the table's range of {name}, [{lo:.6g}, {hi:.6g}], got {target!r}")
        return float(target)

    def rows(self, cells, strict: bool = True) -> np.ndarray:
        """Row of each cell ``(..., 6)`` (through its isomorphism class), shape ``(...)``; a class not in
        the table raises ``ValueError`` naming ``cells`` (``strict``) or gets row -1."""
        rows = self._rows[unique_index(check_cells(cells))]
        if strict and np.any(rows < 0):
            missing = np.asarray(cells)[rows < 0][0] if np.ndim(cells) > 1 else np.asarray(cells)
            raise ValueError(f"cells holds {missing.tolist()}, whose isomorphism class is not in this table "
                             f"({len(self)} of {NUM_UNIQUE} classes)")
        return rows

    def lookup(self, cells, name: str) -> np.ndarray:
        """Property ``name`` of each cell ``(..., 6)``, shape ``(...)``."""
        return self.values(name)[self.rows(cells)]

    def subset(self, rows) -> PropertyTable:
        """The table restricted to ``rows`` (any order; kept sorted by class)."""
        rows = np.unique(np.asarray(rows, np.int64))
        return PropertyTable(self.classes[rows], self.val_acc[rows], self.test_acc[rows], self.params[rows],
                             self.flops[rows], dict(self.info, subset_of=len(self)))

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` (``info`` as JSON)."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, classes=self.classes, val_acc=self.val_acc, test_acc=self.test_acc,
                            params=self.params, flops=self.flops, info=np.array(json.dumps(self.info)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PropertyTable:
        """Read a table written by ``save``."""
        with np.load(Path(path).expanduser()) as f:
            return cls(f["classes"], f["val_acc"], f["test_acc"], f["params"], f["flops"], json.loads(str(f["info"])))


def load_table(path: str | os.PathLike | None = None) -> PropertyTable:
    """The table at ``path`` (default ``DEFAULT_PATH``); ``FileNotFoundError`` saying how to build it."""
    path = Path(path or DEFAULT_PATH).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no property table at {path}; build it with `python -m experiments.bench.nb201_digits` "
                                "(its cost: BENCHMARKS.md, DiffusionNAG)")
    return PropertyTable.load(path)
