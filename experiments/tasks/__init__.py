"""Experiment tasks: one module per kind of experiment, named by ``config.task``.

A task module provides (the ``Task`` protocol)::

    MODES: tuple[str, ...]              the --mode values it supports, "train" and "eval" at least
    validate(config) -> None            every check that needs neither data nor compilation
    build(config) -> Experiment         the data source, network, loss, sampler and evaluation

and ``experiments/run.py`` does the rest: mesh, state, train-or-restore, checkpoints, progress,
``config.json`` and ``metrics.json``. Adding a task is adding a module here and a config naming it.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Protocol

from experiments.checks import choose
from experiments.outputs import Outputs
from jaxdiff.data.pipeline import Source


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What the runner trains and evaluates.

    source: training examples; a batch is ``source.get(indices)`` -> ``{name: (B, ...)}``.
    transforms: ``jaxdiff.data.transforms`` applied to each batch where it is built (the grain workers).
    init: ``key -> params``.
    loss: ``(params, batch, key) -> (loss, terms)`` for ``jaxdiff.train.make_train_step``.
    evaluate: ``(ema_params, key, outputs) -> metrics``: samples, scores them, saves pictures.
    sample: ``(ema_params, key, outputs) -> record``: draws and saves samples only (``--mode=sample``).
    """

    source: Source
    init: Callable[[Any], Any]
    loss: Callable
    evaluate: Callable[[Any, Any, Outputs], dict]
    sample: Callable[[Any, Any, Outputs], dict] | None = None
    transforms: tuple = ()


class Task(Protocol):
    MODES: tuple[str, ...]

    def validate(self, config) -> None: ...

    def build(self, config) -> Experiment: ...


def names() -> tuple[str, ...]:
    """The task modules in this package."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)))


def get(name: str) -> Task:
    """The task module ``name``; ``ConfigError`` on ``config.task`` listing the known names otherwise."""
    choose("task", name, names())
    return importlib.import_module(f"{__name__}.{name}")
