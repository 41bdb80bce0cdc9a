r"""Correlation pyramid and lookup: jaxdiff (all-pairs and on-the-fly) next to RAFT's PyTorch CorrBlock.

    python -m experiments.bench.corr [--repeats=20] [--large=true]

At Sintel 1/8 resolution (1x46x62x256, r=4, 4 levels) times the jaxdiff pyramid
build, its level-0 volume as one matmul (the fastest dense multiply-add rate, for the
cost of an on-the-fly lookup made of one dot product per tap), and with each kernel (the C++
kernels and the XLA formulation on the CPU; XLA on a GPU) the all-pairs lookup and the
on-the-fly lookup (smooth and random flow) and their gradients, and, when torch is importable,
RAFT's ``CorrBlock`` transcribed below in the same process, on the GPU when JAX runs on one
(else on the CPU), inputs already on the device for both. Memory: bytes of the all-pairs pyramid next to XLA's
``memory_analysis`` of each compiled function. ``--large`` adds on-the-fly runs
at 1080p (1/8: 135x240) and 4K (1/8: 270x480). Prints a JSON record and a
markdown table; times are the best of ``repeats`` calls after a warm-up. ``--levels``
adds a per-level profile at Sintel size: the all-pairs window gather of each level alone,
and the on-the-fly lookup over the first k levels (k = 1..4; the blocks of level l do not
depend on k). ``--sweep`` times the XLA on-the-fly lookup for several ``tile``, ``chunk`` and
``spill`` settings.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("repeats", 20, "Timed calls per measurement; the best is reported.")
    flags.DEFINE_bool("large", True, "Also run on-the-fly lookups at 1080p and 4K feature sizes.")
    flags.DEFINE_bool("levels", False, "Also time each pyramid level alone at Sintel size.")
    flags.DEFINE_integer("channels", 256, "Feature channels D at Sintel size (fewer isolate the per-window overhead).")
    flags.DEFINE_bool("sweep", False, "Also time the XLA on-the-fly lookup over tile, chunk and spill at Sintel size.")


LARGE = {"1080p": (1, 135, 240, 256), "4K": (1, 270, 480, 256)}
LEVELS, RADIUS = 4, 4
MIB = 2**20


def _kernels() -> tuple[str, ...]:
    """The lookup kernels to time: the C++ kernels and the XLA formulation on the CPU, XLA elsewhere."""
    import jax

    return ("native", "xla") if jax.default_backend() == "cpu" else ("xla",)


def _sintel() -> tuple[int, int, int, int]:
    return (1, 46, 62, FLAGS.channels)


def _best_ms(fn, repeats: int, sync=lambda: None) -> float:
    """Best wall time of ``fn(); sync()`` over ``repeats`` calls after one warm-up, in ms."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def _inputs(shape, seed: int = 0, random_flow: bool = False):
    """Features (B, H, W, D) x2 and coords (B, H, W, 2): identity plus a smooth (or random) flow of ~4 px."""
    import numpy as np

    b, h, w, d = shape
    rng = np.random.default_rng(seed)
    f1 = rng.standard_normal(shape, np.float32)
    f2 = rng.standard_normal(shape, np.float32)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = np.stack([xs, ys], -1)[None].astype(np.float32)
    if random_flow:
        flow = rng.uniform(-8, 8, grid.shape)
    else:
        flow = 4 * np.sin(grid[..., ::-1] / 7.0) + 0.3 * rng.standard_normal(grid.shape)
    return f1, f2, np.broadcast_to(grid + flow, (b, h, w, 2)).astype(np.float32)


def _window_macs(coords, d: int) -> int:
    """Multiply-adds of one dot product per in-map tap of each query's (2r+2)² patch at each
    level (coords (B, H, W, 2), level maps of floor sizes). The C++ kernel does fewer: it takes a
    level-(l+1) tap as the mean of the four level-l taps below it where it holds them."""
    import numpy as np

    _, h, w, _ = coords.shape
    k = 2 * RADIUS + 2
    taps = 0
    for level in range(LEVELS):
        start = np.floor(coords.reshape(-1, 2).astype(np.float64) / 2**level).astype(np.int64) - RADIUS
        size = np.array([w >> level, h >> level])
        inside = np.clip(np.minimum(start + k, size) - np.maximum(start, 0), 0, None)
        taps += int((inside[:, 0] * inside[:, 1]).sum())
    return taps * d


def _memory(jitted, *args) -> dict:
    m = jitted.lower(*args).compile().memory_analysis()
    return {
        "temp_mib": m.temp_size_in_bytes / MIB,
        "args_mib": m.argument_size_in_bytes / MIB,
        "out_mib": m.output_size_in_bytes / MIB,
    }


def bench_jax(repeats: int) -> dict:
    """Pyramid build and feature pooling, then each kernel's all-pairs and on-the-fly lookups."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff.flow import corr

    f1, f2, coords, random_coords = map(jax.device_put, _inputs(_sintel()) + _inputs(_sintel(), random_flow=True)[2:])
    build = jax.jit(lambda a, b: corr.correlation_pyramid(a, b, LEVELS))
    matmul = jax.jit(lambda a, b: jnp.matmul(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]).T,
                                             precision="highest"))  # float32 products, as the pyramid
    features = jax.jit(lambda b: corr.feature_pyramid(b, LEVELS))
    pyramid = build(f1, f2)
    fpyr = features(f2)
    b, h, w, d = f1.shape
    record = {
        "window_gmac": _window_macs(np.asarray(coords), d) / 1e9,
        "volume_gmac": b * (h * w) ** 2 * d / 1e9,
        "build_ms": _best_ms(lambda: jax.block_until_ready(build(f1, f2)), repeats),
        "matmul_ms": _best_ms(lambda: matmul(f1, f2).block_until_ready(), repeats),
        "feature_pyramid_ms": _best_ms(lambda: jax.block_until_ready(features(f2)), repeats),
        "pyramid_mib": sum(p.nbytes for p in pyramid) / MIB,
        "build_memory": _memory(build, f1, f2),
    }
    for kernel in _kernels():
        look = jax.jit(lambda p, c, k=kernel: corr.lookup(p, c, RADIUS, kernel=k))
        otf = jax.jit(lambda a, fp, c, k=kernel: corr.lookup_on_the_fly(a, fp, c, RADIUS, kernel=k))
        look_grad = jax.jit(jax.grad(lambda p, c, k=kernel: (corr.lookup(p, c, RADIUS, kernel=k) ** 2).sum()))
        otf_grad = jax.jit(jax.grad(
            lambda a, fp, c, k=kernel: (corr.lookup_on_the_fly(a, fp, c, RADIUS, kernel=k) ** 2).sum(), argnums=(0, 1)))
        record[kernel] = {
            "lookup_ms": _best_ms(lambda: look(pyramid, coords).block_until_ready(), repeats),
            "lookup_grad_ms": _best_ms(lambda: jax.block_until_ready(look_grad(pyramid, coords)), repeats),
            "on_the_fly_grad_ms": _best_ms(lambda: jax.block_until_ready(otf_grad(f1, fpyr, coords)), repeats),
            "on_the_fly_ms": _best_ms(lambda: otf(f1, fpyr, coords).block_until_ready(), repeats),
            "on_the_fly_random_flow_ms": _best_ms(lambda: otf(f1, fpyr, random_coords).block_until_ready(), repeats),
            "lookup_memory": _memory(look, pyramid, coords),
            "on_the_fly_memory": _memory(otf, f1, fpyr, coords),
        }
    return record


def bench_large(repeats: int) -> dict:
    import jax

    from jaxdiff.flow import corr

    out = {}
    for name, shape in LARGE.items():
        f1, f2, coords = map(jax.device_put, _inputs(shape))
        b, h, w, _ = shape
        out[name] = {"shape": list(shape), "all_pairs_volume_mib": b * (h * w) ** 2 * 4 / MIB}
        for kernel in _kernels():
            otf = jax.jit(lambda a, b, c, k=kernel: corr.lookup_on_the_fly(a, b, c, RADIUS, LEVELS, kernel=k))
            out[name][kernel] = {
                "on_the_fly_ms": _best_ms(lambda: otf(f1, f2, coords).block_until_ready(), repeats),
                "on_the_fly_memory": _memory(otf, f1, f2, coords),
            }
    return out


def bench_torch(repeats: int) -> dict | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None

    def bilinear_sampler(img, coords):
        H, W = img.shape[-2:]
        xgrid, ygrid = coords.split([1, 1], dim=-1)
        xgrid = 2 * xgrid / (W - 1) - 1
        ygrid = 2 * ygrid / (H - 1) - 1
        grid = torch.cat([xgrid, ygrid], dim=-1)
        return F.grid_sample(img, grid, align_corners=True)

    class CorrBlock:
        """princeton-vl/RAFT core/corr.py, as published."""

        def __init__(self, fmap1, fmap2, num_levels=4, radius=4):
            self.num_levels = num_levels
            self.radius = radius
            self.corr_pyramid = []
            corr = CorrBlock.corr(fmap1, fmap2)
            batch, h1, w1, dim, h2, w2 = corr.shape
            corr = corr.reshape(batch * h1 * w1, dim, h2, w2)
            self.corr_pyramid.append(corr)
            for _ in range(self.num_levels - 1):
                corr = F.avg_pool2d(corr, 2, stride=2)
                self.corr_pyramid.append(corr)

        def __call__(self, coords):
            r = self.radius
            coords = coords.permute(0, 2, 3, 1)
            batch, h1, w1, _ = coords.shape
            out_pyramid = []
            for i in range(self.num_levels):
                corr = self.corr_pyramid[i]
                dx = torch.linspace(-r, r, 2 * r + 1)
                dy = torch.linspace(-r, r, 2 * r + 1)
                delta = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), axis=-1).to(coords.device)
                centroid_lvl = coords.reshape(batch * h1 * w1, 1, 1, 2) / 2**i
                delta_lvl = delta.view(1, 2 * r + 1, 2 * r + 1, 2)
                coords_lvl = centroid_lvl + delta_lvl
                corr = bilinear_sampler(corr, coords_lvl)
                corr = corr.view(batch, h1, w1, -1)
                out_pyramid.append(corr)
            out = torch.cat(out_pyramid, dim=-1)
            return out.permute(0, 3, 1, 2).contiguous().float()

        @staticmethod
        def corr(fmap1, fmap2):
            batch, dim, ht, wd = fmap1.shape
            fmap1 = fmap1.view(batch, dim, ht * wd)
            fmap2 = fmap2.view(batch, dim, ht * wd)
            corr = torch.matmul(fmap1.transpose(1, 2), fmap2)
            corr = corr.view(batch, ht, wd, 1, ht, wd)
            return corr / torch.sqrt(torch.tensor(dim).float())

    import jax

    # PyTorch on the GPU next to JAX on the GPU, else both on the CPU.
    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    f1, f2, coords = (torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).to(device) for a in _inputs(_sintel()))
    with torch.no_grad():
        block = CorrBlock(f1, f2, LEVELS, RADIUS)
        return {
            "device": torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads",
            "build_ms": _best_ms(lambda: CorrBlock(f1, f2, LEVELS, RADIUS), repeats, sync),
            "lookup_ms": _best_ms(lambda: block(coords), repeats, sync),
            "pyramid_mib": sum(c.numel() * c.element_size() for c in block.corr_pyramid) / MIB,
        }


def bench_levels(repeats: int) -> dict:
    """Per kernel and level l: the all-pairs window gather alone, and the on-the-fly lookup over levels 0..l."""
    import jax

    from jaxdiff.flow import corr

    f1, f2, coords = map(jax.device_put, _inputs(_sintel()))
    pyramid = jax.jit(lambda a, b: corr.correlation_pyramid(a, b, LEVELS))(f1, f2)
    fpyr = jax.jit(lambda b: corr.feature_pyramid(b, LEVELS))(f2)
    out = {}
    for kernel in _kernels():
        gathers, heads = [], []
        for level in range(LEVELS):
            gather = jax.jit(lambda v, c, level=level, k=kernel: corr.lookup([v], c / 2**level, RADIUS, kernel=k))
            gathers.append(_best_ms(lambda: gather(pyramid[level], coords).block_until_ready(), repeats))
            otf = jax.jit(lambda a, fp, c, k=kernel: corr.lookup_on_the_fly(a, fp, c, RADIUS, kernel=k))
            head = tuple(fpyr[: level + 1])
            heads.append(_best_ms(lambda: otf(f1, head, coords).block_until_ready(), repeats))
        out[kernel] = {"all_pairs_level_ms": gathers, "on_the_fly_levels_0_to_l_ms": heads}
    return out


def bench_sweep(repeats: int) -> list[dict]:
    """The XLA on-the-fly lookup (smooth and random flow) and its scratch for each tile, chunk and spill."""
    import jax

    from jaxdiff.flow import corr

    f1, f2, coords = map(jax.device_put, _inputs(_sintel()))
    random_coords = jax.device_put(_inputs(_sintel(), random_flow=True)[2])
    fpyr = corr.feature_pyramid(f2, LEVELS)
    rows = []
    for tile, chunk, spill in [(8, 128, 8), (8, 128, 128), (8, 1024, 8), (8, 1024, 32), (8, 1024, 128),
                               (8, 1024, 256), (8, 4096, 128), (16, 1024, 128), (16, 4096, 128)]:
        otf = jax.jit(lambda a, fp, c, t=tile, n=chunk, s=spill: corr.lookup_on_the_fly(
            a, fp, c, RADIUS, tile=t, chunk=n, spill=s, kernel="xla"))
        rows.append({
            "tile": tile, "chunk": chunk, "spill": spill,
            "smooth_ms": _best_ms(lambda: otf(f1, fpyr, coords).block_until_ready(), repeats),
            "random_ms": _best_ms(lambda: otf(f1, fpyr, random_coords).block_until_ready(), repeats),
            "temp_mib": _memory(otf, f1, fpyr, coords)["temp_mib"],
        })
    return rows


def table(record: dict) -> str:
    j, t = record["jaxdiff"], record["torch"]
    rows = [
        f"| Sintel 1/8 (1x46x62x{FLAGS.channels}, r=4, 4 levels) | build ms | lookup ms | memory MiB |",
        "|---|---|---|---|",
        f"| jaxdiff pyramid build | {j['build_ms']:.2f} | | pyramid {j['pyramid_mib']:.1f}, "
        f"build temp {j['build_memory']['temp_mib']:.1f} |",
        f"| jaxdiff feature pooling (on-the-fly) | {j['feature_pyramid_ms']:.2f} | | |",
    ]
    for kernel in _kernels():
        k = j[kernel]
        rows += [
            f"| jaxdiff all-pairs, {kernel} | | {k['lookup_ms']:.2f} | lookup temp {k['lookup_memory']['temp_mib']:.2f} |",
            f"| jaxdiff on-the-fly, {kernel}, smooth flow | | {k['on_the_fly_ms']:.2f} "
            f"| temp {k['on_the_fly_memory']['temp_mib']:.2f} |",
            f"| jaxdiff on-the-fly, {kernel}, random flow | | {k['on_the_fly_random_flow_ms']:.2f} | |",
            f"| gradient of sum(lookup²), {kernel}: all-pairs (in the pyramid) | | {k['lookup_grad_ms']:.2f} | |",
            f"| gradient of sum(lookup²), {kernel}: on-the-fly (in f1, pooled f2) | | {k['on_the_fly_grad_ms']:.2f} | |",
        ]
    if t:
        rows.append(
            f"| RAFT CorrBlock, PyTorch ({t['device']}) | {t['build_ms']:.2f} "
            f"| {t['lookup_ms']:.2f} | pyramid {t['pyramid_mib']:.1f} |"
        )
    for name, r in record.get("large", {}).items():
        shape = "x".join(map(str, r["shape"]))
        for kernel in _kernels():
            rows.append(
                f"| {name} ({shape}) on-the-fly, {kernel} | | {r[kernel]['on_the_fly_ms']:.1f} "
                f"| temp {r[kernel]['on_the_fly_memory']['temp_mib']:.1f} "
                f"(all-pairs volume would be {r['all_pairs_volume_mib']:.0f}) |"
            )
    rows.append("")
    for kernel in _kernels():
        k = j[kernel]
        otf_temp = k["on_the_fly_memory"]["temp_mib"]
        line = (
            f"{kernel}: on-the-fly {k['on_the_fly_ms'] / k['lookup_ms']:.1f}x its all-pairs lookup time, "
            f"scratch {100 * otf_temp / j['pyramid_mib']:.1f}% of the pyramid; RAFT's 12 iterations per frame "
            f"{j['build_ms'] + 12 * k['lookup_ms']:.1f} ms all-pairs (build + lookups), "
            f"{j['feature_pyramid_ms'] + 12 * k['on_the_fly_ms']:.1f} ms on the fly (pooling + lookups)"
        )
        if t:
            line += f"; all-pairs lookup {k['lookup_ms'] / t['lookup_ms']:.2f}x PyTorch's"
        rows.append(line)
    build_rate = j["volume_gmac"] / j["build_ms"]  # GMAC per ms of the level-0 volume, pooling included
    matmul_rate = j["volume_gmac"] / j["matmul_ms"]  # the level-0 volume as one matmul, nothing else
    kernel = _kernels()[0]  # the default one
    per_tap_ms = j["window_gmac"] / max(build_rate, matmul_rate)
    rows.append(
        f"on-the-fly work as one dot product per in-map patch tap: {1e3 * j['window_gmac']:.0f} MMAC; the {kernel} "
        f"kernel's lookup time is {j['window_gmac'] / j[kernel]['on_the_fly_ms'] * 1e3:.0f} GMAC/s of it, the pyramid "
        f"build runs at {1e3 * build_rate:.0f} GMAC/s and the level-0 volume as one matmul at "
        f"{1e3 * matmul_rate:.0f} GMAC/s; at the faster rate those dot products take {per_tap_ms:.2f} ms, "
        f"{per_tap_ms / j[kernel]['lookup_ms']:.1f}x the {kernel} all-pairs lookup"
    )
    if "sweep" in record:
        rows += ["", "| XLA on-the-fly: tile, chunk, spill | smooth flow ms | random flow ms | scratch MiB |",
                 "|---|---|---|---|"]
        rows += [f"| {r['tile']}, {r['chunk']}, {r['spill']} | {r['smooth_ms']:.2f} | {r['random_ms']:.2f} "
                 f"| {r['temp_mib']:.1f} |" for r in record["sweep"]]
    for kernel, lv in record.get("levels", {}).items():
        rows.append(f"{kernel}, on-the-fly over levels 0..l (ms): "
                    + ", ".join(f"{v:.2f}" for v in lv["on_the_fly_levels_0_to_l_ms"]))
        rows.append(f"{kernel}, all-pairs window gather of level l alone (ms): "
                    + ", ".join(f"{v:.2f}" for v in lv["all_pairs_level_ms"]))
    return "\n".join(rows)


def main(_):
    import jax

    record = {"device": str(jax.devices()[0]), "load_average": os.getloadavg()}
    record["jaxdiff"] = bench_jax(FLAGS.repeats)
    record["torch"] = bench_torch(FLAGS.repeats)
    if FLAGS.levels:
        record["levels"] = bench_levels(FLAGS.repeats)
    if FLAGS.sweep:
        record["sweep"] = bench_sweep(FLAGS.repeats)
    if FLAGS.large:
        record["large"] = bench_large(max(1, FLAGS.repeats // 10))
    print(json.dumps(record, indent=2))
    print(table(record))


if __name__ == "__main__":
    define_flags()
    app.run(main)
