"""Sample grids and quality metrics for the main job's outputs."""

from __future__ import annotations

import os

import jax
import numpy as np


def _grid(images: np.ndarray, cols: int) -> np.ndarray:
    """(N, H, W, C) in [-1, 1] -> one (rows*(H+1), cols*(W+1), C) image in [0, 1] with 1-px gaps."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
    for i, img in enumerate(np.clip((images + 1) / 2, 0, 1)):
        r, q = divmod(i, cols)
        out[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = img
    return out


def save_samples(workdir: str, samples: np.ndarray, data, *, count: int = 100) -> str:
    """Write ``samples.npz`` (all samples) and ``samples.png`` (samples beside real data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    np.savez_compressed(os.path.join(workdir, "samples.npz"), samples=samples)
    path = os.path.join(workdir, "samples.png")
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    if data.kind == "image":
        count = min(count, len(samples), len(data.reference))
        cols = int(np.ceil(np.sqrt(count)))
        for ax, imgs, title in ((axes[0], samples[:count], "samples"), (axes[1], data.reference[:count], "real (held out)")):
            g = _grid(np.asarray(imgs), cols)
            ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title)
            ax.axis("off")
    else:
        lim = np.abs(data.reference).max() * 1.2
        for ax, pts, title in ((axes[0], samples, "samples"), (axes[1], data.reference[:len(samples)], "real (held out)")):
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluate(config, samples: np.ndarray, data) -> dict:
    """Quality of ``samples`` next to the references that make the number readable.

    digits: Fréchet distance in classifier features against the held-out split,
    with its floor (real train digits at the same N) and baselines.
    points: sliced W2 and MMD against held-out points, with the floor (a second
    real sample of the same size).
    """
    n = len(samples)
    out = {"num_samples": n, "nonfinite_samples": int(np.sum(~np.isfinite(samples).reshape(n, -1).all(1)))}
    if config.data.source == "digits":
        from jaxdiff import metrics

        samples = np.clip(samples, -1.0, 1.0)
        ref = metrics.digits_fd_reference(n, seed=config.seed)
        out.update(
            fd=metrics.digits_fd(samples),
            fd_floor=ref["floor"],
            fd_pixel_baseline=ref["pixel_baseline"],
            fd_noise_baseline=ref["noise_baseline"],
            label_entropy=metrics.label_entropy(samples),
        )
        out["fd_over_floor"] = out["fd"] / out["fd_floor"]
    elif data.kind == "points":
        from jaxdiff import metrics

        key = jax.random.key(config.seed)
        ref = data.reference[:n]
        floor = data.train.get(np.arange(min(n, len(data.train))))["image"]
        out.update(
            sliced_w2=float(metrics.sliced_wasserstein(samples, ref, key)),
            sliced_w2_floor=float(metrics.sliced_wasserstein(floor, ref, key)),
            mmd=float(metrics.mmd(samples, ref)),
            mmd_floor=float(metrics.mmd(floor, ref)),
        )
    return out
