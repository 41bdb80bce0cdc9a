r"""Convolution kernel gradients on the CPU: lax's against ``jaxdiff.nn.conv``'s, side by side in one run.

    python -m experiments.bench.conv_grad [--parts=layers,steps] [--repeats=5]

Part ``layers``: single 2-D convolutions of the shapes jaxdiff's networks use; for each, the forward
pass and the gradient of a scalar loss in both the kernel and the input, with lax's kernel gradient
and with the shifted-window products of ``jaxdiff.nn.conv`` (``kernel_gradients("lax")`` and
``("shifted")``), the relative difference of the two gradients, and the path the default ("auto")
takes. Part ``steps``: the gradient of whole training losses, traced with "lax" and with "auto": the
point tracker of ``experiments/configs/tracking.py``, the DDPM++ UNet of
``experiments/configs/cifar10.py`` on a batch of 4 random 32x32 images (its data needs a download),
the UNet of the digits config (``--config.model.arch=unet``) and RAFT-small on 64x96 pairs.
Times (ms) are the best of ``--repeats`` rounds, the two paths timed in alternation.
"""

from __future__ import annotations

import functools
import json
import time

from absl import app, flags

from experiments.bench.train_throughput import _best_time

FLAGS = flags.FLAGS
PARTS = ("layers", "steps")
# (batch, size, in channels, out channels, kernel, stride, who uses it)
LAYERS = (
    (64, 64, 3, 32, 4, 2, "tracker encoder, 1st block (16 frames x 4 clips)"),
    (64, 32, 32, 32, 3, 1, "tracker encoder, 1st block"),
    (64, 16, 64, 64, 3, 1, "tracker encoder, 2nd block"),
    (8, 32, 128, 256, 3, 1, "cifar10 UNet, 32x32"),
    (8, 16, 256, 256, 3, 1, "cifar10 UNet, 16x16"),
    (128, 8, 32, 32, 3, 1, "digits UNet, 8x8"),
    (8, 32, 64, 64, 3, 1, "RAFT-small encoder, 64x96 pairs (square)"),
)


def define_flags() -> None:
    flags.DEFINE_list("parts", list(PARTS), f"Parts to run, of {PARTS}.")
    flags.DEFINE_integer("repeats", 5, "Timing rounds, the two paths in alternation; the best of each is reported.")


def _both(loss, args, argnums, repeats: int, path: str) -> tuple[float, float, float]:
    """(lax ms, ``path`` ms, relative max difference of the gradients) of the gradient of the scalar
    ``loss(*args)`` in ``args[argnums]``, traced both ways; timed in alternation, best of ``repeats`` each."""
    import jax
    import numpy as np

    from jaxdiff.nn.conv import kernel_gradients

    fns, outs = {}, {}
    for p in ("lax", path):
        with kernel_gradients(p):  # traced, compiled and run once under its path
            fns[p] = jax.jit(jax.grad(loss, argnums))
            outs[p] = jax.block_until_ready(fns[p](*args))
    best = {p: float("inf") for p in fns}
    for _ in range(repeats):
        for p, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[p] = min(best[p], time.perf_counter() - t0)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / (np.max(np.abs(np.asarray(a))) + 1e-30))
               for a, b in zip(jax.tree.leaves(outs["lax"]), jax.tree.leaves(outs[path])))
    return 1e3 * best["lax"], 1e3 * best[path], diff


def _sine_loss(apply, params, x):
    import jax.numpy as jnp

    return jnp.sum(jnp.sin(apply(params, x)))


def _first(loss, params, batch):
    """The loss value of a ``(params, batch, key) -> (loss, terms)`` function."""
    import jax

    return loss(params, batch, jax.random.key(0))[0]


def layers(repeats: int) -> list[dict]:
    import jax

    from jaxdiff.nn.conv import Conv, pays

    rows = []
    for b, size, cin, cout, k, stride, who in LAYERS:
        x = jax.random.normal(jax.random.key(0), (b, size, size, cin))
        conv = Conv(cout, (k, k), stride, padding=(k - stride) // 2 if k % 2 == stride % 2 else "SAME")
        params = conv.init(jax.random.key(1), x)
        apply = jax.jit(conv.apply)
        jax.block_until_ready(apply(params, x))
        forward = 1e3 * _best_time(lambda: jax.block_until_ready(apply(params, x)), repeats)  # noqa: B023
        loss = functools.partial(_sine_loss, conv.apply)
        lax_ms, new_ms, diff = _both(loss, (params, x), (0, 1), repeats, "shifted")
        out = jax.eval_shape(conv.apply, params, x).shape
        rows.append({"layer": f"{b}x{size}x{size}x{cin} -> {cout}, {k}x{k} stride {stride}", "who": who,
                     "auto_path": "shifted" if pays(out[1] * out[2], cin) else "lax",
                     "forward_ms": round(forward, 1), "grad_lax_ms": round(lax_ms, 1),
                     "grad_shifted_ms": round(new_ms, 1), "speedup": round(lax_ms / new_ms, 2),
                     "rel_diff": float(f"{diff:.1e}")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _config(path: str):
    """The ``get_config()`` of a config file under ``experiments/configs``."""
    import importlib

    return importlib.import_module(path[:-3].replace("/", ".")).get_config()


def _runner_loss(config_path: str, overrides: dict):
    """(loss, params, batch) of a runner config's experiment, the batch its first."""
    import jax

    from experiments import tasks
    from jaxdiff.data import pipeline

    config = _config(config_path)
    config.update_from_flattened_dict(overrides)
    task = tasks.get(config.task)
    task.validate(config)
    experiment = task.build(config)
    source = experiment.source
    batch = pipeline.batch_fn(source, pipeline.EpochSampler(len(source), config.train.batch_size, seed=0))(0)
    return experiment.loss, experiment.init(jax.random.key(0)), batch


def _unet_loss(config_path: str, batch: int, size: int):
    """(loss, params, batch) of a denoising loss (squared error, log-normal noise levels) of a config's UNet
    on random ``size`` x ``size`` images."""
    import jax
    import jax.numpy as jnp

    from experiments import networks

    config = _config(config_path)
    config.model.arch = "unet"
    shape = (size, size, 3)
    module, net = networks.network(config, shape)
    params = networks.init_params(module, shape, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (batch, *shape))
    sigma = jnp.exp(jax.random.normal(jax.random.key(2), (batch,)) - 1.2)

    def loss(p, x, key=None):
        noisy = x + sigma[:, None, None, None] * jax.random.normal(jax.random.key(3), x.shape)
        return jnp.mean((net(p, noisy, jnp.log(sigma) / 4) - x) ** 2), {}

    return loss, params, x


def _raft_loss():
    import jax

    from jaxdiff.flow.data import make_dataset
    from jaxdiff.flow.raft import RAFT, sequence_loss

    model = RAFT(small=True)
    b = make_dataset("train", 8, (64, 96), "smooth", seed=0)
    params = model.init(jax.random.key(0), b["image1"][:1], b["image2"][:1], 1)["params"]

    def loss(p, batch, key=None):
        flows = model.apply({"params": p}, batch["image1"], batch["image2"], 8, train=True)
        return sequence_loss(flows, batch["flow"], jax.numpy.ones(batch["flow"].shape[:-1], bool))

    return loss, params, b


def steps(repeats: int) -> list[dict]:

    cases = {
        "point tracker (configs/tracking.py: 4 clips x 16 frames, 64x64)":
            lambda: _runner_loss("experiments/configs/tracking.py", {}),
        "DDPM++ UNet of configs/cifar10.py, 4 images 32x32": lambda: _unet_loss("experiments/configs/cifar10.py", 4, 32),
        "UNet of configs/digits.py (--config.model.arch=unet), 128 digits 8x8":
            lambda: _runner_loss("experiments/configs/digits.py", {"model.arch": "unet"}),
        "RAFT-small, 8 pairs 64x96, 8 refinements": _raft_loss,
    }
    rows = []
    for name, make in cases.items():
        loss, params, batch = make()
        lax_ms, new_ms, diff = _both(functools.partial(_first, loss), (params, batch), 0, repeats, "auto")
        rows.append({"step": name, "grad_lax_ms": round(lax_ms, 1), "grad_auto_ms": round(new_ms, 1),
                     "speedup": round(lax_ms / new_ms, 2), "rel_diff": float(f"{diff:.1e}")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv):
    del argv
    import platform

    import jax

    unknown = set(FLAGS.parts) - set(PARTS)
    if unknown:
        raise app.UsageError(f"--parts: unknown {sorted(unknown)}; choose from {PARTS}")
    print(json.dumps({"backend": jax.default_backend(), "devices": jax.device_count(),
                      "processor": platform.processor() or platform.machine()}))
    if "layers" in FLAGS.parts:
        layers(FLAGS.repeats)
    if "steps" in FLAGS.parts:
        steps(FLAGS.repeats)


if __name__ == "__main__":
    define_flags()
    app.run(main)
