"""Config checks shared by the runner and the tasks; every error names the field and what it accepts."""

from __future__ import annotations

from collections.abc import Iterable

from jaxdiff.train import OptimConfig


class ConfigError(ValueError):
    """A bad config value, config file or flag, found at start-up; the message names it."""


def fail(field: str, message: str):
    raise ConfigError(f"config.{field}: {message}")


def choose(field: str, value, choices: Iterable[str]) -> None:
    """Fail unless ``value`` is one of ``choices``, listing them."""
    choices = tuple(choices)
    if value not in choices:
        fail(field, f"unknown {value!r}; choose one of {', '.join(choices)}")


def positive(config, section: str, *names: str) -> None:
    """Fail unless every ``config.<section>.<name>`` is > 0."""
    for name in names:
        if not config[section][name] > 0:
            fail(f"{section}.{name}", f"must be > 0, got {config[section][name]}")


def optim_config(config) -> OptimConfig:
    """``config.optim`` as the library's frozen ``OptimConfig``."""
    try:
        return OptimConfig(**dict(config.optim))
    except TypeError as e:  # a field OptimConfig does not have
        fields = ", ".join(OptimConfig.__dataclass_fields__)
        raise ConfigError(f"config.optim: {e}; its fields: {fields}") from None
    except ValueError as e:
        raise ConfigError(f"config.{e}") from None


def check_train(config) -> None:
    """``config.train``: what ``jaxdiff.train.fit`` and the train step read."""
    cfg = config.train
    positive(config, "train", "batch_size", "num_steps", "log_every", "checkpoint_every", "max_to_keep")
    if cfg.checkpoint_every % cfg.log_every:
        fail("train.checkpoint_every", f"{cfg.checkpoint_every} must be a multiple of train.log_every={cfg.log_every}")
    choose("train.nonfinite", cfg.nonfinite, ("skip", "stop"))
    if cfg.ema_halflife_nimg < 0:
        fail("train.ema_halflife_nimg", f"must be >= 0, got {cfg.ema_halflife_nimg}")
