"""Defaults shared by the configs; each config file overrides what it needs.

``base_config(task)`` holds what the runner reads (seed, task, optim, train); ``image_model()`` the
networks of ``experiments/networks.py``; ``diffusion_config()`` everything the diffusion task reads.
"""

import ml_collections


def base_config(task: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = task  # a module of experiments/tasks
    c.seed = 0
    c.optim = ml_collections.ConfigDict(dict(
        learning_rate=1e-3, warmup_steps=100, grad_clip=1.0, b1=0.9, b2=0.999, weight_decay=0.0))
    c.train = ml_collections.ConfigDict(dict(
        batch_size=128, num_steps=2000, ema_halflife_nimg=20_000.0, ema_rampup_ratio=0.05,
        log_every=50, checkpoint_every=500, max_to_keep=3, nonfinite="skip",
        fsdp=1,  # devices along the mesh's "fsdp" axis: parameters, EMA and optimizer state split over them
        data_workers=0))  # processes that build batches ahead of use (grain); 0: a thread of this process
    return c


def image_model() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.arch = "unet"  # "unet" | "dit" | "mlp"
    m.num_classes = 0
    # dtype: the compute dtype, "bfloat16" for mixed precision (float32 parameters, optimizer state and output)
    m.unet = ml_collections.ConfigDict(dict(
        channels=32, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0, num_groups=8,
        dtype="float32"))
    m.dit = ml_collections.ConfigDict(dict(patch_size=2, hidden_size=128, depth=4, num_heads=4, dtype="float32"))
    m.mlp = ml_collections.ConfigDict(dict(width=256, depth=4))
    # what the network's float32 products ask for: "default" (XLA's: TF32 on recent NVIDIA GPUs, one
    # bfloat16 pass on TPUs), "high" or "highest" (float32); docs/design/precision.md
    m.matmul_precision = "default"
    return m


def diffusion_config() -> ml_collections.ConfigDict:
    c = base_config("diffusion")
    c.data = ml_collections.ConfigDict(dict(source="digits", name="digits", num_examples=0))
    c.model = image_model()
    c.diffusion = ml_collections.ConfigDict(dict(
        precond="edm", sigma_data=0.5, P_mean=-1.2, P_std=1.2, label_dropout=0.0))
    c.sample = ml_collections.ConfigDict(dict(
        sampler="heun",  # any name of jaxdiff.samplers.REGISTRY
        num_steps=18, grid="karras", sigma_min=0.002, sigma_max=80.0, rho=7.0,  # rho: karras only
        options=ml_collections.ConfigDict(),  # the sampler's options, e.g. --config.sample.options.s_churn=40
        num_samples=100))  # for --mode=sample
    c.eval = ml_collections.ConfigDict(dict(num_samples=1000))
    return c
