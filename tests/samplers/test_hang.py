"""No sampler deadlocks with a denoiser that runs batched LAPACK kernels (CPU, jaxlib 0.10).

Two batched LAPACK kernels running at once can block both threads of a two-thread intra-op pool
for good (see ``jaxdiff._arrays.after``). The denoiser here inverts one 6x6 matrix per sample, a
matrix that depends on σ alone, so only the sampler orders one call's inverses after the previous
call's; before ``samplers.base.denoise`` tied σ to the state, Heun, EDM, DPM-Solver++ SDE and the
adaptive ``pf_ode`` each hung within 15 calls. Each run is a fresh process pinned to two CPUs,
killed after a timeout. (``tests/bridges/test_hang.py`` holds the bridges' runs.)
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
    import jax, jax.numpy as jnp
    from jaxdiff import samplers, schedules

    n, I = 16_000, jnp.eye(6)

    def denoiser(x, sigma):  # one 6x6 inverse per sample, of a matrix that depends on sigma alone
        A = jnp.broadcast_to(jnp.reshape(sigma, ()) * I + I, (n, 6, 6)) + 1e-3 * jnp.arange(n)[:, None, None] * I
        return jnp.einsum("nij,nj->ni", jnp.linalg.inv(A), x)

    f = jax.jit(lambda x, s: samplers.get("{name}").fn(denoiser, x, s, key=jax.random.key(0)))
    for r in range({reps}):
        assert bool(jnp.all(jnp.isfinite(f(jnp.ones((n, 6)), schedules.karras(6, 0.01 + 1e-3 * r, 10.0)))))
    print("ok")
""")


@pytest.mark.parametrize("name", ["heun", "edm", "dpmpp_sde", "pf_ode"])
def test_lapack_denoiser_does_not_hang(name):
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT.format(name=name, reps=15)], capture_output=True,
                             text=True, timeout=90, check=False, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} hung with a LAPACK denoiser (no result within 90 s)")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
