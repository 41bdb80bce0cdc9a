"""FSDP measurements on 4 host devices: ``python -m tests.train.fsdp_run OUT.json WORKDIR``.

Run in a process of its own with ``--xla_force_host_platform_device_count=4`` (the test process
has 2 devices). A width-64 MLP denoiser trains for ``STEPS`` steps with replicated state, on a
2x2 data x fsdp mesh and, through ``fit``, on a 1x4 mesh; the fsdp=4 checkpoint is restored onto
a 2x2 mesh and onto one device. Writes the largest differences, per-device state bytes,
shard shapes, restore checks and the messages of bad settings to ``OUT.json``.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdiff import losses, nn, precond
from jaxdiff.train import (
    Checkpointer, OptimConfig, check_batch_size, create_train_state, data_mesh, fit, fsdp_shardings, make_mesh,
    make_optimizer, make_train_step, parallel_train_step, place, shard_batch,
)

STEPS, BATCH, MIN_SIZE = 3, 8, 1024


def parts():
    module = nn.MLP(width=64, depth=2)
    params = module.init(jax.random.key(0), np.zeros((1, 2), np.float32), np.ones((1,), np.float32))["params"]
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0))
    train_step = make_train_step(losses.denoising_loss(nn.as_net(module), precond.EDMPrecond(), losses.EDMNoise()),
                                 optimizer, batch_size=BATCH, ema_halflife_nimg=100.0)
    data = np.random.default_rng(0).standard_normal((STEPS, BATCH, 2)).astype(np.float32)
    return create_train_state(params, optimizer, jax.random.key(1)), train_step, data


def arrays(state) -> dict[str, np.ndarray]:
    """Parameters, EMA and optimizer state as host arrays keyed by path."""
    tree = (state.params, state.ema_params, state.opt_state)
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def device_bytes(state, device) -> int:
    """Bytes of parameters, EMA and optimizer state held on ``device``."""
    leaves = jax.tree.leaves((state.params, state.ema_params, state.opt_state))
    return sum(s.data.nbytes for x in leaves for s in x.addressable_shards if s.device == device)


def train(fresh, train_step, data, mesh, shardings):
    state, metrics = place(fresh, shardings), []
    step = parallel_train_step(train_step, mesh, state_shardings=shardings, donate=False)
    for s in range(STEPS):
        state, m = step(state, shard_batch({"image": data[s]}, mesh))
        metrics.append({k: float(v) for k, v in m.items()})
    return state, metrics


def largest_difference(a: dict, b: dict) -> dict[str, float]:
    abs_diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    rel_diff = max(float(np.max(np.abs(a[k] - b[k]) / (np.abs(b[k]) + 1e-6))) for k in a)
    return {"abs": abs_diff, "rel": rel_diff}


def error(fn) -> str | None:
    try:
        fn()
    except ValueError as e:
        return str(e)
    return None


def main(out: str, workdir: str) -> None:
    assert jax.device_count() == 4, "run with --xla_force_host_platform_device_count=4"
    fresh, train_step, data = parts()
    results = {}

    mesh = data_mesh()
    replicated, replicated_metrics = train(fresh, train_step, data, mesh, NamedSharding(mesh, P()))
    reference = arrays(replicated)
    results["bytes"] = {"replicated": device_bytes(replicated, jax.devices()[0])}

    mesh = make_mesh(fsdp=2)
    shardings = fsdp_shardings(fresh, mesh, min_size=MIN_SIZE)
    state, metrics = train(fresh, train_step, data, mesh, shardings)
    results["fsdp2"] = largest_difference(arrays(state), reference)
    results["fsdp2_metrics"] = largest_difference(
        {f"{i}/{k}": np.float32(v) for i, m in enumerate(metrics) for k, v in m.items()},
        {f"{i}/{k}": np.float32(v) for i, m in enumerate(replicated_metrics) for k, v in m.items()})
    results["bytes"]["data2_fsdp2"] = device_bytes(state, jax.devices()[0])

    mesh = make_mesh(fsdp=4)
    shardings = fsdp_shardings(fresh, mesh, min_size=MIN_SIZE)
    step = parallel_train_step(train_step, mesh, state_shardings=shardings)
    state = fit(place(fresh, shardings), step, lambda s: shard_batch({"image": data[s]}, mesh), num_steps=STEPS,
                workdir=workdir, log_every=1, checkpoint_every=STEPS, progress=False)
    saved = arrays(state)
    results["fsdp4"] = largest_difference(saved, reference)
    results["bytes"]["fsdp4"] = device_bytes(state, jax.devices()[0])
    results["shard_shapes"] = {k: [list(x.shape), list(x.sharding.shard_shape(x.shape))]
                               for k, x in ((jax.tree_util.keystr(p), x) for p, x in
                                            jax.tree_util.tree_leaves_with_path(state.params))}

    ckpt = Checkpointer(f"{workdir}/checkpoints")
    mesh = make_mesh(fsdp=2)
    onto_fsdp2 = ckpt.restore(place(fresh, fsdp_shardings(fresh, mesh, min_size=MIN_SIZE)))
    onto_one = ckpt.restore(jax.device_put(fresh, jax.devices()[0]))
    results["restore"] = {
        "fsdp2_equal": all(np.array_equal(v, saved[k]) for k, v in arrays(onto_fsdp2).items()),
        "fsdp2_bytes": device_bytes(onto_fsdp2, jax.devices()[0]),
        "one_device_equal": all(np.array_equal(v, saved[k]) for k, v in arrays(onto_one).items()),
        "one_device_devices": sorted({str(d) for x in jax.tree.leaves(onto_one.params) for d in x.devices()}),
        "step": int(onto_fsdp2.step),
    }
    ckpt.close()

    results["errors"] = {
        "fsdp=3": error(lambda: make_mesh(fsdp=3)),
        "fsdp=8": error(lambda: make_mesh(fsdp=8)),
        "data=4,fsdp=2": error(lambda: make_mesh(data=4, fsdp=2)),
        "batch_size=6": error(lambda: check_batch_size(6, make_mesh(fsdp=2))),
    }
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
