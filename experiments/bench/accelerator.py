r"""What to run when an accelerator is at hand, in one script (meant to fit 8 minutes on one GPU).

    python -m experiments.bench.accelerator [--out=workdir/bench/accelerator.json] [--smoke]

1. The tests whose results depend on the device's arithmetic (``TESTS``: the precision policy's
   promises, the tolerances stated for networks, the sampler zoo, the correlation lookups), in a
   pytest subprocess, before this process takes the device.
2. Train-step throughput and MFU of the DiT and the UNet at the sizes of
   ``experiments/configs/cifar10.py`` (32x32x3, class-conditional EDM), batch ``--batch``, in float32
   and bfloat16 (``model.<arch>.dtype``). MFU is the step's FLOPs (XLA's cost analysis of the compiled
   step) per second over the dense matmul peak of its compute dtype, measured in this run with a large
   jitted matmul (float32 at the default precision, TF32 on recent NVIDIA GPUs; the float32 ``highest``
   peak is recorded beside it).
3. Sampling throughput: images/s of the config's sampler (EDM's Heun, 18 steps, 35 NFE).
4. The correlation lookup of ``experiments.bench.corr`` at Sintel size (``--channels``).

Writes one JSON record (device, JAX version, every number, each part's seconds) to ``--out`` after
every part, so a run cut short keeps what it measured, and prints a table at the end. A part that
fails (out of memory, say) is recorded under ``errors`` and the others still run; ``--archs``,
``--dtypes`` and ``--tests=false`` trim the run. ``--smoke`` runs every part at tiny sizes, in
seconds on a CPU (the tests run it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from absl import app, flags

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TESTS = [
    "tests/test_precision.py",
    "tests/test_denoisers.py",
    "tests/test_likelihood.py",
    "tests/metrics/test_distances.py",
    "tests/metrics/test_digits_classifier.py",
    "tests/latent/test_cross_attention.py",
    "tests/graphs/test_nets.py",
    "tests/nn/test_nn.py",
    "tests/reliability/test_numerics.py",
    "tests/samplers/test_noise.py",
    "tests/samplers/test_zoo.py",
    "tests/flow",
]
SMOKE_TESTS = ["tests/test_precision.py::test_matmul_precision_config_is_checked"]
IMAGE_SHAPE = (32, 32, 3)  # CIFAR-10
SMOKE_IMAGE_SHAPE = (8, 8, 3)


def define_flags() -> None:
    flags.DEFINE_string("out", "workdir/bench/accelerator.json", "Where the JSON record goes.")
    flags.DEFINE_bool("smoke", False, "Tiny sizes everywhere: seconds on a CPU (checks the script, measures nothing).")
    flags.DEFINE_bool("tests", True, "Run the device-sensitive tests first.")
    flags.DEFINE_integer("test_workers", 8, "pytest-xdist workers for the tests (0: one process).")
    flags.DEFINE_integer("test_timeout", 240, "Seconds the tests may take.")
    flags.DEFINE_list("archs", ["dit", "unet"], "Networks to time.")
    flags.DEFINE_list("dtypes", ["bfloat16", "float32"], "Compute dtypes to time.")
    flags.DEFINE_integer("batch", 256, "Training batch size.")
    flags.DEFINE_integer("steps", 10, "Timed train steps (after two warm-up steps).")
    flags.DEFINE_integer("num_samples", 256, "Images per timed sampling call.")
    flags.DEFINE_integer("matmul_size", 8192, "N of the N x N matmul that measures the peaks.")
    flags.DEFINE_integer("repeats", 10, "Timed calls of the matmuls and the correlation lookups; the best counts.")
    flags.DEFINE_integer("channels", 256, "Feature channels of the correlation lookup at Sintel size "
                         "(experiments.bench.corr reads it; 8 with --smoke).")


# -- 1. tests -------------------------------------------------------------------------------------


def run_tests(ids: list[str], *, workers: int, timeout: int) -> dict:
    """pytest on ``ids`` in a subprocess: counts, failing test ids and seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "junit.xml")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *ids]
        if workers:
            cmd += ["-n", str(workers)]
        # Several processes share the accelerator: each takes the memory it needs, not 75% of it.
        env = dict(os.environ, PYTHONPATH=ROOT, XLA_PYTHON_CLIENT_PREALLOCATE="false")
        t0 = time.perf_counter()
        # A session of its own, so that a timeout ends the xdist workers too, which hold the device.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            return {"ids": ids, "timed_out": True, "seconds": timeout, "output_tail": output[-4000:]}
        record = {"ids": ids, "returncode": proc.returncode, "seconds": round(time.perf_counter() - t0, 1)}
        if not os.path.exists(report):
            return {**record, "output_tail": output[-4000:]}
        cases = list(ET.parse(report).getroot().iter("testcase"))
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in cases
              if c.find("failure") is not None or c.find("error") is not None]
    skipped = sum(c.find("skipped") is not None for c in cases)
    return {**record, "passed": len(cases) - len(failed) - skipped, "failed": failed, "skipped": skipped}


# -- 2. train steps ---------------------------------------------------------------------------------


def matmul_peaks(n: int, repeats: int) -> dict:
    """FLOP/s of a jitted N x N matmul (``experiments.bench.train_throughput``): bfloat16 and float32 at
    the default precision, and float32 at ``highest``."""
    import jax

    from experiments.bench.train_throughput import matmul_flops_per_s

    peaks = {dtype: matmul_flops_per_s(n, dtype, repeats) for dtype in ("bfloat16", "float32")}
    with jax.default_matmul_precision("highest"):
        peaks["float32_highest"] = matmul_flops_per_s(n, "float32", repeats)
    return peaks


def cifar10_config(arch: str, dtype: str, smoke: bool):
    """``experiments/configs/cifar10.py`` with ``model.arch`` and its dtype (tiny sizes for ``smoke``)."""
    from experiments.configs import cifar10

    config = cifar10.get_config()
    config.model.arch = arch
    config.model[arch].dtype = dtype
    if smoke:
        config.model.unet.update(dict(channels=8, channel_mult=(1,), num_res_blocks=1, attn_resolutions=(),
                                      num_groups=4))
        config.model.dit.update(dict(hidden_size=16, depth=1, num_heads=2))
        config.sample.num_steps = 2
    return config


def key(seed: int):
    """An rbg PRNG key: it compiles several times faster than threefry; its draws are a negligible part of a step."""
    import jax

    return jax.random.key(seed, impl="rbg")


def train_step_record(config, net, params, shape: tuple, batch: int, steps: int, peaks: dict) -> dict:
    """One device: compile the config's train step, time ``steps`` steps, FLOPs from XLA's cost analysis.
    The steps donate their state, built from a copy of ``params``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments import checks
    from experiments.tasks import diffusion
    from jaxdiff.train import create_train_state, make_optimizer, make_train_step

    loss = diffusion.build_loss(config, net, diffusion.build_precond(config))
    optimizer = make_optimizer(checks.optim_config(config))
    step = jax.jit(make_train_step(loss, optimizer, batch_size=batch,
                                   ema_halflife_nimg=config.train.ema_halflife_nimg), donate_argnums=0)
    num_params = int(sum(np.size(p) for p in jax.tree.leaves(params)))
    state = create_train_state(jax.tree.map(jnp.copy, params), optimizer, key(1))
    k_image, k_label = jax.random.split(key(2))
    data = {"image": jax.random.uniform(k_image, (batch, *shape), minval=-1.0, maxval=1.0),
            "label": jax.random.randint(k_label, (batch,), 0, config.model.num_classes)}
    t0 = time.perf_counter()
    lowered = step.lower(state, data)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    flops = float(compiled.cost_analysis()["flops"])
    for _ in range(2):
        state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - t0) / steps
    dtype = config.model[config.model.arch].dtype
    return {
        "params": num_params,
        "batch": batch,
        "compile_s": round(compile_s, 1),
        "ms_per_step": 1e3 * seconds,
        "images_per_s": batch / seconds,
        "tflop_per_step": flops / 1e12,
        "tflop_per_step_unoptimized_hlo": float(lowered.cost_analysis()["flops"]) / 1e12,
        "achieved_tflop_per_s": flops / seconds / 1e12,
        "mfu": flops / seconds / peaks[dtype],
        "temp_gib": compiled.memory_analysis().temp_size_in_bytes / 2**30,
        "loss_finite": bool(jnp.isfinite(metrics["loss"])),
    }


# -- 3. sampling ------------------------------------------------------------------------------------


def sampling_record(config, net, params, shape: tuple, n: int) -> dict:
    """Images/s of the config's sampler (``config.sample``), timed on a second call after compiling."""
    import jax
    import jax.numpy as jnp

    from experiments.tasks import diffusion

    sample = diffusion.build_sampler(config, net, diffusion.build_precond(config), shape)
    labels = jnp.arange(n) % config.model.num_classes
    t0 = time.perf_counter()
    images, nfe = sample(params, key(1), n, labels)
    jax.block_until_ready(images)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    images, nfe = sample(params, key(2), n, labels)
    jax.block_until_ready(images)
    seconds = time.perf_counter() - t0
    return {"sampler": config.sample.sampler, "num_steps": config.sample.num_steps, "nfe": nfe, "num_samples": n,
            "compile_and_first_call_s": round(first_s, 1), "seconds": seconds, "images_per_s": n / seconds}


# -- 4. correlation ---------------------------------------------------------------------------------


def correlation_record(repeats: int) -> dict | None:
    """``experiments.bench.corr.bench_jax`` (pyramid, lookups and their gradients), None if it cannot import."""
    try:
        from experiments.bench import corr
    except ImportError:
        return None
    return corr.bench_jax(repeats)


# -- the record -------------------------------------------------------------------------------------


def host_cpu() -> str:
    """The host processor's model name (from /proc/cpuinfo; "unknown" elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def table(record: dict) -> str:
    peaks = record["matmul_peak_tflop_per_s"]
    rows = [f"{record['device']} ({record['platform']}; host {record['host_cpu']}), JAX {record['jax']}",
            "matmul peak TFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())]
    if "tests" in record:
        t = record["tests"]
        timed_out = " (timed out)" if t.get("timed_out") else ""
        rows.append(f"tests: {t.get('passed', '?')} passed, {len(t.get('failed', []))} failed, "
                    f"{t.get('skipped', 0)} skipped in {t['seconds']} s{timed_out}")
        rows += [f"  FAILED {name}" for name in t.get("failed", [])]
    rows.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in record["seconds"].items()))
    rows += ["", "| network | dtype | params | ms/step | images/s | TFLOP/step | TFLOP/s | MFU | sampling images/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in record["train"].items():
        arch, dtype = name.split("/")
        rows.append(f"| {arch} | {dtype} | {r['params'] / 1e6:.1f} M | {r['ms_per_step']:.1f} "
                    f"| {r['images_per_s']:.0f} | {r['tflop_per_step']:.3f} | {r['achieved_tflop_per_s']:.1f} "
                    f"| {100 * r['mfu']:.1f}% | {record['sampling'][name]['images_per_s']:.1f} |")
    rows += [f"{name} failed: {error}" for name, error in record["errors"].items()]
    corr = record.get("correlation")
    if corr:
        kernels = [k for k in ("native", "xla") if k in corr]
        rows.append("")
        rows.append(f"correlation (Sintel 1/8, {FLAGS.channels} channels): pyramid build {corr['build_ms']:.2f} ms; "
                    + "; ".join(f"{k}: all-pairs lookup {corr[k]['lookup_ms']:.2f} ms, on-the-fly "
                                f"{corr[k]['on_the_fly_ms']:.2f} ms" for k in kernels))
    return "\n".join(rows)


def main(_):
    smoke = FLAGS.smoke
    if smoke:
        FLAGS.channels = 8
    record = {"smoke": smoke, "host_cpu": host_cpu(), "seconds": {}, "errors": {}}

    def save():  # after every part: a run cut short keeps what it measured
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(record, f, indent=2)

    if FLAGS.tests:  # before this process takes the device
        record["tests"] = run_tests(SMOKE_TESTS if smoke else TESTS, workers=0 if smoke else FLAGS.test_workers,
                                    timeout=FLAGS.test_timeout)
        record["seconds"]["tests"] = record["tests"]["seconds"]
        save()
    import jax

    from experiments import networks

    device = jax.devices()[0]
    record.update(device=device.device_kind, platform=device.platform, device_count=jax.device_count(),
                  jax=jax.__version__)
    shape = SMOKE_IMAGE_SHAPE if smoke else IMAGE_SHAPE
    batch, steps, n = (4, 2, 2) if smoke else (FLAGS.batch, FLAGS.steps, FLAGS.num_samples)
    repeats = 1 if smoke else FLAGS.repeats
    clock = time.perf_counter()
    peaks = matmul_peaks(256 if smoke else FLAGS.matmul_size, repeats)
    record["matmul_peak_tflop_per_s"] = {k: v / 1e12 for k, v in peaks.items()}
    record["seconds"]["matmul_peaks"] = time.perf_counter() - clock
    record["train"], record["sampling"] = {}, {}
    for arch in FLAGS.archs:
        for dtype in FLAGS.dtypes:
            name, clock = f"{arch}/{dtype}", time.perf_counter()
            try:
                config = cifar10_config(arch, dtype, smoke)
                module, net = networks.network(config, shape)
                params = networks.init_params(module, shape, key(0))
                record["train"][name] = train_step_record(config, net, params, shape, batch, steps, peaks)
                record["sampling"][name] = sampling_record(config, net, params, shape, n)
            except Exception as e:  # e.g. out of memory: the other parts still run
                record["errors"][name] = f"{type(e).__name__}: {e}"[:2000]
            record["seconds"][name] = time.perf_counter() - clock
            save()
    clock = time.perf_counter()
    record["correlation"] = correlation_record(repeats)
    record["seconds"]["correlation"] = time.perf_counter() - clock
    save()
    print(table(record))
    print(f"\nwrote {FLAGS.out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
