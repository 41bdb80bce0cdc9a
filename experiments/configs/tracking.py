"""CoTracker-style point tracking on synthetic 64x64 videos, scored by the TAP-Vid protocol on held-out clips.

    python -m experiments.run --config=experiments/configs/tracking.py --workdir=workdir/tracking

Sized for a CPU: 16-frame training clips (three windows of 8), 48 points each, stride-2 features (a
32x32 map of a 64x64 frame), a 2-block transformer of width 64 with 8 virtual tracks; a window's new
frames start at each track's best match in the frame (TAPIR's initialisation); the position loss is a Huber
loss of 1 px (0.75 px is CoTracker's 6 px at its 384x512 crops).
``--config.model.virtual=0`` tracks every point alone; ``--config.model.initial=query`` starts new
frames where the track was last seen, as CoTracker does; ``--config.model.stride=4`` is CoTracker's
stride.
"""

import ml_collections

from experiments.configs.base import base_config


def get_config():
    c = base_config("tracking")
    c.model = ml_collections.ConfigDict(dict(
        window=8, iters=4, radius=3, levels=4,  # windows of 8 frames sliding by 4; 4 refinements each
        stride=2, dim=64, width=32,  # features: stride (4: CoTracker's), channels, the encoder's first width
        hidden=64, heads=4, depth=2, virtual=8,  # transformer; virtual=0: no space attention
        corr="auto",  # "all_pairs" | "on_the_fly" | "auto"
        initial="match", match_weight=1.0,  # new frames start at each track's best match; "query": CoTracker's
        gamma=0.8, huber=1.0, occluded_weight=0.2, vis_weight=1.0))  # the loss
    c.data = ml_collections.ConfigDict(dict(
        size=(64, 64), num_frames=16, num_points=48,
        num_train=1_000_000,  # clips drawn from their index: no clip repeats within a run
        max_sprites=8, noise=2.0))
    c.train.update(dict(batch_size=4, num_steps=3000, ema_halflife_nimg=2000.0, log_every=50, checkpoint_every=500))
    c.optim.update(dict(learning_rate=5e-4, warmup_steps=200, weight_decay=1e-4))
    c.eval = ml_collections.ConfigDict(dict(num_videos=64, num_frames=24, num_points=64, seed=10_000))
    return c
