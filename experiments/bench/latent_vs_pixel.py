r"""Pixel-space vs latent diffusion on digits at equal training time.

    python -m experiments.bench.latent_vs_pixel [--seconds=30] [--seeds=3] [--out=/tmp/latent_vs_pixel]

Pixel: an EDM-preconditioned residual MLP denoiser on the 64 pixels. Latent: the
MLP VAE of ``experiments.bench.vae`` (discretised logistic, z = 16) is trained
first, its posterior means on the train split are standardised per dimension and
scaled to sigma_data = 0.5, and the same MLP denoiser is trained on them for the
rest of the budget; samples are decoded with the likelihood mean. Both are
sampled with Heun (18 steps, Karras grid, 35 NFE). Reports digits FD at N = 360
against its floor (real train digits), plain VAE prior samples, training steps/s
and sampling images/s, as mean ± std over --seeds seeds.
"""

from __future__ import annotations

import os
import time

from absl import app, flags

from experiments.bench.vae import build, train

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_float("seconds", 30.0, "Training budget per method and seed (latent: autoencoder + diffusion).")
    flags.DEFINE_integer("seeds", 3, "Number of seeds (--seed, --seed + 1, ...); tables give mean ± std.")
    flags.DEFINE_integer("vae_steps", 750, "Autoencoder steps for the latent model (early-stopped VAE).")
    flags.DEFINE_integer("num_samples", 360, "Samples per method for the FD.")
    flags.DEFINE_string("out", "/tmp/latent_vs_pixel", "Output folder for the sample figure.")
    flags.DEFINE_integer("seed", 0, "First random seed.")


def train_diffusion(data, *, seconds: float, seed: int, batch: int = 128, module=None, labels=None,
                    label_dropout: float = 0.0):
    """EDM diffusion on data (N, ...) for ``seconds``; returns (denoiser, steps, steps/s).

    ``module`` is a ``jaxdiff.nn``-style network (default: residual MLP, width 256, depth 4, for flat
    data); with ``labels`` (N,) it is trained class-conditionally, dropping labels to the null label
    with probability ``label_dropout`` (classifier-free guidance).
    """
    import jax
    import numpy as np

    from jaxdiff import losses, nn, precond
    from jaxdiff.train import OptimConfig, create_train_state, make_optimizer, make_train_step

    module = module or nn.MLP(width=256, depth=4)
    net = nn.as_net(module)
    pre = precond.EDMPrecond(sigma_data=0.5)
    num_classes = module.num_classes if labels is not None else 0
    loss_fn = losses.denoising_loss(net, pre, losses.EDMNoise(sigma_data=0.5), label_dropout=label_dropout,
                                    num_classes=num_classes)
    opt = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=100))
    key = jax.random.key(seed)
    params = jax.jit(lambda k: module.init(k, data[:1], jax.numpy.ones((1,)))["params"])(key)
    state = create_train_state(params, opt, key)
    step = jax.jit(make_train_step(loss_fn, opt, batch_size=batch, ema_halflife_nimg=5000))
    rng = np.random.default_rng(seed)

    def minibatch(idx):
        return {"image": data[idx]} if labels is None else {"image": data[idx], "label": labels[idx]}

    state, _ = step(state, minibatch(np.arange(batch)))  # compile outside the budget
    jax.block_until_ready(state)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            state, _ = step(state, minibatch(rng.choice(len(data), batch, replace=False)))
        jax.block_until_ready(state)
        n += 50
    secs = time.perf_counter() - t0
    return precond.denoiser(net, state.ema_params, pre), n, n / secs


def sample(denoiser, shape, key, decode=None):
    """Heun, 18 steps; returns (samples, images/s measured on a second, compiled call)."""
    import jax

    from jaxdiff import samplers, schedules

    sigmas = schedules.karras(18, 0.002, 80.0)

    @jax.jit
    def run(key):
        x = samplers.heun(denoiser, sigmas[0] * jax.random.normal(key, shape), sigmas)
        return decode(x) if decode is not None else x

    run(key).block_until_ready()
    t0 = time.perf_counter()
    out = run(jax.random.fold_in(key, 1)).block_until_ready()
    return out, shape[0] / (time.perf_counter() - t0)


def run_seed(train_x, seed: int) -> tuple[dict, dict]:
    """Pixel, latent and VAE-prior rows for one seed: name -> (AE train s, steps, steps/s, img/s, FD); and samples."""
    import jax
    import numpy as np

    from jaxdiff.latent import DiscretizedLogistic
    from jaxdiff.metrics import digits_fd

    n, key = FLAGS.num_samples, jax.random.key(seed + 7)
    rows, imgs = {}, {}
    den, steps, sps = train_diffusion(train_x.reshape(-1, 64), seconds=FLAGS.seconds, seed=seed)
    pixel, ips = sample(den, (n, 64), key)
    imgs["pixel"] = np.clip(np.asarray(pixel).reshape(n, 8, 8, 1), -1, 1)
    rows["pixel MLP (64-d)"] = (None, steps, sps, ips, digits_fd(imgs["pixel"]))

    lik = DiscretizedLogistic(17)
    vae = build("mlp", 16, lik)
    t0 = time.perf_counter()
    params, _, _, _ = train(vae, lik, train_x, steps=FLAGS.vae_steps, seed=seed)
    ae_secs = time.perf_counter() - t0
    m = vae.bind({"params": params})
    mu = np.asarray(jax.jit(lambda x: m.encode(x)[0])(train_x))
    loc, scale = mu.mean(0), mu.std(0) / 0.5
    decode = jax.jit(lambda z: lik.mean(m.decode(z * scale + loc)))
    den, steps, sps = train_diffusion((mu - loc) / scale, seconds=max(FLAGS.seconds - ae_secs, 1.0), seed=seed)
    latent, ips = sample(den, (n, 16), key, decode)
    imgs["latent"] = np.asarray(latent)
    rows["latent MLP (VAE z=16)"] = (ae_secs, steps, sps, ips, digits_fd(imgs["latent"]))
    imgs["VAE prior"] = np.asarray(lik.mean(m.decode(jax.random.normal(key, (n, 16)))))
    rows["VAE prior samples (no diffusion)"] = (None, None, None, None, digits_fd(imgs["VAE prior"]))
    return rows, imgs


def main(_):
    import jax
    import numpy as np

    from jaxdiff.data.digits import load_digits
    from jaxdiff.metrics import digits_fd_reference

    train_x = np.asarray(load_digits("train")[0])
    seeds = [FLAGS.seed + i for i in range(FLAGS.seeds)]
    runs = [run_seed(train_x, s) for s in seeds]
    ref = digits_fd_reference(FLAGS.num_samples, seed=FLAGS.seed)

    def stat(vals, fmt):
        vals = [v for v in vals if v is not None]
        return "-" if not vals else f"{np.mean(vals):{fmt}} ± {np.std(vals):{fmt}}"

    print(f"# Pixel vs latent diffusion on digits, equal training budget {FLAGS.seconds:.0f} s, Heun 18 steps, "
          f"FD at N={FLAGS.num_samples}, mean ± std over seeds {seeds}; jax {jax.__version__} on "
          f"{jax.devices()[0].platform}\n")
    print("| model | AE train s | diffusion steps | train steps/s | sample img/s | digits FD |")
    print("|---|---|---|---|---|---|")
    for name in runs[0][0]:
        cols = list(zip(*(rows[name] for rows, _ in runs)))
        print(f"| {name} | " + " | ".join(stat(col, fmt) for col, fmt in zip(cols, (".0f",) * 4 + (".2f",))) + " |")
    print(f"| floor (real train digits) | | | | | {ref['floor']:.2f} |")
    print(f"| pixel-marginal baseline | | | | | {ref['pixel_baseline']:.2f} |")
    print("\nper seed FD: " + "; ".join(f"{name}: " + ", ".join(f"{rows[name][4]:.2f}" for rows, _ in runs)
                                       for name in runs[0][0]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(FLAGS.out, exist_ok=True)
    fig, axes = plt.subplots(3, 16, figsize=(16, 3.4))
    for r, (title, imgs) in enumerate(runs[0][1].items()):
        for c in range(16):
            axes[r, c].imshow(imgs[c, ..., 0], cmap="gray_r", vmin=-1, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.savefig(os.path.join(FLAGS.out, "samples.png"), dpi=80, bbox_inches="tight")
    print(f"\nSamples (seed {seeds[0]}): {os.path.join(FLAGS.out, 'samples.png')}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
