r"""NLL in bits/dim of a trained digits model on held-out test digits.

    python -m experiments.run --config=experiments/configs/digits.py --workdir=/tmp/bench_digits
    python -m experiments.bench.likelihood --workdir=/tmp/bench_digits [--num=360] [--num_exact=48]

Restores the EMA parameters of ``workdir`` and integrates the probability-flow ODE
(``jaxdiff.likelihood.log_likelihood``, adaptive Dormand–Prince) from σ = 0.002 to 80.
Digits are integer levels 0..16 scaled by k/8 - 1, so bins are 1/8 wide in model units:
each test digit is dequantized uniformly over its bin and the bound
``(-log p / d - log(1/8)) / ln 2`` is reported as mean ± 1.96·SE over ``--num`` digits,
with the Hutchinson (Rademacher) divergence. The exact divergence (64 JVPs) on the first
``--num_exact`` digits (same dequantization noise) gives a paired check of the estimator.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_dict

from jaxdiff import precond
from jaxdiff.data.digits import load_digits
from jaxdiff.likelihood import bits_per_dim, dequantize, log_likelihood


def define_flags() -> None:
    flags.DEFINE_string("workdir", "/tmp/bench_digits", "Workdir of a trained digits run (experiments.run).")
    flags.DEFINE_integer("num", 360, "Test digits for the Hutchinson estimate (the test split has 360).")
    flags.DEFINE_integer("num_exact", 48, "Test digits for the exact-divergence comparison.")
    flags.DEFINE_integer("batch", 50, "Digits per vmapped solve.")
    flags.DEFINE_string("out", None, "Output directory (default: workdir).")


FLAGS = flags.FLAGS

BIN_WIDTH = 1.0 / 8.0


def restore_denoiser(workdir: str):
    """The EMA denoiser ``D(x, sigma)`` of the digits run in ``workdir``."""
    from experiments import checks, networks, run
    from experiments.tasks import diffusion
    from jaxdiff.train import create_train_state, data_mesh, make_optimizer, replicate

    with open(os.path.join(workdir, "config.json")) as f:
        config = config_dict.ConfigDict(json.load(f))
    data = diffusion.build_data(config)
    module, net = networks.network(config, data.shape)
    params = networks.init_params(module, data.shape, jax.random.key(0))
    state = replicate(create_train_state(params, make_optimizer(checks.optim_config(config)), jax.random.key(0)),
                      data_mesh())
    state = run.restore(state, workdir)
    return precond.denoiser(net, jax.device_get(state.ema_params), diffusion.build_precond(config)), int(state.step)


def bpd(denoiser, x, key, divergence, batch):
    fn = jax.jit(lambda xb, k: log_likelihood(denoiser, xb, key=k, divergence=divergence))
    out, nfe = [], []
    for i in range(0, len(x), batch):
        logp, info = fn(x[i:i + batch], jax.random.fold_in(key, i))
        out.append(np.asarray(bits_per_dim(logp, 64, BIN_WIDTH)))
        nfe.append(np.asarray(info["nfe"]))
    return np.concatenate(out), np.concatenate(nfe)


def summary(v):
    return {"mean": float(v.mean()), "ci95": float(1.96 * v.std(ddof=1) / np.sqrt(len(v))), "n": int(len(v))}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    out = FLAGS.out or FLAGS.workdir
    denoiser, step = restore_denoiser(FLAGS.workdir)
    images, _ = load_digits("test")
    x = dequantize(jax.random.key(1), jnp.asarray(images[:FLAGS.num]), BIN_WIDTH)
    t0 = time.perf_counter()
    hutch, nfe = bpd(denoiser, x, jax.random.key(2), "hutchinson", FLAGS.batch)
    t_h = time.perf_counter() - t0
    res = {"step": step, "test_digits": len(images), "hutchinson": summary(hutch), "mean_nfe": float(nfe.mean()),
           "seconds": t_h}
    print(f"step {step}: Hutchinson {res['hutchinson']['mean']:.4f} ± {res['hutchinson']['ci95']:.4f} bits/dim "
          f"over {len(hutch)} test digits, mean NFE {nfe.mean():.0f}, {t_h:.0f}s", flush=True)
    if FLAGS.num_exact:
        t0 = time.perf_counter()
        exact, _ = bpd(denoiser, x[:FLAGS.num_exact], jax.random.key(2), "exact", FLAGS.num_exact)
        res["exact"] = summary(exact)
        res["hutchinson_same_digits"] = summary(hutch[:FLAGS.num_exact])
        res["hutchinson_minus_exact"] = summary(hutch[:FLAGS.num_exact] - exact)
        res["exact_seconds"] = time.perf_counter() - t0
        print(f"exact {res['exact']['mean']:.4f} ± {res['exact']['ci95']:.4f} vs Hutchinson "
              f"{res['hutchinson_same_digits']['mean']:.4f} on the same {FLAGS.num_exact} digits "
              f"(paired difference {res['hutchinson_minus_exact']['mean']:+.4f} ± "
              f"{res['hutchinson_minus_exact']['ci95']:.4f})", flush=True)
    with open(os.path.join(out, "likelihood.json"), "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
