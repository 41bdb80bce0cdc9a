r"""VAE (AEVB) on scikit-learn digits: held-out ELBO / IWAE-k, estimator A vs B gradient variance, figures.

    python -m experiments.bench.vae [--steps=4000] [--out=/tmp/vae_bench]

Trains MLP VAEs (latent 16 and 2; with --conv also a conv VAE, latent 16) on the digits
train split (90% fit, 10% validation for early stopping) with a discretised-logistic likelihood over the 17 grey levels
(raw 0..16 -> x / 8 - 1, bins of width 1/8, end bins open), so the bounds are
log-probabilities of the discrete data: nats per image and bits/dim over the 64
pixels (log2 17 = 4.09 bits/dim is the uniform baseline). Prints markdown tables
and writes recon_samples.png and latent2d.png to --out.
"""

from __future__ import annotations

import math
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("steps", 1500, "Training steps per model (batch 128).")
    flags.DEFINE_bool("conv", False, "Also train the conv VAE (about 10x slower per step on CPU).")
    flags.DEFINE_integer("grad_draws", 256, "Gradient draws per variance measurement.")
    flags.DEFINE_string("out", "/tmp/vae_bench", "Output folder for the PNG figures.")
    flags.DEFINE_integer("seed", 0, "Random seed.")


def build(arch: str, latent_dim: int, likelihood):
    from jaxdiff.latent import VAE, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

    if arch == "mlp":
        return VAE(MLPEncoder(latent_dim), MLPDecoder((8, 8, 1), likelihood.num_params))
    return VAE(ConvEncoder(latent_dim), ConvDecoder((8, 8, 1), likelihood.num_params))


def train(vae, likelihood, images, *, steps: int, seed: int, batch: int = 128, warmup: int = 500):
    """Adam on 90% of ``images``; returns the params with the best ELBO on the other 10% (checked every 250 steps)."""
    import jax
    import numpy as np

    from jaxdiff.latent import elbo, kl_warmup, make_vae_loss
    from jaxdiff.train import OptimConfig, create_train_state, make_optimizer, make_train_step

    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(images))
    n_val = len(images) // 10
    fit_x, val_x = images[perm[n_val:]], images[perm[:n_val]]
    opt = make_optimizer(OptimConfig(learning_rate=2e-3, warmup_steps=100, grad_clip=100.0))
    key = jax.random.key(seed)
    state = create_train_state(jax.jit(vae.init)(key, fit_x[:2], key)["params"], opt, key)
    step = jax.jit(make_train_step(make_vae_loss(vae, likelihood), opt, batch_size=batch, ema_halflife_nimg=2000))

    @jax.jit
    def val_elbo(params):
        m = vae.bind({"params": params})
        return elbo(m.encode, m.decode, likelihood, val_x, key, num_samples=10)["elbo"].mean()

    curve, best, t0 = [], (-np.inf, 0, state.params), time.perf_counter()
    for i in range(steps):
        idx = rng.choice(len(fit_x), batch, replace=False)
        state, metrics = step(state, {"image": fit_x[idx], "beta": kl_warmup(i, warmup)})
        if (i + 1) % 250 == 0:
            val = float(val_elbo(state.params))
            curve.append((i + 1, float(metrics["elbo"]), val))
            if i + 1 >= warmup and val > best[0]:
                best = (val, i + 1, state.params)
    return best[2], best[1], curve, time.perf_counter() - t0


def evaluate(vae, likelihood, params, images, seed: int) -> dict:
    import jax
    import numpy as np

    from jaxdiff.latent import bits_per_dim, elbo, iwae_bound

    m = vae.bind({"params": params})
    key = jax.random.key(seed + 1)
    elbo_fn = jax.jit(lambda x, k: elbo(m.encode, m.decode, likelihood, x, k, num_samples=100)["elbo"])
    res = {"ELBO": float(elbo_fn(images, key).mean())}
    for k in (1, 10, 100):
        f = jax.jit(lambda x, key, k=k: iwae_bound(m.encode, m.decode, likelihood, x, key, k))
        res[f"IWAE-{k}"] = float(np.concatenate([f(images[i:i + 64], jax.random.fold_in(key, i))
                                                 for i in range(0, len(images), 64)]).mean())
    dims = math.prod(images.shape[1:])
    return {name: (v, float(bits_per_dim(-v, dims))) for name, v in res.items()}


def grad_variance(vae, likelihood, params, images, *, draws: int, seed: int, batch: int = 64) -> dict:
    """Trace of the gradient covariance of -ELBO (L = 1) over draws, for estimators A and B.

    "noise only": one fixed minibatch, fresh eps each draw; "minibatch + noise": a fresh minibatch too;
    "encoder": noise only, encoder parameters only (the KL term's gradient reaches only the encoder).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff.latent import make_vae_loss

    rng = np.random.default_rng(seed)
    fixed = images[rng.choice(len(images), batch, replace=False)]
    batches = np.stack([images[rng.choice(len(images), batch, replace=False)] for _ in range(draws)])
    keys = jax.random.split(jax.random.key(seed + 2), draws)
    out = {}
    for est in ("A", "B"):
        loss_fn = make_vae_loss(vae, likelihood, estimator=est)
        n_enc = sum(a.size for a in jax.tree.leaves(params["encoder"]))

        def flat_grad(x, k):
            g = jax.grad(lambda p: loss_fn(p, {"image": x}, k)[0])(params)
            return jnp.concatenate([a.ravel() for a in jax.tree.leaves((g["encoder"], g["decoder"]))])

        g_fixed = jax.jit(jax.vmap(flat_grad, in_axes=(None, 0)))(fixed, keys)
        g_mb = jax.jit(jax.vmap(flat_grad))(batches, keys)
        out[est] = {"noise only": float(g_fixed.var(0).sum()), "encoder": float(g_fixed[:, :n_enc].var(0).sum()),
                    "minibatch + noise": float(g_mb.var(0).sum()), "|mean grad|^2": float((g_mb.mean(0) ** 2).sum())}
    return out


def figures(out_dir, models, test_images, test_labels, seed: int) -> None:
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxdiff.latent import reparameterize

    os.makedirs(out_dir, exist_ok=True)
    vae, lik, params = models["mlp z=16"]
    m = vae.bind({"params": params})
    key = jax.random.key(seed + 3)
    x = test_images[:16]
    mean, log_var = m.encode(x)
    recon = lik.mean(m.decode(reparameterize(key, mean, log_var)))
    prior_out = m.decode(jax.random.normal(key, (16, mean.shape[-1])))
    rows = [("held-out", x), ("reconstruction", recon), ("sample (mean)", lik.mean(prior_out)),
            ("sample (discrete)", lik.sample(key, prior_out))]
    fig, axes = plt.subplots(len(rows), 16, figsize=(16, len(rows) * 1.15))
    for r, (title, imgs) in enumerate(rows):
        for c in range(16):
            axes[r, c].imshow(jnp.asarray(imgs[c, ..., 0]), cmap="gray_r", vmin=-1, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.savefig(os.path.join(out_dir, "recon_samples.png"), dpi=80, bbox_inches="tight")
    plt.close(fig)

    vae2, _, params2 = models["mlp z=2"]
    mean2, _ = vae2.bind({"params": params2}).encode(test_images)
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(mean2[:, 0], mean2[:, 1], c=test_labels, cmap="tab10", s=8)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    ax.set(xlabel="z1 (posterior mean)", ylabel="z2", title="2-D VAE latent space, held-out digits")
    fig.savefig(os.path.join(out_dir, "latent2d.png"), dpi=80, bbox_inches="tight")
    plt.close(fig)


def main(_):
    import jax
    import numpy as np

    from jaxdiff.data.digits import load_digits
    from jaxdiff.latent import DiscretizedLogistic

    train_x, _ = load_digits("train")
    test_x, test_y = load_digits("test")
    lik = DiscretizedLogistic(17)
    print(f"# VAE on digits: {len(train_x)} train / {len(test_x)} held-out images, 64 dims, "
          f"discretised logistic over 17 levels, {FLAGS.steps} steps of batch 128, estimator B, L=1, "
          f"KL warm-up 500 steps; jax {jax.__version__} on {jax.devices()[0].platform}\n")
    models, rows = {}, []
    specs = [("mlp z=16", "mlp", 16)] + [("conv z=16", "conv", 16)] * FLAGS.conv + [("mlp z=2", "mlp", 2)]
    for name, arch, zdim in specs:
        vae = build(arch, zdim, lik)
        params, best_step, curve, secs = train(vae, lik, train_x, steps=FLAGS.steps, seed=FLAGS.seed)
        models[name] = (vae, lik, params)
        if name == "mlp z=16":
            elbo_curve = curve
        ev = evaluate(vae, lik, params, test_x, FLAGS.seed)
        rows.append((name, secs, best_step, ev))
    names = list(rows[0][3])
    print("| model | train s | best step | " + " | ".join(f"{n} nats (bits/dim)" for n in names) + " |")
    print("|---" * (3 + len(names)) + "|")
    for name, secs, tr, ev in rows:
        cells = " | ".join(f"{v:.2f} ({b:.3f})" for v, b in ev.values())
        print(f"| {name} | {secs:.1f} | {tr} | {cells} |")

    vae, _, params = models["mlp z=16"]
    init = jax.jit(vae.init)(jax.random.key(FLAGS.seed), train_x[:2], jax.random.key(0))["params"]
    print(f"\n## Gradient variance of -ELBO, estimator A vs B (mlp z=16, batch 64, L=1, {FLAGS.grad_draws} draws)\n")
    cols = ("noise only", "encoder", "minibatch + noise")
    print("| parameters | estimator | " + " | ".join(f"tr Cov, {c}" for c in cols) + " | |E grad|^2 |")
    print("|---" * 6 + "|")
    for where, p in (("init", init), ("trained", params)):
        gv = grad_variance(vae, lik, p, train_x, draws=FLAGS.grad_draws, seed=FLAGS.seed)
        for est in ("A", "B"):
            v = gv[est]
            print(f"| {where} | {est} | " + " | ".join(f"{v[c]:.4g}" for c in cols) + f" | {v['|mean grad|^2']:.4g} |")
        print(f"| {where} | A / B | " + " | ".join(f"{gv['A'][c] / gv['B'][c]:.2f}" for c in cols) + " | |")
    figures(FLAGS.out, models, np.asarray(test_x), np.asarray(test_y), FLAGS.seed)
    every = max(1, len(elbo_curve) // 6)
    print("\nELBO curve (mlp z=16), step: train minibatch / validation nats -- "
          + ", ".join(f"{s}: {t:.1f} / {v:.1f}" for s, t, v in elbo_curve[::every]))
    print(f"Figures in {FLAGS.out}: recon_samples.png, latent2d.png")


if __name__ == "__main__":
    define_flags()
    app.run(main)
