"""The one adapter from a Flax module to the ``net`` signature that losses and precond call."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import flax.linen as nn


def as_net(module: nn.Module) -> Callable[..., Any]:
    """``net(params, x, c_noise, *, key=None, **cond) -> module.apply({"params": params}, x, c_noise, **cond)``.

    ``key`` (given in training) is the ``"dropout"`` rng and, when the module's ``__call__`` takes
    ``train``, switches it on (``train=key is not None``); ``cond`` (e.g. ``labels``, ``context``)
    passes through. ``x`` (B, ...) and ``c_noise`` (B,) as the module expects.
    """
    takes_train = "train" in inspect.signature(type(module).__call__).parameters

    def net(params, x, c_noise, *, key=None, **cond):
        if takes_train:
            cond["train"] = key is not None
        rngs = {} if key is None else {"dropout": key}
        return module.apply({"params": params}, x, c_noise, rngs=rngs, **cond)

    return net
