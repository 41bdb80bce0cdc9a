"""Optical flow: correlation volumes, pyramids and RAFT-style lookup."""

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
