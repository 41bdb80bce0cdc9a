"""Optical flow: correlation volumes, pyramids and RAFT-style lookup (here, from ``jaxdiff.flow.corr``, which
runs them on ``corr_xla`` or ``corr_native``); the RAFT model in ``jaxdiff.flow.raft``, synthetic flow pairs in
``jaxdiff.flow.data``, colour coding in ``jaxdiff.flow.viz``.

The package owns its networks: RAFT is written here in Flax linen.
"""

from __future__ import annotations

from jaxdiff.flow.corr import (
    bilinear_sample,
    correlation_lookup,
    correlation_pyramid,
    correlation_volume,
    feature_pyramid,
    lookup,
    lookup_on_the_fly,
)

__all__ = [
    "bilinear_sample",
    "correlation_lookup",
    "correlation_pyramid",
    "correlation_volume",
    "feature_pyramid",
    "lookup",
    "lookup_on_the_fly",
]
