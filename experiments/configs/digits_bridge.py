"""DDBM bridge on scikit-learn's 8x8 digits: 2x2-pooled digit (x_T) -> clean digit (x_0).

    python -m experiments.run --config=experiments/configs/digits_bridge.py --workdir=workdir/digits_bridge
"""

import ml_collections

from experiments.configs.base import base_config, image_model


def get_config():
    c = base_config("bridge")
    c.model = image_model()
    c.model.arch = "unet"
    c.model.unet.update(dict(channels=32, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
                             dropout=0.0, num_groups=8))
    c.bridge = ml_collections.ConfigDict(dict(
        process="vp",  # "vp" (beta_min=0.1, beta_d=2, T=1) or "ve" (sigma_max=T=80)
        degrade="pool2",  # "pool2": 2x2 average pool then nearest upsample; "mask": lower half to -1
        estimate_precond=True,  # DDBM sigma_0, sigma_T, cov from the training pairs, else the values below
        sigma_0=0.5, sigma_T=0.5, cov=0.0,
    ))
    c.train.update(dict(batch_size=128, num_steps=1200, log_every=50, checkpoint_every=400))
    c.optim.learning_rate = 2e-3
    c.eval = ml_collections.ConfigDict(dict(
        num_examples=360, nfes=(5, 10, 20, 50, 100),
        samplers=("ddbm_heun", "dbim", "dbim_o3_cosine"), png_nfe=20))
    return c
