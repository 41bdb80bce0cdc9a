"""Loss weights against closed forms; the EDM loss of the Bayes denoiser on Gaussian data is exactly 1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import losses, precond, schedules


def test_edm_weight_closed_form():
    s = jnp.asarray([0.01, 0.5, 2.0, 80.0])
    np.testing.assert_allclose(losses.EDMNoise().weight(s), (s**2 + 0.25) / (s * 0.5) ** 2, rtol=1e-6)
    np.testing.assert_allclose(losses.VPNoise().weight(s), 1 / s**2, rtol=1e-6)
    np.testing.assert_allclose(losses.VENoise().weight(s), 1 / s**2, rtol=1e-6)


def test_noise_distributions():
    key = jax.random.key(0)
    s = losses.EDMNoise().sample(key, (200_000,))
    np.testing.assert_allclose([jnp.log(s).mean(), jnp.log(s).std()], [-1.2, 1.2], atol=0.01)
    s = losses.VENoise().sample(key, (10_000,))
    assert 0.02 <= float(s.min()) and float(s.max()) <= 100.0
    s = losses.VPNoise().sample(key, (10_000,))
    t = precond.VPPrecond().sigma_inv(s)
    assert float(t.min()) >= 1e-5 - 1e-7 and float(t.max()) <= 1.0 + 1e-6


def exact_gaussian_net(pre, sd):
    """A 'network' whose preconditioned denoiser is the Bayes denoiser of N(0, sd²) data."""

    def net(params, x_in, c_noise, *, key=None):
        sigma = jnp.exp(4 * c_noise)  # EDM: c_noise = ln(σ)/4
        c_skip, c_out, c_in, _ = pre.coefficients(sigma)
        x = x_in / c_in[:, None]
        d = sd**2 / (sd**2 + sigma[:, None] ** 2) * x
        return (d - c_skip[:, None] * x) / c_out[:, None]

    return net


def test_edm_loss_of_bayes_denoiser_is_one():
    sd = 0.5
    pre = precond.EDMPrecond(sigma_data=sd)
    loss_fn = losses.denoising_loss(exact_gaussian_net(pre, sd), pre, losses.EDMNoise(sigma_data=sd))
    y = sd * jax.random.normal(jax.random.key(0), (20_000, 16))
    loss, terms = jax.jit(loss_fn)(None, {"image": y}, jax.random.key(1))
    # λ(σ)·E‖D* - y‖² = (σ²+sd²)/(σ sd)² · σ²sd²/(σ²+sd²) = 1 for every σ.
    np.testing.assert_allclose(loss, 1.0, atol=0.02)
    assert set(terms) == {"loss", "mse"}


def test_label_dropout_rate():
    labels = jnp.zeros((100_000,), jnp.int32)
    dropped = losses.drop_labels(jax.random.key(0), labels, 0.1, 10)
    assert set(np.unique(dropped).tolist()) == {0, 10}
    np.testing.assert_allclose(float((dropped == 10).mean()), 0.1, atol=0.005)


def test_ddpm_loss_of_exact_eps_predictor():
    _, ab = schedules.linear_beta(1000)
    sd = 1.0

    def net(params, x_t, t, *, key=None):  # E[ε | x_t] for N(0, 1) data is √(1-ᾱ) x_t
        return jnp.sqrt(1 - ab[t.astype(jnp.int32)])[:, None] * x_t

    y = jax.random.normal(jax.random.key(0), (50_000, 4)) * sd
    loss, _ = losses.ddpm_loss(net, ab)(None, {"image": y}, jax.random.key(1))
    # With unit-variance data the residual variance is ᾱ_t averaged over t.
    np.testing.assert_allclose(loss, float(jnp.mean(ab)), rtol=0.02)


@pytest.mark.parametrize("t", [0.3])
def test_dsm_loss_of_exact_score(t):
    from jaxdiff.sde import VPSDE

    sde = VPSDE()

    def score_net(params, x, t, *, key=None):  # score of N(0, s²·1 + std²) for N(0, 1) data
        mean, std = sde.marginal(t)
        return -x / (mean**2 + std**2)[:, None]

    y = jax.random.normal(jax.random.key(0), (50_000, 4))
    loss, _ = losses.dsm_loss(score_net, sde)(None, {"image": y}, jax.random.key(1))
    # Residual: E‖std·s* + n‖² = s² (per element) averaged over t ~ U(eps, 1), s = mean scale.
    ts = jnp.linspace(1e-5, 1.0, 10_001)
    want = float(jnp.mean(sde.marginal(ts)[0] ** 2))
    np.testing.assert_allclose(loss, want, rtol=0.03)
