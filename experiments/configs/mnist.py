"""Class-conditional EDM on TFDS MNIST (needs the data set prepared once; use an accelerator).

    python -m experiments.run --config=experiments/configs/mnist.py --workdir=workdir/mnist
"""

from experiments.configs.base import diffusion_config


def get_config():
    c = diffusion_config()
    c.data.source, c.data.name = "tfds", "mnist"
    c.model.arch, c.model.num_classes = "unet", 10
    c.model.unet.update(dict(channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,),
                             dropout=0.1, num_groups=32))
    c.diffusion.label_dropout = 0.1
    c.train.batch_size, c.train.num_steps = 256, 100_000
    c.train.log_every, c.train.checkpoint_every = 100, 5000
    c.train.ema_halflife_nimg = 500_000.0
    c.optim.learning_rate = 2e-4
    return c
