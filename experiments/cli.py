"""Config files and ``--config.FIELD=VALUE`` overrides for the command line; every error names its field.

A config file is a Python file with ``get_config() -> ml_collections.ConfigDict``. An override
replaces an existing field only (its value parsed to the field's type), except under the free-form
dicts of ``OPEN_FIELDS`` (sampler options, validated by the task), which take new keys.
"""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections

from experiments.checks import ConfigError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
OPEN_FIELDS = ("sample.options",)
PREFIX = "--config."


def config_files() -> list[str]:
    return sorted(f for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and f not in ("__init__.py", "base.py"))


def load_config(path: str) -> ml_collections.ConfigDict:
    """``get_config()`` of the config file ``path``."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config={path}: no such file; the configs in experiments/configs: "
                          f"{', '.join(config_files())}")
    spec = importlib.util.spec_from_file_location(f"config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        return module.get_config()
    except Exception as e:  # the file's own error, named with the file
        raise ConfigError(f"--config={path}: {type(e).__name__}: {e}") from e


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` -> (the other arguments, the ``--config.FIELD=VALUE`` overrides)."""
    overrides = [a for a in argv if a.startswith(PREFIX)]
    return [a for a in argv if not a.startswith(PREFIX)], overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """Set each ``--config.FIELD=VALUE`` (or ``FIELD=VALUE``) in ``config``, in order."""
    for arg in overrides:
        field, sep, text = arg.removeprefix(PREFIX).partition("=")
        if not sep:
            raise ConfigError(f"{PREFIX}{field}: give a value, {PREFIX}{field}=VALUE")
        parent, _, name = field.rpartition(".")
        section = config
        for i, part in enumerate(parent.split(".") if parent else []):
            section = _child(section, part, ".".join(parent.split(".")[:i]))
        if name in section:
            section[name] = _parse(field, text, section[name])
        elif parent in OPEN_FIELDS:
            section[name] = _literal(text)
        else:
            _child(section, name, parent)


def _child(section, name: str, path: str):
    if not isinstance(section, ml_collections.ConfigDict) or name not in section:
        where = f"config.{path}" if path else "config"
        fields = ", ".join(section) if isinstance(section, ml_collections.ConfigDict) else "no fields"
        raise ConfigError(f"config.{path + '.' if path else ''}{name}: no such field; {where} has {fields}")
    return section[name]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parse(field: str, text: str, current):
    """``text`` as the type of the field's ``current`` value."""
    def bad(expected: str):
        return ConfigError(f"config.{field}: expected {expected}, got {text!r}")

    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise bad("true or false")
        return text.lower() in ("true", "1")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise bad("an integer") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if isinstance(current, str):
        return text
    if isinstance(current, (tuple, list)):
        text = text.strip()
        value = _literal(text) if text[:1] in ("(", "[") else tuple(_literal(t) for t in text.split(",") if t)
        if not isinstance(value, (tuple, list)):
            raise bad("a tuple, e.g. 1,2,3 or (1, 2, 3)")
        if current and all(isinstance(v, float) for v in current):
            value = [float(v) if isinstance(v, int) else v for v in value]
        return tuple(value)
    if isinstance(current, ml_collections.ConfigDict):
        value = _literal(text)
        if not isinstance(value, dict):
            raise bad("a dict, e.g. \"{'eta': 0.5}\"")
        return ml_collections.ConfigDict(value)
    return _literal(text)


def describe(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """``field = value`` lines, one per leaf field."""
    lines = []
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict) and len(value):
            lines += describe(value, f"{prefix}{name}.")
        else:
            lines.append(f"{prefix}{name} = {dict(value) if isinstance(value, ml_collections.ConfigDict) else value!r}")
    return lines


def start_runtime() -> None:
    """Quiet absl logging (orbax logs every save at INFO) and a persistent compilation cache
    (``$JAX_COMPILATION_CACHE_DIR`` or ``~/.cache/jaxdiff/xla``)."""
    import jax
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    jax.config.update(
        "jax_compilation_cache_dir",
        os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/jaxdiff/xla")),
    )
