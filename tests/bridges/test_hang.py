"""No bridge sampler deadlocks with a denoiser that runs batched LAPACK kernels (CPU, jaxlib 0.10).

jaxlib's CPU LAPACK kernels split a large batch into chunks on XLA's intra-op thread pool and
block a pool thread until the chunks are done; two such calls running at once on a two-thread
pool can block both threads for good. Here the denoiser inverts one 6x6 matrix per sample, a
matrix that depends on ``t`` alone, so nothing but the sampler orders one call's inverses after
the previous call's; without that order ``ddbm_heun`` hung within a few calls. Each run is a fresh
process pinned to two CPUs (a two-thread pool), killed after a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import os
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jaxdiff.bridges import VPBridge, dbim, ddbm_heun

    bridge, d = VPBridge(), 6
    rng = np.random.default_rng(11)
    M = jnp.asarray(0.6 * np.linalg.qr(rng.standard_normal((d, d)))[0])
    L = 0.25 * rng.standard_normal((d, d))
    S, I = jnp.asarray(L @ L.T + 0.05 * np.eye(d)), jnp.eye(d)

    def denoiser(x, t, x_T):  # the Gaussian bridge's Bayes denoiser: one 6x6 inverse per sample
        a, b, c = bridge.abc(t)
        b, c = jnp.full(x.shape[:1], b), jnp.full(x.shape[:1], c)
        K = jax.vmap(lambda b, c: b * S @ jnp.linalg.inv(b**2 * S + c**2 * I))(b, c)
        mu = x_T @ M.T
        return mu + jnp.einsum("nij,nj->ni", K, x - a * x_T - b[:, None] * mu)

    x_T = jnp.asarray(np.repeat(rng.standard_normal((8, d)), 2000, axis=0))  # 16,000 inverses a call
    f = jax.jit(lambda x_T, key: {call})
    for r in range({reps}):
        assert bool(jnp.all(jnp.isfinite(f(x_T, jax.random.key(r)))))
    print("ok")
""")

CALLS = {
    "ddbm_heun": "ddbm_heun(denoiser, x_T, 3, bridge=bridge, key=key)",
    "ddbm_heun_ode": "ddbm_heun(denoiser, x_T, 3, bridge=bridge, churn_step_ratio=0.0)",
    "dbim": "dbim(denoiser, x_T, 5, bridge=bridge, order=3, key=key)",
}


@pytest.mark.parametrize("sampler", list(CALLS))
def test_lapack_denoiser_does_not_hang(sampler):
    code = SCRIPT.format(call=CALLS[sampler], reps=15)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, "JAX_PLATFORMS": "cpu"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"{sampler} hung with a LAPACK denoiser (no result within 60 s)")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
