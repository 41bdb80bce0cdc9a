"""DDBM preconditioning (unit variance by Monte Carlo), the bridge denoiser and the bridge loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.bridges import DDBMPrecond, VEBridge, VPBridge, bridge_denoiser, bridge_loss
from jaxdiff.train import create_train_state, make_train_step


@pytest.mark.parametrize("bridge", [VPBridge(), VEBridge()], ids=["vp", "ve"])
def test_unit_variance_inputs_and_targets(bridge):
    precond = DDBMPrecond(sigma_0=0.5, sigma_T=0.7, cov=0.2)
    n = 200_000
    k0, kT, kn = jax.random.split(jax.random.key(0), 3)
    # (x_0, x_T) jointly Gaussian with the stated variances and covariance
    z0, z1 = jax.random.normal(k0, (n,)), jax.random.normal(kT, (n,))
    x0 = 0.5 * z0
    x_T = (0.2 / 0.5) * z0 + np.sqrt(0.7**2 - (0.2 / 0.5) ** 2) * z1
    noise = jax.random.normal(kn, (n,))
    for frac in (0.01, 0.3, 0.7, 0.99):
        t = np.float64(frac * bridge.T)
        a, b, c = bridge.abc(t)
        x_t = a * x_T + b * x0 + c * noise
        c_skip, c_out, c_in, _ = precond.coefficients(bridge, t)
        tol = 5 / np.sqrt(n) * np.sqrt(2) + 1e-3
        assert abs(float(jnp.var(c_in * x_t)) - 1) < tol, frac
        assert abs(float(jnp.var((x0 - c_skip * x_t) / c_out)) - 1) < tol, frac
        np.testing.assert_allclose(precond.weight(bridge, t), 1 / c_out**2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_coefficients_finite_on_training_range(dtype):
    with jax.enable_x64(dtype == "float64"):
        for bridge in (VPBridge(), VEBridge()):
            t = jnp.asarray([bridge.t_min, bridge.t_max], dtype)
            out = [*DDBMPrecond().coefficients(bridge, t), DDBMPrecond().weight(bridge, t)]
            assert all(bool(jnp.all(jnp.isfinite(v))) for v in out)


def _linear_net(params, x, c_noise, *, key=None):
    """A per-pixel linear map from 2C channels to C (x: (B, H, W, 2C))."""
    return x @ params["w"] + c_noise[:, None, None, None] * params["b"]


def test_bridge_denoiser_wiring():
    bridge, precond = VPBridge(), DDBMPrecond()
    seen = {}

    def net(params, x, c_noise, *, key=None):
        seen["x"], seen["c_noise"] = x, c_noise
        return jnp.zeros(x.shape[:-1] + (x.shape[-1] // 2,))

    x_t, x_T = jnp.ones((2, 4, 4, 3)), 2 * jnp.ones((2, 4, 4, 3))
    out = bridge_denoiser(net, None, bridge, precond)(x_t, 0.5, x_T)
    c_skip, _, c_in, c_noise = precond.coefficients(bridge, jnp.full((2,), 0.5))
    assert seen["x"].shape == (2, 4, 4, 6)
    np.testing.assert_allclose(seen["x"][..., 3:], x_T)
    np.testing.assert_allclose(seen["x"][..., :3], c_in[0] * x_t, rtol=1e-6)
    np.testing.assert_allclose(seen["c_noise"], c_noise)
    np.testing.assert_allclose(out, c_skip[0] * x_t, rtol=1e-6)
    with pytest.raises(ValueError, match="x_T must have the shape"):
        bridge_denoiser(net, None, bridge, precond)(x_t, 0.5, x_T[:, :2])


def test_bridge_loss_trains_with_make_train_step():
    bridge, precond = VPBridge(), DDBMPrecond()
    params = {"w": 0.1 * jnp.ones((2, 1)), "b": jnp.zeros((1,))}
    loss_fn = bridge_loss(_linear_net, bridge, precond)
    x0 = jax.random.uniform(jax.random.key(1), (8, 4, 4, 1), minval=-1, maxval=1)
    batch = {"x0": x0, "xT": 0.5 * x0}
    loss, terms = loss_fn(params, batch, jax.random.key(0))
    loss2, _ = loss_fn(params, {"image": x0, "source": 0.5 * x0}, jax.random.key(0))
    assert np.isfinite(float(loss)) and set(terms) == {"loss", "mse"}
    np.testing.assert_allclose(loss, loss2)
    with pytest.raises(ValueError, match="'x0' and 'xT'"):
        loss_fn(params, {"image": x0}, jax.random.key(0))
    opt = optax.adam(1e-2)
    state = create_train_state(params, opt, jax.random.key(2))
    step = jax.jit(make_train_step(loss_fn, opt, batch_size=8, ema_halflife_nimg=100.0))
    for _ in range(3):
        state, metrics = step(state, batch)
    assert float(metrics["nonfinite"]) == 0 and int(state.step) == 3
