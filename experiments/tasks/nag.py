"""DiffusionNAG's score model over NAS-Bench-201 cells (the nag config).

The training data are the unique cells of ``jaxdiff.nag.space`` (no labels), a random
``data.train_fraction`` of the 6,466 isomorphism classes, as shifted operator-type matrices
``(8, 7)`` (``jaxdiff.nag.model.to_data``). The network is ``jaxdiff.nag.nets.CellTransformer``
(attention masked by the DAG's reachability) under EDM preconditioning, trained with EDM's
denoising loss. Evaluation draws ``eval.num_samples`` cells with the predictor–corrector sampler on
a VE SDE and reports validity, uniqueness, novelty against the training classes and the match of
per-edge operation frequencies to the training cells (``jaxdiff.nag.metrics``), with the same
statistics of the held-out classes as the floor. Guided generation and search are
``experiments/bench/nag_search.py``.
"""

from __future__ import annotations

import numpy as np

from experiments.checks import fail, positive
from experiments.tasks import Experiment

MODES = ("train", "eval")


def validate(config) -> None:
    if not 0 < config.data.train_fraction <= 1:
        fail("data.train_fraction", f"must be in (0, 1], got {config.data.train_fraction}")
    positive(config, "model", "hidden", "depth", "num_heads")
    if config.model.hidden % (2 * config.model.num_heads):
        fail("model.hidden", f"{config.model.hidden} must be an even multiple of model.num_heads={config.model.num_heads}")
    positive(config, "sde", "sigma_min", "sigma_max", "num_steps", "snr")
    if config.sde.sigma_max <= config.sde.sigma_min:
        fail("sde.sigma_max", f"must exceed sde.sigma_min={config.sde.sigma_min}, got {config.sde.sigma_max}")
    if config.sde.n_corrector < 0:
        fail("sde.n_corrector", f"must be >= 0, got {config.sde.n_corrector}")
    positive(config, "eval", "num_samples")


def split(train_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train classes, held-out classes), sorted indices into ``unique_cells``."""
    from jaxdiff.nag.space import NUM_UNIQUE

    perm = np.random.default_rng(seed).permutation(NUM_UNIQUE)
    k = int(round(train_fraction * NUM_UNIQUE))
    return np.sort(perm[:k]), np.sort(perm[k:])


def build_network(config):
    from jaxdiff.nag.nets import CellTransformer

    m = config.model
    return CellTransformer(hidden=m.hidden, depth=m.depth, num_heads=m.num_heads, dag_attention=m.dag_attention)


def build_denoiser(config, module):
    """``denoiser(params) -> D(x, sigma)`` and the training loss."""
    from jaxdiff import losses, precond
    from jaxdiff.nn import as_net

    d = config.diffusion
    pre = precond.EDMPrecond(d.sigma_data)
    net = as_net(module)
    loss = losses.denoising_loss(net, pre, losses.EDMNoise(d.P_mean, d.P_std, d.sigma_data))
    return (lambda params: precond.denoiser(net, params, pre)), loss


def process(config):
    from jaxdiff.sde import VESDE

    return VESDE(sigma_min=config.sde.sigma_min, sigma_max=config.sde.sigma_max)


def make_sampler(config, denoiser):
    """Jitted ``draw(params, key, num) -> (num, 8, 7)`` (unguided)."""
    import functools

    import jax

    from jaxdiff.nag import model

    s = config.sde

    @functools.partial(jax.jit, static_argnums=2)
    def draw(params, key, num):
        return model.sample(denoiser(params), key, num, process=process(config), num_steps=s.num_steps,
                            n_corrector=s.n_corrector, snr=s.snr)

    return draw


def build(config) -> Experiment:
    import time

    import jax
    import jax.numpy as jnp

    from jaxdiff.data.pipeline import ArraySource
    from jaxdiff.nag import metrics, model
    from jaxdiff.nag.space import unique_cells

    train, held_out = split(config.data.train_fraction, config.seed)
    cells = unique_cells().astype(np.int64)
    module = build_network(config)
    denoiser, loss = build_denoiser(config, module)
    draw = make_sampler(config, denoiser)

    def init(key):
        return module.init(key, jnp.zeros((1, 8, 7)), jnp.zeros((1,)))["params"]

    def evaluate(params, key, outputs) -> dict:
        n = config.eval.num_samples
        t0 = time.perf_counter()
        x = np.asarray(draw(params, key, n))
        seconds = time.perf_counter() - t0
        got, valid = model.to_cells(x)
        res = {"generated": metrics.generation_metrics(got, valid, train, cells[train])}
        if len(held_out):  # real cells outside the training classes: what a perfect generator's statistics look like
            real = cells[np.random.default_rng(1).choice(held_out, min(n, len(held_out)), replace=False)]
            res["held-out cells"] = metrics.generation_metrics(real, np.ones(len(real), bool), train, cells[train])
        res["generated"]["sample_seconds"] = round(seconds, 2)
        res["num_params"] = int(sum(p.size for p in jax.tree.leaves(params)))
        res["train_classes"] = len(train)
        return res

    return Experiment(source=ArraySource(image=model.to_data(cells[train])), init=init, loss=loss, evaluate=evaluate)
