"""The files of a run in its workdir, written by process 0 only (every process computes the same values)."""

from __future__ import annotations

import json
import os
from typing import Callable

import jax
import numpy as np


class Outputs:
    """Writes named files into ``workdir``; on processes other than 0 every write is skipped."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.writer = jax.process_index() == 0

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def save(self, name: str, write: Callable[[str], None]) -> None:
        """``write(path)`` for ``workdir/name``."""
        if self.writer:
            write(self.path(name))

    def text(self, name: str, text: str) -> None:
        def write(path):
            with open(path, "w") as f:
                f.write(text)

        self.save(name, write)

    def json(self, name: str, obj) -> None:
        self.text(name, json.dumps(obj, indent=2) + "\n")

    def npz(self, name: str, **arrays: np.ndarray) -> None:
        self.save(name, lambda path: np.savez_compressed(path, **arrays))

    def figure(self, name: str, fig) -> None:
        """Save a matplotlib figure (120 dpi) and close it."""
        import matplotlib.pyplot as plt

        self.save(name, lambda path: fig.savefig(path, dpi=120))
        plt.close(fig)


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: np.ndarray, cols: int) -> np.ndarray:
    """(N, H, W, C) in [-1, 1] -> one (rows*(H+1)+1, cols*(W+1)+1, C) image in [0, 1] with 1-px gaps."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
    for i, img in enumerate(np.clip((images + 1) / 2, 0, 1)):
        r, q = divmod(i, cols)
        out[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = img
    return out
