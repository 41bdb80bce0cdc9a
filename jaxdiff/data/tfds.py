"""TFDS image data sets through ``tfds.data_source`` (array_record; no TensorFlow needed)."""

from __future__ import annotations

import numpy as np

from jaxdiff.data.transforms import scale_image


class TFDSSource:
    """Random access to a TFDS image split as stored: ``get(indices)`` for indices (B,) ->
    ``{"image": uint8 (B, H, W, C), "label": int32 (B,)}`` (``label`` where the split has one).

    Uses ``tfds.data_source`` (ArrayRecord), which works without TensorFlow; the data set must be
    prepared (downloaded) once by the user with network. Picklable, so grain workers can read it.
    """

    def __init__(self, name: str, split: str = "train", *, data_dir: str | None = None):
        import tensorflow_datasets as tfds

        self.name, self.split = name, split
        self._ds = tfds.data_source(name, split=split, data_dir=data_dir)

    def __len__(self) -> int:
        return len(self._ds)

    def get(self, indices: np.ndarray) -> dict:
        records = [self._ds[int(i)] for i in indices]
        batch = {"image": np.stack([np.asarray(r["image"], np.uint8) for r in records])}
        if "label" in records[0]:
            batch["label"] = np.asarray([r["label"] for r in records], np.int32)
        return batch


class TFDSImageSource(TFDSSource):
    """A ``TFDSSource`` whose images are scaled to [-1, 1]: ``"image"`` float32 (B, H, W, C)."""

    def get(self, indices: np.ndarray) -> dict:
        batch = super().get(indices)
        return {**batch, "image": scale_image(batch["image"])}
