r"""Train, sample and evaluate diffusion models from a config file.

    python -m experiments.main --config=experiments/configs/digits.py --workdir=/tmp/digits \
        [--mode=train|sample|eval] [--config.train.num_steps=2000 ...]

``train`` resumes from the latest checkpoint in ``workdir``, then samples and
evaluates with the EMA parameters. Outputs in ``workdir``: ``checkpoints/``
(orbax), ``metrics.jsonl`` (training curve), ``samples.png`` (samples next to
real data), ``samples.npz`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS


def run(config, workdir: str, mode: str = "train", *, progress: bool = True) -> dict:
    """Run one mode and return the evaluation metrics (also written to ``workdir/metrics.json``)."""
    from experiments import build, evaluate

    build.validate(config)
    import jax

    from jaxdiff.train import check_batch_size, create_train_state, data_mesh, make_optimizer, replicate
    from jaxdiff.train.checkpoint import ensure_writable_dir

    data = build.build_data(config)
    module, net = build.build_network(config, data.shape)
    pre = build.build_precond(config)
    loss_fn = build.build_loss(config, net, pre)
    optimizer = make_optimizer(build.build_optim(config))
    sample = build.build_sampler(config, net, pre, data.shape)
    mesh = data_mesh()
    check_batch_size(config.train.batch_size, mesh)

    ensure_writable_dir(workdir, "workdir")
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    k_init, k_train, k_sample = jax.random.split(jax.random.key(config.seed), 3)
    params = build.init_params(module, data.shape, k_init)
    state = replicate(create_train_state(params, optimizer, k_train), mesh)
    t0 = time.perf_counter()
    state = build.train_or_restore(config, state, loss_fn, optimizer, data.train, mesh, workdir, mode,
                                   progress=progress)
    train_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    n = config.eval.num_samples if mode != "sample" else config.sample.num_samples
    labels = None
    if config.model.num_classes:
        labels = jax.numpy.arange(n) % config.model.num_classes
    samples = jax.device_get(sample(state.ema_params, k_sample, n, labels))
    sample_seconds = time.perf_counter() - t0
    evaluate.save_samples(workdir, samples, data)
    if mode == "sample":
        return {}
    metrics = evaluate.evaluate(config, samples, data)
    metrics.update(step=int(state.step), train_seconds=train_seconds, sample_seconds=sample_seconds,
                   sampler=config.sample.sampler, sampler_nfe=2 * config.sample.num_steps - 1
                   if config.sample.sampler == "heun" else config.sample.num_steps)
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def main(argv):
    from experiments.build import start_cli

    start_cli(argv)
    metrics = run(FLAGS.config, FLAGS.workdir, FLAGS.mode, progress=FLAGS.progress)
    if metrics:
        print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    from experiments.build import define_cli_flags

    define_cli_flags("Path to an experiments/configs/*.py file.", ("train", "sample", "eval"))
    app.run(main)
