"""Point tracking: a CoTracker-style joint tracker on ``jaxdiff.flow``'s correlation lookup, synthetic
videos with exact tracks, TAP-Vid metrics and baselines.

- ``jaxdiff.tracking.model``: ``CoTracker`` (``init``, ``track(params, video, queries) -> (tracks,
  visibility)``, ``loss``);
- ``jaxdiff.tracking.correlation``: correlation windows around tracks, all-pairs (RAFT's lookup) or
  on the fly;
- ``jaxdiff.tracking.data``: "Kubric-lite" clips from scikit-image photographs (``make_videos``,
  ``VideoSource``);
- ``jaxdiff.tracking.metrics``: TAP-Vid's AJ, δ_avg and OA, δ on hidden frames;
- ``jaxdiff.tracking.baselines``: zero motion, chained optical flow (RAFT).

Shapes: videos (B, T, H, W, 3) in [0, 255]; queries (B, N, 3) as (t, x, y) pixels (centres at
integers); tracks (B, T, N, 2) as (x, y); visibility (B, T, N).
"""

from jaxdiff.tracking.data import VideoSource, make_videos
from jaxdiff.tracking.metrics import occluded_accuracy, tapvid_metrics
from jaxdiff.tracking.model import CoTracker

__all__ = ["CoTracker", "VideoSource", "make_videos", "occluded_accuracy", "tapvid_metrics"]
