"""Training: a pytree state, a pure step, data parallelism and FSDP, checkpoints and the fit loop.

``train`` knows only a loss function ``loss_fn(params, batch, key) -> (loss, terms)``. Runs of
several processes join with ``jaxdiff.train.distributed.initialize`` first.
"""

from jaxdiff.train.checkpoint import Checkpointer
from jaxdiff.train.fit import fit
from jaxdiff.train.logging import MetricWriter, read_metrics
from jaxdiff.train.optim import OptimConfig, ema_decay, ema_update, make_optimizer
from jaxdiff.train.parallel import (
    batch_sharding, check_batch_size, data_mesh, fsdp_shardings, make_mesh, parallel_train_step, place, replicate,
    shard_batch,
)
from jaxdiff.train.state import TrainState, create_train_state
from jaxdiff.train.step import make_train_step

__all__ = [
    "Checkpointer", "fit", "MetricWriter", "read_metrics", "OptimConfig", "ema_decay", "ema_update",
    "make_optimizer", "batch_sharding", "check_batch_size", "data_mesh", "fsdp_shardings", "make_mesh",
    "parallel_train_step", "place", "replicate", "shard_batch", "TrainState", "create_train_state",
    "make_train_step",
]
