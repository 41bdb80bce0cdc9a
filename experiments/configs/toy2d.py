"""EDM with an MLP on a 2-D swiss roll (or ``--config.data.name=gaussian_mixture``).

    python -m experiments.run --config=experiments/configs/toy2d.py --workdir=workdir/toy2d
"""

from experiments.configs.base import diffusion_config


def get_config():
    c = diffusion_config()
    c.data.source, c.data.name, c.data.num_examples = "toy", "swiss_roll", 10_000
    c.model.arch = "mlp"
    c.diffusion.sigma_data = 1.0
    c.train.batch_size, c.train.num_steps = 256, 3000
    c.train.log_every, c.train.checkpoint_every = 100, 1000
    c.train.ema_halflife_nimg = 50_000.0
    c.eval.num_samples = 2000
    return c
