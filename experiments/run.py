r"""Train, sample or evaluate one experiment from a config file.

    python -m experiments.run [--config=experiments/configs/digits.py] [--workdir=DIR] \
        [--mode=train|sample|eval] [--config.FIELD=VALUE ...]

The config names its task (``config.task``, a module of ``experiments/tasks``). ``train`` resumes
from the latest checkpoint in the workdir, trains to ``train.num_steps``, then evaluates the EMA
parameters; ``eval`` restores the latest checkpoint and evaluates; ``sample`` restores it and draws
samples only. Outputs in the workdir: ``config.json``, ``checkpoints/`` (orbax), ``metrics.jsonl``
(the training curve), ``train_time.json``, ``metrics.json`` (``samples.json`` for ``sample``) and the
task's pictures. A bad flag, config file or config value fails at start-up with one line naming it
and what it accepts (exit status 2; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys

import jax
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec as P

from experiments import checks, cli, multihost, tasks
from experiments.checks import ConfigError
from experiments.outputs import Outputs
from jaxdiff.data import loader, pipeline
from jaxdiff.train import (
    Checkpointer, check_batch_size, create_train_state, fit, fsdp_shardings, make_mesh, make_optimizer,
    make_train_step, parallel_train_step, place, replicate, shard_batch,
)
from jaxdiff.train.checkpoint import ensure_writable_dir
from jaxdiff.train.logging import read_train_time

MODES = ("train", "sample", "eval")
DEFAULT_CONFIG = "experiments/configs/digits.py"
HELP_ARGS = ("-h", "--help", "-?", "--helpshort")
FLAGS = flags.FLAGS


def say(message: str) -> None:
    """Print on process 0 only."""
    if jax.process_index() == 0:
        print(message, flush=True)


def checkpoint_steps(workdir: str) -> list[int]:
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []


def check(config, workdir: str, mode: str):
    """Every start-up check that needs neither data nor compilation; returns the config's task."""
    if mode not in MODES:
        raise ConfigError(f"--mode={mode}: choose one of {', '.join(MODES)}")
    task = tasks.get(config.get("task"))
    if mode not in task.MODES:
        raise ConfigError(f"--mode={mode}: task {config.task!r} runs {', '.join(task.MODES)}")
    if not isinstance(config.get("seed"), int):
        checks.fail("seed", f"must be an integer, got {config.get('seed')!r}")
    checks.check_train(config)
    checks.optim_config(config)
    task.validate(config)
    try:
        ensure_writable_dir(workdir, "workdir")
    except OSError as e:
        raise ConfigError(f"--workdir={workdir}: {e}") from None
    if mode != "train" and not checkpoint_steps(workdir):
        raise ConfigError(f"--mode={mode}: no checkpoint in {os.path.join(workdir, 'checkpoints')}; "
                          "train first (--mode=train)")
    return task


def train(config, experiment, state, shardings, optimizer, mesh, workdir: str, *, progress: bool):
    """``fit`` on the experiment's loss and data, resuming from the workdir's latest checkpoint."""
    tc = config.train
    step = parallel_train_step(
        make_train_step(experiment.loss, optimizer, batch_size=tc.batch_size,
                        ema_halflife_nimg=tc.ema_halflife_nimg, ema_rampup_ratio=tc.ema_rampup_ratio),
        mesh, state_shardings=shardings,
    )
    try:
        order = pipeline.EpochSampler(len(experiment.source), tc.batch_size, seed=config.seed)
    except ValueError as e:
        raise ConfigError(f"config.train.{e}") from None
    local = loader.Batches(loader.step_dataset(experiment.source, order, tc.num_steps, experiment.transforms),
                           worker_count=tc.data_workers)
    try:
        state = fit(state, step, lambda s: shard_batch(local(s), mesh), num_steps=tc.num_steps, workdir=workdir,
                    log_every=tc.log_every, checkpoint_every=tc.checkpoint_every, max_to_keep=tc.max_to_keep,
                    progress=progress, stop_on_nonfinite=tc.nonfinite == "stop")
    finally:
        local.close()
    return state


def train_seconds(workdir: str, step: int, trained: bool) -> dict:
    """``train_seconds`` (all runs, up to checkpoint ``step``) and, when this run trained,
    ``train_seconds_this_run``."""
    record = read_train_time(workdir)
    out = {"train_seconds": record["checkpoints"][step]} if step in record.get("checkpoints", {}) else {}
    if trained and out:
        out["train_seconds_this_run"] = record["last_run"]["seconds"]
    return out


def state_shardings(experiment, optimizer, k_init, k_train, mesh):
    """The ``TrainState``'s structure, shapes and dtypes, without initialising, and the sharding of each
    leaf: parameters, EMA and optimizer state split over the mesh's ``fsdp`` axis, the rest replicated."""
    shapes = jax.eval_shape(lambda k: create_train_state(experiment.init(k), optimizer, k_train), k_init)
    shardings = fsdp_shardings(shapes, mesh)
    return shapes, shardings.replace(step=NamedSharding(mesh, P()), rng=NamedSharding(mesh, P()))


def abstract_state(shapes, shardings, k_train, mesh):
    """A restore target: ``ShapeDtypeStruct``s with their shardings."""
    state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
    return state.replace(rng=replicate(k_train, mesh))  # orbax restores a PRNG key into a concrete key


def restore(state, workdir: str):
    """The latest checkpoint of ``workdir`` in the structure and shardings of ``state``."""
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    state = ckpt.restore(state)
    ckpt.close()
    say(f"restored step {int(state.step)} from {ckpt.directory}")
    return state


def run(config, workdir: str, mode: str = "train", *, progress: bool = True) -> dict:
    """Run ``mode`` of the config's task in ``workdir``; returns the metrics (also written there).

    Every process of a multi-process run calls it alike (same config, same workdir); process 0 writes
    the files."""
    task = check(config, workdir, mode)
    try:
        mesh = make_mesh(fsdp=config.train.fsdp)
        check_batch_size(config.train.batch_size, mesh)
    except ValueError as e:
        raise ConfigError(f"config.train.{e}") from None
    experiment = task.build(config)
    outputs = Outputs(workdir)
    outputs.text("config.json", config.to_json_best_effort(indent=2) + "\n")

    optimizer = make_optimizer(checks.optim_config(config))
    k_init, k_train, k_eval = jax.random.split(jax.random.key(config.seed), 3)
    shapes, shardings = state_shardings(experiment, optimizer, k_init, k_train, mesh)
    if mode == "train":
        state = place(create_train_state(experiment.init(k_init), optimizer, k_train), shardings)
        state = train(config, experiment, state, shardings, optimizer, mesh, workdir, progress=progress)
    else:
        state = restore(abstract_state(shapes, shardings, k_train, mesh), workdir)
    step = int(state.step)
    evaluate = experiment.sample if mode == "sample" else experiment.evaluate
    metrics = {**evaluate(state.ema_params, k_eval, outputs), "step": step,
               **train_seconds(workdir, step, trained=mode == "train")}
    outputs.json("samples.json" if mode == "sample" else "metrics.json", metrics)
    return metrics


# -- the command line ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Command:
    config: object
    workdir: str
    mode: str
    progress: bool


def define_flags() -> None:
    flags.DEFINE_string("config", DEFAULT_CONFIG, "Config file (a Python file with get_config()); set its "
                        "fields with --config.FIELD=VALUE, listed below.")
    flags.DEFINE_string("workdir", None, "Directory for checkpoints and outputs (default: workdir/<config file "
                        "name>, e.g. workdir/digits).")
    flags.DEFINE_enum("mode", "train", MODES, "train: train (resuming from the latest checkpoint), then evaluate; "
                      "eval: restore the latest checkpoint and evaluate; sample: restore it and draw samples.")
    flags.DEFINE_bool("progress", True, "Show a progress bar while training.")
    flags.DEFINE_bool("debug", False, "Show the traceback of start-up errors.")
    flags.DEFINE_enum("multihost", "auto", multihost.MULTIHOST, "Join JAX's distributed runtime: auto (when the "
                      "environment runs this process as one of several: experiments.launch, SLURM, Open MPI, Cloud "
                      "TPU VMs, which JAX detects itself), on, off.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0's coordinator (default: from the "
                        "environment).")
    flags.DEFINE_integer("num_processes", None, "Processes of the run (default: from the environment).")
    flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes) (default: from the "
                         "environment).")
    flags.DEFINE_float("coordinator_timeout", 300.0, "Seconds to wait for the coordinator and the other processes "
                       "before failing.")


@contextlib.contextmanager
def usage_errors(debug: bool):
    """A bad flag, config file or config value: one line on stderr and exit status 2."""
    try:
        yield
    except (ConfigError, flags.Error) as e:
        if debug:
            raise
        print(f"error: {'; '.join(str(e).splitlines())}", file=sys.stderr)
        sys.exit(2)


def help_text(config, error: ConfigError | None) -> str:
    flag_help = FLAGS.main_module_help().strip().split("\n", 1)[1]  # without its "<path of run.py>:" title
    lines = [__doc__.strip(), "", "Flags:", flag_help, ""]
    if error is not None:
        lines.append(f"(no config fields to show: {error})")
        return "\n".join(lines)
    lines.append(f"Config fields of {FLAGS.config} (set with --config.FIELD=VALUE):")
    lines += [f"  {line}" for line in cli.describe(config)]
    lines += ["", f"Tasks (config.task): {', '.join(tasks.names())}.",
              f"Configs in experiments/configs: {', '.join(cli.config_files())}."]
    if "sampler" in config.get("sample", {}):
        from jaxdiff import samplers

        lines.append(f"Samplers (config.sample.sampler): {', '.join(sorted(samplers.REGISTRY))}.")
    return "\n".join(lines)


def parse_command_line(argv: list[str]) -> Command:
    """Flags, then the config file with its ``--config.FIELD=VALUE`` overrides; ``--help`` prints the flags
    and the config's fields, then exits."""
    rest, overrides = cli.split_overrides(argv)
    wants_help = any(a in HELP_ARGS for a in rest)
    with usage_errors("--debug" in rest or "--debug=true" in rest):
        positional = FLAGS([a for a in rest if a not in HELP_ARGS])
        if len(positional) > 1:
            raise ConfigError(f"unexpected arguments {positional[1:]}; flags take the form --name=value")
        try:
            config = cli.load_config(FLAGS.config)
            cli.apply_overrides(config, overrides)
        except ConfigError as e:
            if not wants_help:
                raise
            print(help_text(None, e))
            sys.exit(0)
    if wants_help:
        print(help_text(config, None))
        sys.exit(0)
    name = os.path.splitext(os.path.basename(FLAGS.config))[0]
    return Command(config, FLAGS.workdir or os.path.join("workdir", name), FLAGS.mode, FLAGS.progress)


def main(command: Command) -> None:
    cli.start_runtime()
    with usage_errors(FLAGS.debug):
        multihost.join(FLAGS.multihost, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                       FLAGS.coordinator_timeout)
        multihost.check_same(**{"--num_processes": FLAGS.num_processes, "--workdir": os.path.abspath(command.workdir),
                                "--mode": command.mode, "--config": command.config.to_json_best_effort(sort_keys=True)})
        metrics = run(command.config, command.workdir, command.mode, progress=command.progress)
    say(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_command_line)
