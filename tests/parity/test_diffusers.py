"""Parity of ``ddim`` / ``ddpm`` with diffusers' Flax schedulers (float64, same denoiser and x; jaxdiff
runs on ``vp_sigmas`` of the same schedule, from ``x_T / sqrt(abar_T)`` in the EDM variable).

Needs ``requirements-parity-diffusers.txt`` (diffusers 0.37.1, the last release with the Flax
schedulers). Both schedulers take ``prediction_type="sample"``, i.e. the denoiser's x0_hat,
with clipping off. ``FlaxDDIMScheduler`` adds no noise for ``eta > 0``, so only ``eta = 0`` is
compared; ``FlaxDDPMScheduler`` steps ``t -> t - 1`` only, so DDPM runs the full chain, with
diffusers' noise draw replaced by ours (scaled by diffusers' own variance) on each step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers")

from jaxdiff import samplers  # noqa: E402

M, S = 0.3, 0.7
T = 100  # training timesteps: small keeps the Python loop on diffusers' side fast


def gaussian_denoiser(x, sigma):
    return M + S**2 / (S**2 + sigma**2) * (x - M)


def _scheduler(cls, **kw):
    sched = cls(num_train_timesteps=T, beta_start=1e-3, beta_end=0.2, prediction_type="sample",
                clip_sample=False, dtype=jnp.float64, **kw)
    return sched, sched.create_state()


def _x0_hat(x, a):
    return gaussian_denoiser(x / jnp.sqrt(a), jnp.sqrt((1 - a) / a))


def test_ddim_eta0(x64):
    sched, state = _scheduler(diffusers.FlaxDDIMScheduler)
    state = sched.set_timesteps(state, 10)
    abar = state.common.alphas_cumprod
    x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64)
    ref = x
    for t in state.timesteps:
        ref = sched.step(state, _x0_hat(ref, abar[t]), t, ref, eta=0.0).prev_sample
    ts = state.timesteps.astype(jnp.int32)
    out = samplers.ddim(gaussian_denoiser, x / jnp.sqrt(abar[ts[0]]), samplers.vp_sigmas(abar, ts))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_full_chain(x64, monkeypatch, variance):
    # diffusers 0.37.1 calls jnp.clip(..., a_min=...), which JAX >= 0.8 no longer accepts.
    clip = jnp.clip
    monkeypatch.setattr(jnp, "clip", lambda a, a_min=None, a_max=None, **kw: clip(a, a_min, a_max, **kw))
    sched, state = _scheduler(diffusers.FlaxDDPMScheduler, variance_type=variance)
    state = sched.set_timesteps(state, T)
    abar = state.common.alphas_cumprod
    ts = state.timesteps.astype(jnp.int32)
    x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64)
    key = jax.random.key(1)
    ours = [jax.random.fold_in(key, i) for i in range(T)]  # the default noise source: step i draws fold_in(key, i)
    ref = x
    for i, t in enumerate(ts):
        step_key = jax.random.key(100 + i)
        ref = sched.step(state, _x0_hat(ref, abar[t]), t, ref, key=step_key).prev_sample
        if int(t) > 0:
            std = jnp.sqrt(sched._get_variance(state, t))
            theirs = jax.random.normal(jax.random.split(step_key, 1)[0], x.shape, jnp.float64)
            ref = ref + std * (jax.random.normal(ours[i], x.shape, jnp.float64) - theirs)
    out = samplers.ddpm(gaussian_denoiser, x / jnp.sqrt(abar[ts[0]]), samplers.vp_sigmas(abar, ts), key=key,
                        variance=variance)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
