"""Data sources: shipped data sets, 2-D toys and TFDS, all as random-access arrays."""
