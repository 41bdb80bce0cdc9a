"""Auto-Encoding Variational Bayes: q(z|x), p(x|z), the SGVB estimators A and B and IWAE.

The estimators are written over two plain functions, so any network (or a
closed-form linear map) plugs in:

    encode(x (B, *event)) -> (mean, log_var), each (B, Z)
    decode(z (B, Z))      -> out (B, *event, P), P = likelihood.num_params

Data live in [-1, 1] (as ``jaxdiff.data.digits``); log-probabilities are in nats
and summed over the event, one number per data point.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff._checks import check_finite
from jaxdiff.nn.conv import Conv

LOG_2PI = math.log(2 * math.pi)

Encode = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
Decode = Callable[[jax.Array], jax.Array]


# --------------------------------------------------------------------------- Gaussians


def _check_mean_log_var(mean: jax.Array, log_var: jax.Array) -> None:
    """Same shapes; concrete (not traced) values must be finite."""
    if mean.shape != log_var.shape:
        raise ValueError(f"log_var must have the shape of mean {mean.shape}, got {log_var.shape}")
    check_finite(mean, "mean must be finite (no NaN or inf)")
    check_finite(log_var, "log_var must be finite (no NaN or inf)")


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I); all arrays of one shape, finite when concrete."""
    _check_mean_log_var(mean, log_var)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps


def gaussian_log_prob(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Per-dimension log N(z; mean, exp(log_var)), broadcasting; same shape as z."""
    return -0.5 * (LOG_2PI + log_var + (z - mean) ** 2 * jnp.exp(-log_var))


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Per-dimension KL(N(mean, exp(log_var)) || N(0, 1)); same shape as mean.

    Concrete (not traced) ``mean`` or ``log_var`` holding NaN or inf raise ``ValueError``."""
    _check_mean_log_var(mean, log_var)
    return 0.5 * (jnp.exp(log_var) + mean**2 - 1.0 - log_var)


# --------------------------------------------------------------------------- likelihoods


def _event_sum(a: jax.Array, batch_ndim: int) -> jax.Array:
    return a.sum(axis=tuple(range(batch_ndim, a.ndim)))


def _check_out(x: jax.Array, out: jax.Array, num_params: int) -> None:
    if out.shape != x.shape + (num_params,):
        raise ValueError(f"out must have shape x.shape + ({num_params},) = {x.shape + (num_params,)}, got {out.shape}")


@dataclasses.dataclass(frozen=True)
class Bernoulli:
    """p(x|z) = Bernoulli with logits out[..., 0]; the target is (x + 1) / 2 in [0, 1].

    On grey-level data this is the usual cross-entropy relaxation, not a normalised density.
    """

    num_params: int = dataclasses.field(default=1, init=False)

    def log_prob(self, x: jax.Array, out: jax.Array, batch_ndim: int = 1) -> jax.Array:
        """x ``(*batch, *event)``, out ``(*batch, *event, 1)`` -> ``(*batch,)`` nats."""
        _check_out(x, out, 1)
        logits, target = out[..., 0], (x + 1.0) / 2.0
        return _event_sum(target * jax.nn.log_sigmoid(logits) + (1 - target) * jax.nn.log_sigmoid(-logits), batch_ndim)

    def mean(self, out: jax.Array) -> jax.Array:
        return 2.0 * jax.nn.sigmoid(out[..., 0]) - 1.0

    def sample(self, key: jax.Array, out: jax.Array) -> jax.Array:
        return 2.0 * jax.random.bernoulli(key, jax.nn.sigmoid(out[..., 0])).astype(out.dtype) - 1.0


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """p(x|z) = N(out[..., 0], exp(out[..., 1])) (learned variance), or N(out[..., 0], variance) if given."""

    variance: float | None = None

    def __post_init__(self):
        if self.variance is not None and not self.variance > 0:
            raise ValueError(f"variance must be > 0 (or None for a learned variance), got {self.variance}")

    @property
    def num_params(self) -> int:
        return 1 if self.variance is not None else 2

    def _log_var(self, out: jax.Array) -> jax.Array:
        if self.variance is not None:
            return jnp.full(out.shape[:-1], math.log(self.variance), out.dtype)
        return out[..., 1]

    def log_prob(self, x: jax.Array, out: jax.Array, batch_ndim: int = 1) -> jax.Array:
        """x ``(*batch, *event)``, out ``(*batch, *event, P)`` -> ``(*batch,)`` nats."""
        _check_out(x, out, self.num_params)
        return _event_sum(gaussian_log_prob(x, out[..., 0], self._log_var(out)), batch_ndim)

    def mean(self, out: jax.Array) -> jax.Array:
        return out[..., 0]

    def sample(self, key: jax.Array, out: jax.Array) -> jax.Array:
        return reparameterize(key, out[..., 0], self._log_var(out))


@dataclasses.dataclass(frozen=True)
class DiscretizedLogistic:
    """Logistic (mean out[..., 0], log-scale out[..., 1]) integrated over ``num_levels`` bins of [-1, 1].

    Level k sits at -1 + 2k / (num_levels - 1); its bin is +-1 / (num_levels - 1)
    wide on each side and the end bins extend to +-inf, so the probabilities of
    the levels sum to one. Digits: 17 levels (raw values 0..16).
    """

    num_levels: int = 17
    num_params: int = dataclasses.field(default=2, init=False)

    def __post_init__(self):
        if self.num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {self.num_levels}")

    def log_prob(self, x: jax.Array, out: jax.Array, batch_ndim: int = 1) -> jax.Array:
        """x ``(*batch, *event)`` on the level grid, out ``(*batch, *event, 2)`` -> ``(*batch,)`` nats."""
        _check_out(x, out, 2)
        mean, log_scale = out[..., 0], jnp.maximum(out[..., 1], -7.0)
        half = 1.0 / (self.num_levels - 1)
        inv_s = jnp.exp(-log_scale)
        plus, minus = inv_s * (x - mean + half), inv_s * (x - mean - half)
        log_cdf_plus = jax.nn.log_sigmoid(plus)  # log F(x + half), used at the bottom level
        log_sf_minus = jax.nn.log_sigmoid(-minus)  # log (1 - F(x - half)), used at the top level
        # log(F(plus) - F(minus)) = log_sigmoid(plus) + log_sigmoid(-minus) + log(1 - exp(minus - plus))
        log_mid = log_cdf_plus + log_sf_minus + jnp.log(-jnp.expm1(minus - plus))
        # Far in the tails the difference underflows: use the density times the bin width.
        centre = inv_s * (x - mean)
        log_pdf = centre - log_scale - 2.0 * jax.nn.softplus(centre) + math.log(2 * half)
        log_mid = jnp.where(jnp.exp(log_mid) > 1e-5, log_mid, log_pdf)
        lp = jnp.where(x < -1 + half, log_cdf_plus, jnp.where(x > 1 - half, log_sf_minus, log_mid))
        return _event_sum(lp, batch_ndim)

    def mean(self, out: jax.Array) -> jax.Array:
        return jnp.clip(out[..., 0], -1.0, 1.0)

    def sample(self, key: jax.Array, out: jax.Array) -> jax.Array:
        u = jax.random.uniform(key, out.shape[:-1], out.dtype, 1e-6, 1 - 1e-6)
        x = out[..., 0] + jnp.exp(jnp.maximum(out[..., 1], -7.0)) * (jnp.log(u) - jnp.log1p(-u))
        step = 2.0 / (self.num_levels - 1)
        return jnp.clip(jnp.round((x + 1.0) / step) * step - 1.0, -1.0, 1.0)


Likelihood = Bernoulli | Gaussian | DiscretizedLogistic


# --------------------------------------------------------------------------- estimators


def _check_x(x: jax.Array) -> None:
    if x.ndim < 2:
        raise ValueError(f"x must have shape (B, *event), got {x.shape}")


def _encode_checked(encode: Encode, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, log_var = encode(x)
    _check_mean_log_var(mean, log_var)
    if mean.ndim != 2 or mean.shape[0] != x.shape[0]:
        raise ValueError(f"encode must return (B, Z) = ({x.shape[0]}, Z) arrays, got {mean.shape}")
    return mean, log_var


def _sample_and_decode(encode, decode, likelihood, x, key, num_samples):
    """-> mean, log_var (B, Z); z (L, B, Z); log p(x|z) (L, B)."""
    mean, log_var = _encode_checked(encode, x)
    keys = jax.random.split(key, num_samples)
    z = jax.vmap(lambda k: reparameterize(k, mean, log_var))(keys)
    out = jax.vmap(decode)(z)
    x_l = jnp.broadcast_to(x, (num_samples,) + x.shape)
    return mean, log_var, z, likelihood.log_prob(x_l, out, batch_ndim=2)


def elbo(
    encode: Encode,
    decode: Decode,
    likelihood: Likelihood,
    x: jax.Array,
    key: jax.Array,
    *,
    num_samples: int = 1,
    estimator: str = "B",
) -> dict[str, jax.Array]:
    """SGVB estimate of the ELBO with L = ``num_samples`` draws per data point.

    estimator "A": mean_l [log p(x|z_l) + log p(z_l) - log q(z_l|x)];
    estimator "B": mean_l log p(x|z_l) - KL(q(z|x) || p(z)) (analytic).
    Returns per-point (B,) ``elbo``, ``rec`` (MC log p(x|z)), ``kl`` (the
    estimator's KL: MC for A, analytic for B) and per-dimension ``kl_dims`` (B, Z).
    """
    _check_x(x)
    if estimator not in ("A", "B"):
        raise ValueError(f"estimator must be 'A' or 'B', got {estimator!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    mean, log_var, z, rec = _sample_and_decode(encode, decode, likelihood, x, key, num_samples)
    if estimator == "A":
        kl_dims = (gaussian_log_prob(z, mean, log_var) - gaussian_log_prob(z, 0.0, 0.0)).mean(0)
    else:
        kl_dims = gaussian_kl(mean, log_var)
    rec, kl = rec.mean(0), kl_dims.sum(-1)
    return dict(elbo=rec - kl, rec=rec, kl=kl, kl_dims=kl_dims)


def iwae_bound(
    encode: Encode, decode: Decode, likelihood: Likelihood, x: jax.Array, key: jax.Array, k: int
) -> jax.Array:
    """Importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): (B,) nats.

    k = 1 is estimator A with L = 1; the bound increases with k towards log p(x).
    """
    _check_x(x)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mean, log_var, z, rec = _sample_and_decode(encode, decode, likelihood, x, key, k)
    log_w = rec + (gaussian_log_prob(z, 0.0, 0.0) - gaussian_log_prob(z, mean, log_var)).sum(-1)
    return jax.nn.logsumexp(log_w, axis=0) - math.log(k)


def kl_warmup(step, warmup_steps: int, beta_max: float = 1.0) -> jax.Array:
    """Linear KL warm-up: beta = beta_max * min(1, step / warmup_steps) (beta_max if warmup_steps = 0)."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps == 0:
        return jnp.asarray(beta_max, jnp.float32)
    return beta_max * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)


def bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
    """-log p in nats per data point -> bits per dimension (pass the negative log-likelihood)."""
    return nats / (num_dims * math.log(2.0))


# --------------------------------------------------------------------------- networks


class MLPEncoder(nn.Module):
    """x (B, *event) -> mean, log_var (B, latent_dim): flatten, SiLU Dense layers."""

    latent_dim: int
    hidden: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h))
        mean = nn.Dense(self.latent_dim, name="mean")(h)
        log_var = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name="log_var")(h)
        return mean, log_var


class MLPDecoder(nn.Module):
    """z (B, Z) -> out (B, *event_shape, num_params)."""

    event_shape: tuple[int, ...]
    num_params: int
    hidden: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h))
        out = nn.Dense(math.prod(self.event_shape) * self.num_params, name="out")(h)
        return out.reshape((z.shape[0],) + tuple(self.event_shape) + (self.num_params,))


class ConvEncoder(nn.Module):
    """x (B, H, W, C) -> mean, log_var (B, latent_dim): stride-2 3x3 convs, then Dense."""

    latent_dim: int
    channels: tuple[int, ...] = (32, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, H, W, C), got {x.shape}")
        h = x
        for ch in self.channels:
            h = nn.silu(Conv(ch, (3, 3), strides=2)(h))
        h = h.reshape(h.shape[0], -1)
        mean = nn.Dense(self.latent_dim, name="mean")(h)
        log_var = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name="log_var")(h)
        return mean, log_var


class ConvDecoder(nn.Module):
    """z (B, Z) -> out (B, H, W, C, num_params): Dense to (H/2^n, W/2^n), stride-2 transposed convs."""

    event_shape: tuple[int, int, int]
    num_params: int
    channels: tuple[int, ...] = (64, 32)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, ch_out = self.event_shape
        f = 2 ** len(self.channels)
        if height % f or width % f:
            raise ValueError(f"event_shape {self.event_shape} must be divisible by 2^len(channels) = {f}")
        h = nn.silu(nn.Dense(height // f * width // f * self.channels[0])(z))
        h = h.reshape(z.shape[0], height // f, width // f, self.channels[0])
        for ch in self.channels:
            h = nn.silu(nn.ConvTranspose(ch, (3, 3), strides=(2, 2))(h))
        out = Conv(ch_out * self.num_params, (3, 3), name="out")(h)
        return out.reshape(out.shape[:-1] + (ch_out, self.num_params))


class VAE(nn.Module):
    """An encoder and a decoder; ``__call__(x, key)`` (for init) returns (out, mean, log_var).

    Use ``vae.bind({"params": params})`` to get ``.encode`` / ``.decode`` closures
    for [`elbo`][] and [`iwae_bound`][].
    """

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)

    def __call__(self, x: jax.Array, key: jax.Array):
        mean, log_var = self.encode(x)
        return self.decode(reparameterize(key, mean, log_var)), mean, log_var


def make_vae_loss(
    vae: VAE,
    likelihood: Likelihood,
    *,
    estimator: str = "B",
    num_samples: int = 1,
    free_bits: float = 0.0,
    data_key: str = "image",
):
    """``loss_fn(params, batch, key) -> (loss, terms)`` for ``jaxdiff.train.make_train_step``.

    loss = -mean_b [rec - beta * KL], where KL per latent dimension is first
    averaged over the minibatch and floored at ``free_bits`` nats (Kingma et al.
    2016). ``batch[data_key]`` is (B, *event); an optional scalar ``batch["beta"]``
    (see [`kl_warmup`][]) weights the KL, default 1. Terms: ``loss``, ``elbo``,
    ``rec``, ``kl`` (means over the batch, nats per data point) and ``beta``.
    """
    if free_bits < 0:
        raise ValueError(f"free_bits must be >= 0, got {free_bits}")

    def loss_fn(params, batch, key):
        m = vae.bind({"params": params})
        t = elbo(m.encode, m.decode, likelihood, batch[data_key], key, num_samples=num_samples, estimator=estimator)
        beta = jnp.asarray(batch.get("beta", 1.0), jnp.float32)
        kl_reg = jnp.maximum(t["kl_dims"].mean(0), free_bits).sum()
        loss = -t["rec"].mean() + beta * kl_reg
        return loss, dict(loss=loss, elbo=t["elbo"].mean(), rec=t["rec"].mean(), kl=t["kl"].mean(), beta=beta)

    return loss_fn
