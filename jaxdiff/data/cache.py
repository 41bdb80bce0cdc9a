"""Arrays built once and cached on disk as ``.npz``, safe under concurrent processes."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cached_arrays(path: str | os.PathLike, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays saved at ``path``, built by ``build()`` and written there first if missing.

    Concurrent processes build once (a file lock next to ``path``; the others wait) and the file
    appears atomically, so a killed build leaves no partial cache.
    """
    path = Path(path).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                data = build()
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    np.savez(f, **data)
                os.replace(tmp, path)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
