"""VAE: Gaussian KL, estimators A and B, IWAE, likelihoods, the PPCA closed form, bad input."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.latent import (
    VAE, Bernoulli, ConvDecoder, ConvEncoder, DiscretizedLogistic, Gaussian, MLPDecoder, MLPEncoder, bits_per_dim,
    elbo, gaussian_kl, gaussian_log_prob, iwae_bound, kl_warmup, make_vae_loss, reparameterize,
)
from jaxdiff.train import create_train_state, make_train_step

KEY = jax.random.key(0)


def _toy_vae(likelihood, latent_dim=3, event=(4, 4, 1), x=None):
    vae = VAE(MLPEncoder(latent_dim, (32,)), MLPDecoder(event, likelihood.num_params, (32,)))
    x = jnp.zeros((2,) + event) if x is None else x
    params = jax.jit(vae.init)(KEY, x, KEY)["params"]
    return vae, params


def _data(n=8, event=(4, 4, 1)):
    levels = jax.random.randint(jax.random.key(1), (n,) + event, 0, 17)
    return levels / 8.0 - 1.0


def test_gaussian_kl_matches_monte_carlo():
    mean = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]])
    log_var = jnp.array([[-1.0, 0.5, 0.0], [1.2, -2.0, 0.3]])
    z = jax.vmap(lambda k: reparameterize(k, mean, log_var))(jax.random.split(KEY, 200_000))
    log_ratio = gaussian_log_prob(z, mean, log_var) - gaussian_log_prob(z, 0.0, 0.0)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    np.testing.assert_array_less(jnp.abs(mc - gaussian_kl(mean, log_var)), 5 * se + 1e-4)


@pytest.mark.parametrize("likelihood", [Gaussian(0.1), DiscretizedLogistic()], ids=["gaussian", "dlogistic"])
def test_estimators_a_and_b_have_the_same_expectation(likelihood):
    vae, params = _toy_vae(likelihood)
    m = vae.bind({"params": params})
    x = _data(4)

    def draws(estimator):
        f = lambda k: elbo(m.encode, m.decode, likelihood, x, k, estimator=estimator)["elbo"]
        return jax.jit(jax.vmap(f))(jax.random.split(KEY, 5000))  # (K, B)

    a, b = draws("A"), draws("B")
    se = jnp.sqrt(a.var(0) / a.shape[0] + b.var(0) / b.shape[0])
    np.testing.assert_array_less(jnp.abs(a.mean(0) - b.mean(0)), 5 * se)


def test_iwae_is_monotone_in_k_and_above_the_elbo():
    likelihood = Gaussian(0.05)
    vae, params = _toy_vae(likelihood)
    m = vae.bind({"params": params})
    x = _data(16)
    keys = jax.random.split(jax.random.key(3), 64)

    def mean_bound(k):
        f = jax.jit(jax.vmap(lambda key: iwae_bound(m.encode, m.decode, likelihood, x, key, k)))
        return float(f(keys).mean())

    bounds = [mean_bound(k) for k in (1, 4, 16, 64)]
    elbo_b = float(elbo(m.encode, m.decode, likelihood, x, KEY, num_samples=4096)["elbo"].mean())
    assert all(lo < hi for lo, hi in zip(bounds, bounds[1:])), bounds
    assert abs(bounds[0] - elbo_b) < 0.05 * abs(elbo_b)  # IWAE-1 is estimator A
    assert bounds[-1] > elbo_b


def test_discretized_logistic_sums_to_one_over_levels():
    lik = DiscretizedLogistic(17)
    levels = jnp.linspace(-1.0, 1.0, 17)
    out = jnp.stack([jnp.array([-1.3, 0.0, 0.41, 0.95]), jnp.array([-3.0, 0.0, -1.0, -6.0])], -1)  # (4, 2)
    lp = jax.vmap(lambda lv: lik.log_prob(jnp.full((4, 1), lv), out[:, None, :]))(levels)  # (17, 4)
    np.testing.assert_allclose(jnp.exp(lp).sum(0), 1.0, atol=1e-4)
    assert bool(jnp.isfinite(lp).all())
    assert float(lik.sample(KEY, out[:, None, :]).max()) <= 1.0


def test_gaussian_and_bernoulli_log_probs():
    x = jnp.array([[0.2, -0.5]])
    out = jnp.array([[[0.0, math.log(0.5)], [1.0, math.log(2.0)]]])
    expect = sum(-0.5 * math.log(2 * math.pi * v) - 0.5 * (xi - mu) ** 2 / v
                 for xi, mu, v in [(0.2, 0.0, 0.5), (-0.5, 1.0, 2.0)])
    np.testing.assert_allclose(Gaussian().log_prob(x, out), [expect], rtol=1e-5)
    np.testing.assert_allclose(Gaussian(0.5).log_prob(x, out[..., :1])[0], -0.5 * math.log(math.pi) * 2
                               - (0.2**2 + 1.5**2), rtol=1e-5)
    np.testing.assert_allclose(Bernoulli().log_prob(jnp.array([[1.0, -1.0]]), jnp.zeros((1, 2, 1))),
                               [2 * math.log(0.5)], rtol=1e-6)
    assert float(bits_per_dim(jnp.asarray(64 * math.log(2.0)), 64)) == pytest.approx(1.0)


def test_conv_vae_shapes():
    lik = DiscretizedLogistic()
    vae = VAE(ConvEncoder(2, (4, 8)), ConvDecoder((8, 8, 1), lik.num_params, (8, 4)))
    x = _data(3, (8, 8, 1))
    variables = jax.eval_shape(vae.init, KEY, x, KEY)
    mean = jax.eval_shape(lambda v: vae.apply(v, x, method=VAE.encode)[0], variables)
    out = jax.eval_shape(lambda v: vae.apply(v, jnp.zeros((5, 2)), method=VAE.decode), variables)
    assert mean.shape == (3, 2) and out.shape == (5, 8, 8, 1, 2)


def test_loss_with_warmup_and_free_bits_trains():
    lik = DiscretizedLogistic()
    vae, params = _toy_vae(lik)
    x = _data(8)
    loss_fn = make_vae_loss(vae, lik, free_bits=10.0, num_samples=2)
    loss, terms = jax.jit(loss_fn)(params, {"image": x, "beta": kl_warmup(5, 10)}, KEY)
    np.testing.assert_allclose(loss, -terms["rec"] + 0.5 * 3 * 10.0, rtol=1e-5)  # KL floored at 10 nats/dim
    opt = optax.adam(1e-2)
    step = jax.jit(make_train_step(make_vae_loss(vae, lik), opt, batch_size=8, ema_halflife_nimg=100))
    state = create_train_state(params, opt, KEY)
    losses = []
    for i in range(11):
        state, metrics = step(state, {"image": x, "beta": kl_warmup(i, 10)})
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] and float(metrics["beta"]) == 1.0


def test_linear_vae_recovers_ppca(x64):
    """Tipping & Bishop: the linear-Gaussian VAE's W W^T + s2 I equals the PPCA MLE (Lucas et al. 2019)."""
    rng = np.random.default_rng(0)
    n, d, q = 1000, 5, 2
    w_true = rng.normal(size=(d, q)) * np.array([2.0, 1.0])
    data = rng.normal(size=(n, q)) @ w_true.T + 0.5 * rng.normal(size=(n, d)) + 1.0
    cov = np.cov(data.T, bias=True)
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    s2_mle = evals[q:].mean()
    c_mle = evecs[:, :q] @ np.diag(evals[:q] - s2_mle) @ evecs[:, :q].T + s2_mle * np.eye(d)

    x = jnp.asarray(data)
    params = dict(a=jnp.zeros((d, q)), b=jnp.zeros(q), lv=jnp.zeros(q),
                  w=jnp.asarray(rng.normal(size=(q, d)) * 0.1), mu=jnp.zeros(d), ls2=jnp.zeros(()))
    lik = Gaussian()

    def loss(p, key):
        encode = lambda x: (x @ p["a"] + p["b"], jnp.broadcast_to(p["lv"], (x.shape[0], q)))
        decode = lambda z: jnp.stack([z @ p["w"] + p["mu"], jnp.broadcast_to(p["ls2"], z.shape[:-1] + (d,))], -1)
        return -elbo(encode, decode, lik, x, key, num_samples=4)["elbo"].mean()

    steps = 3000
    opt = optax.adam(optax.cosine_decay_schedule(0.03, steps, alpha=0.01))

    def body(carry, key):
        p, s = carry
        g = jax.grad(loss)(p, key)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), jax.random.split(KEY, steps)))(params)
    w, s2 = np.asarray(params["w"]).T, float(jnp.exp(params["ls2"]))
    c_vae = w @ w.T + s2 * np.eye(d)
    assert np.linalg.norm(c_vae - c_mle) / np.linalg.norm(c_mle) < 0.03
    assert s2 == pytest.approx(s2_mle, rel=0.05)
    # Column space of W = the top-q principal subspace: cosines of the principal angles ~ 1.
    cosines = np.linalg.svd(np.linalg.qr(w)[0].T @ evecs[:, :q], compute_uv=False)
    assert cosines.min() > 0.995
    np.testing.assert_allclose(params["mu"], data.mean(0), atol=0.05)


def test_bad_input():
    with pytest.raises(ValueError, match="variance"):
        Gaussian(variance=0.0)
    with pytest.raises(ValueError, match="variance"):
        Gaussian(variance=-1.0)
    with pytest.raises(ValueError, match="log_var"):
        reparameterize(KEY, jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="log_var"):
        gaussian_kl(jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match="num_levels"):
        DiscretizedLogistic(1)
    with pytest.raises(ValueError, match="out"):
        Gaussian().log_prob(jnp.zeros((2, 3)), jnp.zeros((2, 3, 1)))
    vae, params = _toy_vae(Gaussian())
    m = vae.bind({"params": params})
    x = _data(2)
    with pytest.raises(ValueError, match="estimator"):
        elbo(m.encode, m.decode, Gaussian(), x, KEY, estimator="C")
    with pytest.raises(ValueError, match="num_samples"):
        elbo(m.encode, m.decode, Gaussian(), x, KEY, num_samples=0)
    with pytest.raises(ValueError, match="x must"):
        elbo(m.encode, m.decode, Gaussian(), jnp.zeros(3), KEY)
    with pytest.raises(ValueError, match="k must"):
        iwae_bound(m.encode, m.decode, Gaussian(), x, KEY, 0)
    with pytest.raises(ValueError, match="free_bits"):
        make_vae_loss(vae, Gaussian(), free_bits=-1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        kl_warmup(0, -1)
    with pytest.raises(ValueError, match="x must"):
        jax.eval_shape(ConvEncoder(2).init, KEY, jnp.zeros((2, 8, 8)))
