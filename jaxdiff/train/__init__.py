"""Training: a pytree state, a pure step, data parallelism, checkpoints and the fit loop.

``train`` knows only a loss function ``loss_fn(params, batch, key) -> (loss, terms)``.
"""

from jaxdiff.train.checkpoint import Checkpointer
from jaxdiff.train.fit import fit
from jaxdiff.train.logging import MetricWriter, read_metrics
from jaxdiff.train.optim import OptimConfig, ema_decay, ema_update, make_optimizer
from jaxdiff.train.parallel import check_batch_size, data_mesh, parallel_train_step, replicate, shard_batch
from jaxdiff.train.state import TrainState, create_train_state
from jaxdiff.train.step import make_train_step

__all__ = [
    "Checkpointer", "fit", "MetricWriter", "read_metrics", "OptimConfig", "ema_decay", "ema_update",
    "make_optimizer", "check_batch_size", "data_mesh", "parallel_train_step", "replicate", "shard_batch",
    "TrainState", "create_train_state", "make_train_step",
]
