"""The tiny training run as one of several processes: ``python -m tests.train.multiprocess_run WORKDIR STEPS [SLEEP]``.

Started N times by ``jaxdiff.train.distributed.launch_local``: each process joins the run, feeds its
slice of every global batch of 8 to ``fit`` in the shared ``WORKDIR`` (sleeping ``SLEEP`` seconds
per step, so that a test can interrupt it), then saves the state it ends with to
``WORKDIR/final_<process index>.npz``. ``train`` runs the same thing in the calling process.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np

from jaxdiff.train import create_train_state, data_mesh, fit, parallel_train_step, replicate, shard_batch
from jaxdiff.train.distributed import initialize
from tests.train.tiny import BATCH, tiny_parts

RUN = dict(log_every=2, checkpoint_every=4, progress=False)


def fresh_state():
    params, optimizer, _, _ = tiny_parts()
    return create_train_state(params, optimizer, jax.random.key(1))


def train(workdir: str, num_steps: int, sleep_s: float = 0.0):
    """``fit`` the tiny model to ``num_steps`` on a data mesh over every device of every process."""
    params, optimizer, train_step, data = tiny_parts()
    mesh = data_mesh()
    state = replicate(create_train_state(params, optimizer, jax.random.key(1)), mesh)
    local, i = BATCH // jax.process_count(), jax.process_index()

    def batches(step: int) -> dict:
        time.sleep(sleep_s)
        return shard_batch({"image": data[step % 20, i * local:(i + 1) * local]}, mesh)

    return fit(state, parallel_train_step(train_step, mesh), batches, num_steps=num_steps, workdir=workdir, **RUN)


def state_arrays(state) -> dict[str, np.ndarray]:
    """The state's leaves as host arrays keyed by their path (PRNG keys as their key data)."""
    def host(x):
        return np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)

    return {jax.tree_util.keystr(path): host(x) for path, x in jax.tree_util.tree_leaves_with_path(state)}


def main(workdir: str, num_steps: str, sleep_s: str = "0") -> None:
    initialize(timeout_s=60, heartbeat_timeout_s=5, shutdown_timeout_s=10)
    state = train(workdir, int(num_steps), float(sleep_s))
    np.savez(os.path.join(workdir, f"final_{jax.process_index()}.npz"), **state_arrays(state))


if __name__ == "__main__":
    main(*sys.argv[1:])
