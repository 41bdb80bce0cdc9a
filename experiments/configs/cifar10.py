"""Class-conditional EDM (DDPM++-style UNet) on TFDS CIFAR-10 (accelerators; data prepared once).

    python -m experiments.run --config=experiments/configs/cifar10.py --workdir=workdir/cifar10
"""

from experiments.configs.base import diffusion_config


def get_config():
    c = diffusion_config()
    c.data.source, c.data.name = "tfds", "cifar10"
    c.model.arch, c.model.num_classes = "unet", 10
    c.model.unet.update(dict(channels=128, channel_mult=(2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
                             dropout=0.13, num_groups=32))
    # --config.model.arch=dit: DiT-B/2 (Peebles & Xie, 2023), 256 tokens of 2x2 patches
    c.model.dit.update(dict(patch_size=2, hidden_size=768, depth=12, num_heads=12))
    c.diffusion.label_dropout = 0.1
    c.train.batch_size, c.train.num_steps = 512, 400_000
    c.train.log_every, c.train.checkpoint_every = 100, 10_000
    c.train.ema_halflife_nimg = 500_000.0
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 5000
    c.sample.num_steps = 18
    return c
