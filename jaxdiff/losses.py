"""Training losses. Each builder returns ``loss_fn(params, batch, key) -> (loss, terms)``.

``batch`` is a dict with ``"image"`` (B, ...) in the data scale and optionally
``"label"`` (B,) int32; ``terms`` is a dict of named scalar diagnostics.
Networks have the signature ``net(params, x, c_noise, *, key=None, **cond)``
where a non-None ``key`` means training mode (dropout).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff import precond as precond_lib
from jaxdiff._arrays import bcast

Array = Any



@dataclasses.dataclass(frozen=True)
class EDMNoise:
    """EDM training noise: ln σ ~ N(P_mean, P_std²), weight (σ²+σ_data²)/(σ·σ_data)²."""

    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: float = 0.5

    def sample(self, key, shape):
        return jnp.exp(self.P_mean + self.P_std * jax.random.normal(key, shape))

    def weight(self, sigma):
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2


@dataclasses.dataclass(frozen=True)
class VPNoise:
    """VP training noise: t ~ U(ε_t, 1), σ = √(exp(½β_d t² + β_min t) - 1), weight 1/σ²."""

    beta_d: float = 19.9
    beta_min: float = 0.1
    epsilon_t: float = 1e-5

    def sample(self, key, shape):
        t = jax.random.uniform(key, shape, minval=self.epsilon_t, maxval=1.0)
        return jnp.sqrt(jnp.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t))

    def weight(self, sigma):
        return 1.0 / sigma**2


@dataclasses.dataclass(frozen=True)
class VENoise:
    """VE training noise: ln σ ~ U(ln σ_min, ln σ_max), weight 1/σ²."""

    sigma_min: float = 0.02
    sigma_max: float = 100.0

    def sample(self, key, shape):
        lo, hi = jnp.log(self.sigma_min), jnp.log(self.sigma_max)
        return jnp.exp(jax.random.uniform(key, shape, minval=lo, maxval=hi))

    def weight(self, sigma):
        return 1.0 / sigma**2


NOISE_DISTRIBUTIONS = {"edm": EDMNoise, "vp": VPNoise, "ve": VENoise}


def drop_labels(key, labels, p: float, null_label: int):
    """Replace each label by ``null_label`` with probability ``p`` (classifier-free guidance)."""
    if labels is None or p <= 0.0:
        return labels
    drop = jax.random.bernoulli(key, p, labels.shape)
    return jnp.where(drop, null_label, labels)


def denoising_loss(net, precond, noise, *, label_dropout: float = 0.0, num_classes: int = 0):
    """EDM-style denoising loss E_σ,n λ(σ) ‖D(y + σn; σ) - y‖².

    With ``EDMPrecond``/``EDMNoise`` this is the EDM loss; with ``VPPrecond``/``VPNoise``
    the VP loss; with ``VEPrecond``/``VENoise`` the VE loss (Karras et al. 2022, Table 1).
    Terms: ``loss`` (weighted, mean over elements), ``mse`` (unweighted ‖D - y‖²).
    """

    def loss_fn(params, batch, key):
        y = batch["image"]
        k_sigma, k_noise, k_label, k_drop = jax.random.split(key, 4)
        sigma = noise.sample(k_sigma, y.shape[:1])
        n = jax.random.normal(k_noise, y.shape, y.dtype)
        cond = {}
        if num_classes and "label" in batch:
            cond["labels"] = drop_labels(k_label, batch["label"], label_dropout, num_classes)
        D = precond_lib.denoiser(net, params, precond, key=k_drop)
        err = (D(y + bcast(sigma, y) * n, sigma, **cond) - y) ** 2
        per_example = jnp.mean(err.reshape(err.shape[0], -1), axis=1)
        loss = jnp.mean(noise.weight(sigma) * per_example)
        return loss, {"loss": loss, "mse": jnp.mean(per_example)}

    return loss_fn


def ddpm_loss(net, alphas_cumprod, *, label_dropout: float = 0.0, num_classes: int = 0):
    """DDPM's L_simple: E_t,ε ‖ε_θ(√ᾱ_t y + √(1-ᾱ_t) ε, t) - ε‖², t ~ U{0, ..., T-1}.

    Args:
      alphas_cumprod: (T,) cumulative products ᾱ_t of the discrete schedule.
    The network receives the integer timestep as a float ``c_noise``.
    """
    alphas_cumprod = jnp.asarray(alphas_cumprod)

    def loss_fn(params, batch, key):
        y = batch["image"]
        k_t, k_noise, k_label, k_drop = jax.random.split(key, 4)
        t = jax.random.randint(k_t, y.shape[:1], 0, alphas_cumprod.shape[0])
        ab = bcast(alphas_cumprod[t], y)
        eps = jax.random.normal(k_noise, y.shape, y.dtype)
        cond = {}
        if num_classes and "label" in batch:
            cond["labels"] = drop_labels(k_label, batch["label"], label_dropout, num_classes)
        pred = net(params, jnp.sqrt(ab) * y + jnp.sqrt(1 - ab) * eps, t.astype(y.dtype), key=k_drop, **cond)
        loss = jnp.mean((pred - eps) ** 2)
        return loss, {"loss": loss}

    return loss_fn


def dsm_loss(score_net: Callable[..., Array], sde, *, eps: float = 1e-5):
    """Denoising score matching over a ``jaxdiff.sde`` process (Song et al. 2021).

    E_t,x0,n λ(t) ‖s_θ(x_t, t) + n/std(t)‖² with λ(t) = std(t)², t ~ U(eps, T).
    ``score_net(params, x_t, t, *, key)`` returns the score of the scaled x_t.
    """

    def loss_fn(params, batch, key):
        y = batch["image"]
        k_t, k_noise, k_drop = jax.random.split(key, 3)
        t = jax.random.uniform(k_t, y.shape[:1], minval=eps, maxval=sde.T)
        mean, std = sde.marginal(t)
        n = jax.random.normal(k_noise, y.shape, y.dtype)
        x_t = bcast(mean, y) * y + bcast(std, y) * n
        score = score_net(params, x_t, t, key=k_drop)
        loss = jnp.mean((bcast(std, y) * score + n) ** 2)
        return loss, {"loss": loss}

    return loss_fn
