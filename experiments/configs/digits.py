"""EDM on scikit-learn's 8x8 digits with a DiT: the main job (a few minutes on 2 CPU cores), the default config.

    python -m experiments.run --config=experiments/configs/digits.py --workdir=workdir/digits
"""

from experiments.configs.base import diffusion_config


def get_config():
    c = diffusion_config()
    c.model.arch = "dit"
    c.model.dit.update(dict(patch_size=2, hidden_size=128, depth=4, num_heads=4))
    c.train.update(dict(batch_size=128, num_steps=2000, log_every=50, checkpoint_every=500))
    c.optim.learning_rate = 2e-3
    return c
