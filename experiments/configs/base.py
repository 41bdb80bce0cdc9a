"""Defaults shared by every config; each config file overrides what it needs."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict(dict(source="digits", name="digits", num_examples=0))

    c.model = ml_collections.ConfigDict()
    c.model.arch = "unet"
    c.model.num_classes = 0
    c.model.unet = ml_collections.ConfigDict(dict(
        channels=32, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0, num_groups=8))
    c.model.dit = ml_collections.ConfigDict(dict(patch_size=2, hidden_size=128, depth=4, num_heads=4, dtype="float32"))
    c.model.mlp = ml_collections.ConfigDict(dict(width=256, depth=4))

    c.diffusion = ml_collections.ConfigDict(dict(
        precond="edm", sigma_data=0.5, P_mean=-1.2, P_std=1.2, label_dropout=0.0))

    c.optim = ml_collections.ConfigDict(dict(
        learning_rate=1e-3, warmup_steps=100, grad_clip=1.0, b1=0.9, b2=0.999, weight_decay=0.0))

    c.train = ml_collections.ConfigDict(dict(
        batch_size=128, num_steps=2000, ema_halflife_nimg=20_000.0, ema_rampup_ratio=0.05,
        log_every=50, checkpoint_every=500, max_to_keep=3, nonfinite="skip"))

    c.sample = ml_collections.ConfigDict(dict(
        sampler="heun", num_steps=18, sigma_min=0.002, sigma_max=80.0, rho=7.0, num_samples=100))

    c.eval = ml_collections.ConfigDict(dict(num_samples=1000))
    return c
