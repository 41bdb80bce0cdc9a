r"""Class-conditional latent diffusion with cross-attention and classifier-free guidance on digits.

    python -m experiments.bench.latent_cond [--ae=kl] [--seconds=120] [--out=/tmp/latent_cond]

Trains the convolutional KL autoencoder (f = 2: 8x8x1 digits -> 4x4x2 latents, KL weight 1e-3)
and the VQ-regularised one (same f, 64 codes, beta 0.25) on the digits train split and
reports their held-out reconstruction error, the digits FD of reconstructed test digits (the
best FD a latent model of that autoencoder can reach) and codebook usage. The --ae
autoencoder's latents (posterior means / pre-quantisation z_e), standardised per channel to
sigma_data = 0.5, train a ``CrossAttentionDiT`` (width 32, depth 2, 16 tokens, cross-attention
to tau(y), label dropout 0.1) with the EDM loss for --seconds. Samples (--num_samples, equally
many per class, Heun 18 steps) at CFG scales 0 (unconditional), 1, 2, 3 are decoded and scored
by the digits FD and by the accuracy of the digits classifier against the requested labels.
"""

from __future__ import annotations

import os
import time

from absl import app, flags

from experiments.bench.latent_vs_pixel import train_diffusion

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("ae", "kl", ["kl", "vq"], "Autoencoder whose latents the diffusion model learns.")
    flags.DEFINE_integer("ae_steps", 1000, "Training steps per autoencoder (batch 128).")
    flags.DEFINE_integer("latent_channels", 2, "Latent channels c of the 4x4xc latent grid.")
    flags.DEFINE_list("cfg_scales", ["0", "1", "2", "3"], "Classifier-free guidance scales to sample at.")
    flags.DEFINE_float("seconds", 120.0, "Training budget of the latent diffusion model.")
    flags.DEFINE_integer("num_samples", 360, "Samples per CFG scale, equally many per class.")
    flags.DEFINE_string("out", "/tmp/latent_cond", "Output folder for the sample figure.")
    flags.DEFINE_integer("seed", 0, "Random seed.")

NUM_CLASSES = 10


def train_autoencoder(ae, loss_fn, images, *, steps: int, seed: int, batch: int = 128):
    """Adam (lr 1e-3) for ``steps`` minibatches of ``images``; returns (params, seconds)."""
    import jax
    import numpy as np

    from jaxdiff.latent import KLAutoencoder
    from jaxdiff.train import OptimConfig, create_train_state, make_optimizer, make_train_step

    opt = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=100))
    key = jax.random.key(seed)
    init_args = (images[:2], key) if isinstance(ae, KLAutoencoder) else (images[:2],)
    state = create_train_state(jax.jit(ae.init)(key, *init_args)["params"], opt, key)
    step = jax.jit(make_train_step(loss_fn, opt, batch_size=batch, ema_halflife_nimg=5000))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, _ = step(state, {"image": images[rng.choice(len(images), batch, replace=False)]})
    jax.block_until_ready(state)
    return state.ema_params, time.perf_counter() - t0


def main(_):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff.data.digits import load_digits
    from jaxdiff.latent import (CrossAttentionDiT, KLAutoencoder, VQAutoencoder, make_autoencoder_loss,
                                make_vq_autoencoder_loss, sample_cfg)
    from jaxdiff.metrics import default_classifier, digits_fd, digits_fd_reference

    train_x, train_y = (np.asarray(a) for a in load_digits("train"))
    test_x = np.asarray(load_digits("test")[0])
    c, n = FLAGS.latent_channels, FLAGS.num_samples
    if n % NUM_CLASSES:
        raise ValueError(f"num_samples must be a multiple of {NUM_CLASSES}, got {n}")

    kl_ae = KLAutoencoder(latent_channels=c, num_down=1, channels=32)
    vq_ae = VQAutoencoder(latent_channels=c, num_down=1, channels=32, num_codes=64, beta=0.25)
    aes = {}
    for name, ae, loss_fn in (("kl", kl_ae, make_autoencoder_loss(kl_ae, kl_weight=1e-3)),
                              ("vq", vq_ae, make_vq_autoencoder_loss(vq_ae))):
        params, secs = train_autoencoder(ae, loss_fn, train_x, steps=FLAGS.ae_steps, seed=FLAGS.seed)
        m = ae.bind({"params": params})
        encode = jax.jit(lambda x, m=m: m.encode(x)[0] if isinstance(m, KLAutoencoder) else m.encode(x))
        decode = jax.jit(lambda z, m=m: jnp.clip(m.decode(z), -1.0, 1.0))
        recon = np.asarray(decode(encode(test_x)))
        row = dict(secs=secs, mse=float(((recon - test_x) ** 2).mean()), fd=digits_fd(recon))
        if name == "vq":
            _, t = jax.jit(lambda x, m=m: m.quantize(m.encode(x)))(train_x)
            row.update(usage=float(t["usage"]), perplexity=float(t["perplexity"]))
        aes[name] = (row, encode, decode)

    _, encode, decode = aes[FLAGS.ae]
    z = np.asarray(encode(train_x))
    loc, scale = z.mean((0, 1, 2)), z.std((0, 1, 2)) / 0.5
    module = CrossAttentionDiT(num_classes=NUM_CLASSES, hidden_size=32, depth=2, num_heads=4, context_dim=32)
    den, steps, sps = train_diffusion((z - loc) / scale, seconds=FLAGS.seconds, seed=FLAGS.seed, module=module,
                                      labels=train_y.astype(np.int32), label_dropout=0.1)
    labels = jnp.repeat(jnp.arange(NUM_CLASSES), n // NUM_CLASSES)
    clf, key = default_classifier(), jax.random.key(FLAGS.seed + 7)
    rows, grids = [], {}
    for s in (float(v) for v in FLAGS.cfg_scales):
        run = jax.jit(lambda k, s=s: decode(sample_cfg(den, labels, z.shape[1:], k, cfg_scale=s,
                                                       null_label=NUM_CLASSES) * scale + loc))
        run(key).block_until_ready()
        t0 = time.perf_counter()
        imgs = np.asarray(run(key).block_until_ready())
        ips = n / (time.perf_counter() - t0)
        acc = float((clf.logits(imgs).argmax(-1) == np.asarray(labels)).mean())
        rows.append((s, digits_fd(imgs), acc, ips))
        grids[s] = imgs
    ref = digits_fd_reference(n, seed=FLAGS.seed)
    real_acc = float((clf.logits(test_x).argmax(-1) == np.asarray(load_digits("test")[1])).mean())

    print(f"# Latent diffusion with cross-attention on digits; jax {jax.__version__} on "
          f"{jax.devices()[0].platform}\n")
    print(f"## Autoencoders (f = 2, latent 4x4x{c}, {FLAGS.ae_steps} steps), held-out test digits\n")
    print("| autoencoder | train s | recon MSE (per pixel) | digits FD of reconstructions | codebook usage "
          "| perplexity |")
    print("|---|---|---|---|---|---|")
    for name, (row, _, _) in aes.items():
        usage = f"{row['usage']:.2f} | {row['perplexity']:.1f}" if name == "vq" else "- | -"
        print(f"| {name.upper()} | {row['secs']:.0f} | {row['mse']:.4f} | {row['fd']:.2f} | {usage} |")
    print(f"\n## Class-conditional {FLAGS.ae.upper()}-latent diffusion, CrossAttentionDiT, {steps} steps in "
          f"{FLAGS.seconds:.0f} s ({sps:.0f} steps/s), Heun 18 steps, N = {n} ({n // NUM_CLASSES} per class)\n")
    print("| CFG scale | digits FD | class accuracy | sample img/s |")
    print("|---|---|---|---|")
    for s, fd, acc, ips in rows:
        print(f"| {s:g}{' (uncond.)' if s == 0 else ''} | {fd:.2f} | {acc:.3f} | {ips:.0f} |")
    print(f"| floor (real train digits) | {ref['floor']:.2f} | {real_acc:.3f} (test digits) | |")
    print(f"| pixel-marginal baseline | {ref['pixel_baseline']:.2f} | | |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(FLAGS.out, exist_ok=True)
    per = n // NUM_CLASSES
    fig, axes = plt.subplots(len(grids), 1, figsize=(6, 2.1 * len(grids)))
    for ax, (s, imgs) in zip(np.atleast_1d(axes), grids.items()):
        cols = imgs.reshape(NUM_CLASSES, per, 8, 8)[:, :3]  # 3 samples per class
        ax.imshow(cols.transpose(1, 2, 0, 3).reshape(24, 80), cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(f"CFG scale {s:g} (columns: digits 0-9)", fontsize=8, loc="left")
        ax.axis("off")
    fig.savefig(os.path.join(FLAGS.out, "cfg_samples.png"), dpi=80, bbox_inches="tight")
    print(f"\nSamples: {os.path.join(FLAGS.out, 'cfg_samples.png')}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
