r"""Input-pipeline images/s on CIFAR-10-shaped data next to what a cifar10 train step consumes on an H100.

    python -m experiments.bench.input_pipeline [--batches=100] [--tfds_examples=10000] \
        [--out=input_pipeline.json]

Loaders, one process, batch 256 of uint8 32x32x3 images, each randomly flipped left-right and scaled
to [-1, 1]: ``batch_fn`` (a loop in the training process; the TFDS source scales as it reads) and the
grain pipeline of ``jaxdiff.data.loader`` with 0 and 2 worker processes; over in-memory arrays and
over a TFDS ``data_source`` (an ArrayRecord data set of PNG-encoded images like TFDS's cifar10,
written here to a temporary directory). Images are 32x32 crops of scikit-image's sample photographs.

The train step's FLOPs per image come from XLA's cost analysis of the jitted cifar10-config step
(``jaxdiff.nn.UNet`` with the config's sizes, EDM loss, Adam) compiled on this CPU; an H100 is taken
to run it at 40% of 989 TFLOP/s (dense bf16, SXM). The goal is a pipeline delivering at least twice
that per host. Prints a table and writes it as JSON with the processor's model name.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
import tempfile
import time

import numpy as np
from absl import app, flags

H100_DENSE_BF16 = 989e12  # FLOP/s, H100 SXM, dense (no sparsity)
UTILISATION = 0.4
SIZE = 32


def cpu_model() -> dict:
    """``lscpu``'s model name and whether the processor has AMX."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {"model": fields.get("Model name", "").strip(), "amx": "amx" in fields.get("Flags", ""),
            "cpus": os.cpu_count()}


def cifar_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 32, 32, 3) crops of scikit-image's colour photographs (shrunk 4x), int32 (n,) labels."""
    from skimage import data

    photos = [p[: p.shape[0] // 4 * 4, : p.shape[1] // 4 * 4] for p in
              (data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.cat())]
    photos = [p.reshape(p.shape[0] // 4, 4, p.shape[1] // 4, 4, 3).mean((1, 3)).astype(np.uint8) for p in photos]
    rng = np.random.default_rng(seed)
    which = rng.integers(len(photos), size=n)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i, k in enumerate(which):
        p = photos[k]
        y, x = rng.integers(p.shape[0] - SIZE), rng.integers(p.shape[1] - SIZE)
        images[i] = p[y:y + SIZE, x:x + SIZE]
    return images, rng.integers(10, size=n).astype(np.int32)


def write_tfds(images: np.ndarray, labels: np.ndarray, data_dir: str) -> str:
    """Prepare a TFDS data set (ArrayRecord, PNG images, like cifar10) of ``images``; returns its name."""
    import tensorflow_datasets as tfds
    from PIL import Image

    def png(x: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="PNG")
        return buf.getvalue()

    class CifarLike(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                "label": tfds.features.ClassLabel(num_classes=10)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, (x, y) in enumerate(zip(images, labels)):
                yield i, {"image": png(x), "label": int(y)}  # encoded here: tfds encodes with TensorFlow

    CifarLike(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return "cifar_like"


def _today(source, sampler, scale: bool):
    """``batch_fn`` with the same flips (drawn per batch in the training process); ``scale`` the uint8
    images too (the TFDS source scales as it reads)."""
    from jaxdiff.data import pipeline
    from jaxdiff.data.transforms import RandomFlip, ScaleImage

    rng = np.random.default_rng(0)

    def augment(batch: dict) -> dict:
        keys = rng.integers(2**64, size=len(batch["image"]), dtype=np.uint64)
        batch = RandomFlip()(batch, keys)
        return ScaleImage()(batch, keys) if scale else batch

    batches = pipeline.batch_fn(source, sampler, augment)
    return (batches(step) for step in range(1 << 62)), lambda: None


def _grain(source, sampler, num_steps: int, workers: int):
    from jaxdiff.data import loader
    from jaxdiff.data.transforms import RandomFlip, ScaleImage

    dataset = loader.step_dataset(source, sampler, num_steps, [RandomFlip(), ScaleImage()])
    it = loader.iterate(dataset, worker_count=workers)
    return it, it.close


def cpu_seconds() -> float:
    """CPU time of this process and of its live child processes (grain's workers)."""
    total = time.process_time()
    for child in multiprocessing.active_children():
        with open(f"/proc/{child.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def throughput(batches, close, num_batches: int, batch_size: int) -> dict:
    """Seconds to the first batch; then, over ``num_batches`` after a second one, images per second
    and per CPU-second (this process and its workers: what more cores would multiply)."""
    t0 = time.perf_counter()
    next(batches)
    first = time.perf_counter() - t0
    next(batches)
    t0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(num_batches):
        batch = next(batches)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    close()
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (batch_size, SIZE, SIZE, 3)
    images = num_batches * batch_size
    return {"images_per_s": images / seconds, "images_per_cpu_s": images / cpu, "first_batch_s": first}


def measure_loaders(num_batches: int, batch_size: int, num_examples: int, tfds_examples: int, workers: int) -> list:
    from jaxdiff.data import pipeline
    from jaxdiff.data.tfds import TFDSImageSource, TFDSSource

    images, labels = cifar_like(num_examples)
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        name = write_tfds(images[:tfds_examples], labels[:tfds_examples], data_dir)
        arrays = pipeline.ArraySource(image=images, label=labels)
        sources = {  # today's source and whether batch_fn scales its images; the grain source (uint8)
            "in-memory arrays": (arrays, True, arrays),
            "TFDS data_source": (TFDSImageSource(name, data_dir=data_dir), False, TFDSSource(name, data_dir=data_dir)),
        }
        num_steps = num_batches + 2
        for where, (today, scale, raw) in sources.items():
            sampler = pipeline.EpochSampler(len(raw), batch_size, seed=0, process_index=0, process_count=1)
            loaders = {"batch_fn (today)": (_today, today, sampler, scale)}
            for w in (0, workers):
                loaders[f"grain, {w} workers"] = (_grain, raw, sampler, num_steps, w)
            for loader_name, (make, *args) in loaders.items():
                rows.append({"source": where, "loader": loader_name,
                             **throughput(*make(*args), num_batches, batch_size)})
                print(f"  {where:18s} {loader_name:18s} {rows[-1]['images_per_s']:10,.0f} images/s "
                      f"{rows[-1]['images_per_cpu_s']:10,.0f} per CPU-second", flush=True)
    return rows


def train_step_flops_per_image(batch: int) -> dict:
    """FLOPs of one image in the cifar10-config train step: XLA's cost analysis of the compiled step."""
    import jax
    import jax.numpy as jnp
    import optax

    from experiments.configs import cifar10
    from jaxdiff import losses, nn, precond

    config = cifar10.get_config()
    unet = nn.UNet(num_classes=config.model.num_classes, **config.model.unet)
    x = jnp.zeros((batch, SIZE, SIZE, 3), jnp.float32)
    labels = jnp.zeros((batch,), jnp.int32)
    params = jax.eval_shape(lambda k: unet.init(k, x[:1], jnp.ones((1,)), labels[:1])["params"], jax.random.key(0))
    d = config.diffusion
    loss = losses.denoising_loss(nn.as_net(unet), precond.EDMPrecond(d.sigma_data), losses.EDMNoise(
        d.P_mean, d.P_std, d.sigma_data), label_dropout=d.label_dropout, num_classes=config.model.num_classes)
    optimizer = optax.adam(config.optim.learning_rate)

    def step(params, opt_state, batch, key):
        grads, terms = jax.grad(loss, has_aux=True)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, terms

    t0 = time.perf_counter()
    compiled = jax.jit(step).lower(params, jax.eval_shape(optimizer.init, params),
                                   {"image": x, "label": labels}, jax.random.key(0)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"flops_per_image": float(cost["flops"]) / batch, "params": sum(p.size for p in jax.tree.leaves(params)),
            "config_batch_size": config.train.batch_size, "cost_batch": batch,
            "compile_s": time.perf_counter() - t0}


def main(argv) -> None:
    del argv
    FLAGS = flags.FLAGS
    cpu = cpu_model()
    print(f"{cpu['model']} (AMX: {'yes' if cpu['amx'] else 'no'}), {cpu['cpus']} CPUs", flush=True)
    load = [os.getloadavg()[0]]
    rows = measure_loaders(FLAGS.batches, FLAGS.batch_size, FLAGS.num_examples, FLAGS.tfds_examples, FLAGS.workers)
    load.append(os.getloadavg()[0])
    step = train_step_flops_per_image(FLAGS.flops_batch)
    consumed = UTILISATION * H100_DENSE_BF16 / step["flops_per_image"]
    goal = {}
    for source in dict.fromkeys(r["source"] for r in rows):
        grain_rows = [r for r in rows if r["source"] == source and r["loader"].startswith("grain")]
        best = max(grain_rows, key=lambda r: r["images_per_s"])
        goal[source] = {"loader": best["loader"], "images_per_s": best["images_per_s"],
                        "ratio": best["images_per_s"] / consumed, "meets_2x": best["images_per_s"] >= 2 * consumed,
                        "cpus_for_2x": 2 * consumed / max(r["images_per_cpu_s"] for r in grain_rows)}

    print(f"\nbatch {FLAGS.batch_size}; {cpu['model']}, {cpu['cpus']} CPUs; "
          f"1-minute load average {load[0]:.1f} before, {load[1]:.1f} after")
    print(f"| {'source':16s} | {'loader':16s} | {'images/s':>8s} | {'images/CPU-s':>12s} | {'first batch (s)':>15s} |")
    print(f"|{'-' * 18}|{'-' * 18}|{'-' * 10}|{'-' * 14}|{'-' * 17}|")
    for r in rows:
        print(f"| {r['source']:16s} | {r['loader']:16s} | {r['images_per_s']:8,.0f} | {r['images_per_cpu_s']:12,.0f} "
              f"| {r['first_batch_s']:15.2f} |")
    print(f"\ncifar10 train step: {step['params'] / 1e6:.1f} M parameters, "
          f"{step['flops_per_image'] / 1e9:.1f} GFLOP per image (XLA cost analysis, compiled on this CPU)")
    print(f"one H100 at {UTILISATION:.0%} of {H100_DENSE_BF16 / 1e12:.0f} TFLOP/s (dense bf16, SXM) consumes "
          f"{consumed:,.0f} images/s ({consumed / step['config_batch_size']:.1f} steps/s at batch "
          f"{step['config_batch_size']})")
    for source, g in goal.items():
        print(f"  {source}: {g['loader']} delivers {g['images_per_s']:,.0f} images/s here = {g['ratio']:.1f}x "
              f"that: {'meets' if g['meets_2x'] else 'misses'} the 2x goal; at its images per CPU-second, "
              f"2x takes {g['cpus_for_2x']:.2f} CPUs")
    record = {"cpu": cpu, "load_average_1min": load, "batch_size": FLAGS.batch_size,
              "num_examples": FLAGS.num_examples, "tfds_examples": FLAGS.tfds_examples, "loaders": rows,
              "train_step": step, "h100": {"dense_bf16_flops_per_s": H100_DENSE_BF16, "utilisation": UTILISATION,
                                           "images_per_s": consumed}, "goal_2x": goal}
    with open(FLAGS.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    flags.DEFINE_integer("batches", 100, "Timed batches per loader (after the first).")
    flags.DEFINE_integer("batch_size", 256, "Images per batch.")
    flags.DEFINE_integer("num_examples", 50_000, "In-memory images (CIFAR-10's train split has 50,000).")
    flags.DEFINE_integer("tfds_examples", 10_000, "Images written to the TFDS data set.")
    flags.DEFINE_integer("workers", 2, "Worker processes of the multi-process grain loader.")
    flags.DEFINE_integer("flops_batch", 8, "Batch of the train step compiled for its cost analysis.")
    flags.DEFINE_string("out", "input_pipeline.json", "Where to write the JSON record.")
    app.run(main)
