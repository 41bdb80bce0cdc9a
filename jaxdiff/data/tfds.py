"""TFDS image data sets through ``tfds.data_source`` (array_record; no TensorFlow needed)."""

from __future__ import annotations

import numpy as np


class TFDSImageSource:
    """Random access to a TFDS image split, images scaled to [-1, 1] float32 (NHWC).

    Uses ``tfds.data_source`` (ArrayRecord), which works without TensorFlow;
    the data set must be prepared (downloaded) once by the user with network.
    """

    def __init__(self, name: str, split: str = "train", *, data_dir: str | None = None):
        import tensorflow_datasets as tfds

        self.name, self.split = name, split
        self._ds = tfds.data_source(name, split=split, data_dir=data_dir)

    def __len__(self) -> int:
        return len(self._ds)

    def get(self, indices: np.ndarray) -> dict:
        records = [self._ds[int(i)] for i in indices]
        image = np.stack([np.asarray(r["image"]) for r in records]).astype(np.float32) / 127.5 - 1.0
        batch = {"image": image}
        if "label" in records[0]:
            batch["label"] = np.asarray([r["label"] for r in records], np.int32)
        return batch
