"""Equivariant diffusion (EDM) of QM9 molecules with hydrogens as 3-D point clouds, on an EGNN.

    python -m experiments.run --config=experiments/configs/qm9_3d.py --workdir=workdir/qm9_3d

Hoogeboom et al.'s model is 9 blocks of width 256 trained for ~1,100 epochs on a GPU; the defaults
here are a CPU-sized version (see experiments/bench/molecules3d.py for the budgeted benchmark).
"""

import ml_collections

from experiments.configs.base import base_config


def get_config():
    c = base_config("molecules3d")
    c.data = ml_collections.ConfigDict(dict(
        name="qm9", hydrogens=True,
        num_train=0,  # 0: the whole training split (QM9 less the graph benchmarks' test molecules)
        half="",  # "a" or "b": one random half of it (jaxdiff.molecules3d.qm9.training_half); a conditional model
        # trains on "b" when experiments/bench/property_regressor.py, trained on "a", scores it
        conditioning=()))  # properties of jaxdiff.molecules3d.context.PROPERTIES, e.g. ("alpha",): conditional EDM
    c.model = ml_collections.ConfigDict(dict(
        hidden=64, num_blocks=4, sublayers=1, attention=True, coords_range=15.0, normalization_factor=1.0,
        sin_embedding=False))  # True: sinusoidal distance features (Hoogeboom et al.'s sin_embedding)
    c.diffusion = ml_collections.ConfigDict(dict(sigma_data=1.0, P_mean=-1.2, P_std=1.2))
    c.sample = ml_collections.ConfigDict(dict(
        sampler="heun",  # any fixed-grid name of jaxdiff.samplers.REGISTRY; stochastic ones draw SubspaceNoise
        num_steps=40, grid="karras", sigma_min=0.002, sigma_max=80.0, rho=7.0,
        options=ml_collections.ConfigDict(),
        num_samples=100))  # for --mode=sample
    c.optim.learning_rate = 1e-3
    c.train.update(dict(batch_size=64, num_steps=20_000, ema_halflife_nimg=50_000.0))
    c.eval = ml_collections.ConfigDict(dict(num_samples=500, batch_size=250, rdkit=True))
    return c
