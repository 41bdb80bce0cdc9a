"""DiffusionNAG's score model over the NAS-Bench-201 cell space (unguided; no labels).

    python -m experiments.run --config=experiments/configs/nag.py --workdir=workdir/nag

Guided generation and the search benchmark restore this run:
``python -m experiments.bench.nag_search --workdir=workdir/nag``.
"""

import ml_collections

from experiments.configs.base import base_config


def get_config():
    c = base_config("nag")
    c.data = ml_collections.ConfigDict(dict(train_fraction=0.9))  # of the 6,466 unique cells
    c.model = ml_collections.ConfigDict(dict(hidden=64, depth=3, num_heads=4, dag_attention=True))
    c.diffusion = ml_collections.ConfigDict(dict(sigma_data=0.5, P_mean=-1.2, P_std=1.2))
    c.sde = ml_collections.ConfigDict(dict(  # the VE SDE and the predictor-corrector sampler
        sigma_min=0.01, sigma_max=5.0, num_steps=50, n_corrector=1, snr=0.16))
    c.optim.learning_rate = 2e-3
    c.train.update(dict(batch_size=128, num_steps=1000, log_every=50, checkpoint_every=500,
                        ema_halflife_nimg=20_000.0))
    c.eval = ml_collections.ConfigDict(dict(num_samples=1000))
    return c
