"""DDBM and DBIM samplers on the analytic Gaussian bridge, DBIM's marginal preservation, the
protocol keywords (noise source, trajectory), bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.bridges import (
    GaussianBridgeData,
    VEBridge,
    VPBridge,
    dbim,
    dbim_grid,
    dbim_step,
    ddbm_grid,
    ddbm_heun,
)
from jaxdiff.samplers.noise import BrownianTreeNoise, gaussian

BRIDGE = VPBridge()
DATA = GaussianBridgeData.random(d=4, seed=0)
K, N = 4, 2048  # source points x_T, samples per source
X_T = jax.random.normal(jax.random.key(1), (K, 4))
X_T_REP = jnp.repeat(X_T, N, axis=0)
NFES = (5, 10, 20)

SAMPLERS = {
    "ddbm": lambda D, nfe, key: ddbm_heun(D, X_T_REP, (nfe + 1) // 3, bridge=BRIDGE, key=key),
    "dbim": lambda D, nfe, key: dbim(D, X_T_REP, nfe - 1, bridge=BRIDGE, key=key),
    "dbim_eta1": lambda D, nfe, key: dbim(D, X_T_REP, nfe - 1, bridge=BRIDGE, eta=1.0, key=key),
    "dbim_o2": lambda D, nfe, key: dbim(D, X_T_REP, nfe - 1, bridge=BRIDGE, order=2, key=key),
    "dbim_o3": lambda D, nfe, key: dbim(D, X_T_REP, nfe - 1, bridge=BRIDGE, order=3, key=key),
}


def mean_w2(samples):
    x = np.asarray(samples, np.float64).reshape(K, N, -1)
    return float(np.mean([DATA.w2(x[k], X_T[k]) for k in range(K)]))


@pytest.fixture(scope="module")
def w2_table():
    D = DATA.denoiser(BRIDGE)
    key = jax.random.key(7)  # common random numbers across NFE
    table = {name: {nfe: mean_w2(f(D, nfe, key)) for nfe in NFES} for name, f in SAMPLERS.items()}
    table["dbim"][100] = mean_w2(SAMPLERS["dbim"](D, 100, key))
    floor = np.mean([mean_w2(DATA.sample(jax.random.key(100 + r), X_T_REP)) for r in range(3)])
    return table, floor


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_w2_decreases_with_nfe(w2_table, name):
    table, _ = w2_table
    w = [table[name][nfe] for nfe in NFES]
    assert all(b < a for a, b in zip(w, w[1:])), (name, w)
    assert w[-1] < 0.6 * w[0], (name, w)


def test_dbim_beats_ddbm_at_low_nfe(w2_table):
    table, _ = w2_table
    for nfe in (5, 10, 20):
        assert table["dbim"][nfe] < table["ddbm"][nfe], (nfe, table["dbim"][nfe], table["ddbm"][nfe])


def test_dbim_reaches_monte_carlo_floor(w2_table):
    table, floor = w2_table
    assert table["dbim"][100] < 1.5 * floor, (table["dbim"][100], floor)


def test_pure_ode_without_booting_noise_collapses():
    D = DATA.denoiser(BRIDGE)
    x = dbim(D, X_T_REP, 19, bridge=BRIDGE, boot_noise=False).reshape(K, N, -1)
    assert float(jnp.max(jnp.std(x, axis=1))) < 1e-5
    with_noise = dbim(D, X_T_REP, 19, bridge=BRIDGE, key=jax.random.key(0)).reshape(K, N, -1)
    spread = np.sqrt(np.trace(DATA.S))
    assert float(jnp.mean(jnp.sqrt(jnp.sum(jnp.var(with_noise, axis=1), -1)))) > 0.8 * spread


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_dbim_step_preserves_bridge_marginal(eta):
    """x_s ~ q(x_s | x_0, x_T), one step with the true x_0 → x_t ~ q(x_t | x_0, x_T)."""
    n, s, t = 100_000, 0.7, 0.3
    x0, x_T = jnp.full((n, 1), 0.9), jnp.full((n, 1), -0.4)
    k1, k2 = jax.random.split(jax.random.key(3))
    x_s = BRIDGE.sample(x0, x_T, jnp.float32(s), jax.random.normal(k1, (n, 1)))
    x_t = dbim_step(BRIDGE, x_s, x0, x_T, s, t, eta=eta, z=jax.random.normal(k2, (n, 1)))
    a, b, c = BRIDGE.abc(np.float64(t))
    mean, std = a * -0.4 + b * 0.9, c
    assert abs(float(x_t.mean()) - mean) < 5 * std / np.sqrt(n)
    assert abs(float(x_t.std()) - std) < 5 * std / np.sqrt(2 * n) + 1e-4


def _count_calls(D):
    calls = []

    def counted(x, t, x_T):
        jax.debug.callback(lambda: calls.append(1))
        return D(x, t, x_T)

    return counted, calls


def test_nfe_counts():
    D, calls = _count_calls(DATA.denoiser(BRIDGE))
    x_T = X_T[:2]
    jax.block_until_ready(ddbm_heun(D, x_T, 4, bridge=BRIDGE, key=jax.random.key(0)))
    jax.effects_barrier()
    assert len(calls) == 3 * 4 - 1
    calls.clear()
    jax.block_until_ready(dbim(D, x_T, 6, bridge=BRIDGE, order=3, key=jax.random.key(0)))
    jax.effects_barrier()
    assert len(calls) == 6 + 1
    calls.clear()
    jax.block_until_ready(ddbm_heun(D, x_T, ddbm_grid(BRIDGE, 4)[:-1], bridge=BRIDGE, key=jax.random.key(0)))
    jax.effects_barrier()
    assert len(calls) == 3 * 3  # a grid ending at t_min > 0: Heun on every step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_nan_on_grids_touching_the_ends(dtype):
    """Grids from t_max = T − ε down to exactly 0, in float32 and float64, VP and VE."""
    with jax.enable_x64(dtype == "float64"):
        x_T = jnp.asarray(X_T, dtype)
        key = jax.random.key(0)
        for bridge, options in ((VPBridge(), dict(order=3)), (VEBridge(), dict(eta=0.5))):
            D = DATA.denoiser(bridge)
            to_zero = np.append(np.linspace(bridge.t_max, bridge.t_min, 6), 0.0)
            for out in (ddbm_heun(D, x_T, to_zero, bridge=bridge, key=key),
                        dbim(D, x_T, to_zero, bridge=bridge, key=key, **options)):
                assert out.dtype == jnp.dtype(dtype) and bool(jnp.all(jnp.isfinite(out)))


def test_jit_with_traced_grid():
    D = DATA.denoiser(BRIDGE)
    ts = jnp.asarray(dbim_grid(BRIDGE, 8), jnp.float32)
    f = jax.jit(lambda x_T, ts: dbim(D, x_T, ts, bridge=BRIDGE, order=2, boot_noise=False))
    np.testing.assert_allclose(f(X_T, ts), dbim(D, X_T, dbim_grid(BRIDGE, 8), bridge=BRIDGE, order=2,
                                                  boot_noise=False), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("to_zero", [True, False])
def test_ddbm_jit_with_traced_grid(to_zero):
    """A traced grid decides at run time whether the last step is Euler (to 0) or Heun (float64
    throughout, so the device's coefficients match the host's)."""
    D = DATA.denoiser(BRIDGE)
    grid = ddbm_grid(BRIDGE, 5) if to_zero else ddbm_grid(BRIDGE, 6)[:-1]
    with jax.enable_x64(True):
        x_T = jnp.asarray(X_T, jnp.float64)
        f = jax.jit(lambda x_T, ts: ddbm_heun(D, x_T, ts, bridge=BRIDGE, churn_step_ratio=0.0))
        expected = ddbm_heun(D, x_T, grid, bridge=BRIDGE, churn_step_ratio=0.0)
        np.testing.assert_allclose(f(x_T, jnp.asarray(grid)), expected, rtol=1e-9, atol=1e-10)


def _recording(calls):
    """A noise source of zeros that records (step, t, t_next) of every draw."""

    def noise(key, step, t, t_next, shape, dtype):
        jax.debug.callback(lambda *v: calls.append(tuple(np.asarray(v).tolist())), step, t, t_next)
        return jnp.zeros(shape, dtype)

    return noise


def test_every_draw_goes_through_the_noise_source():
    D, ts = DATA.denoiser(BRIDGE), ddbm_grid(BRIDGE, 4)
    calls = []
    ddbm_heun(D, X_T, ts, bridge=BRIDGE, churn_step_ratio=0.25, noise=_recording(calls))
    jax.effects_barrier()
    t_hat = ts[:-1] + 0.25 * np.diff(ts)
    np.testing.assert_allclose(np.array(sorted(calls)), np.stack([np.arange(4), ts[:-1], t_hat], 1), rtol=1e-6)
    calls.clear()
    ts = dbim_grid(BRIDGE, 5)
    dbim(D, X_T, ts, bridge=BRIDGE, eta=0.5, noise=_recording(calls))
    jax.effects_barrier()
    np.testing.assert_allclose(np.array(sorted(calls)), np.stack([np.arange(6), np.append(BRIDGE.T, ts[:-1]), ts], 1),
                               rtol=1e-6)


def test_noise_source_replaces_the_key():
    """Zero noise needs no key and gives the noiseless samplers; the default is ``gaussian``."""
    D = DATA.denoiser(BRIDGE)
    zeros = lambda key, step, t, t_next, shape, dtype: jnp.zeros(shape, dtype)
    np.testing.assert_allclose(dbim(D, X_T, 6, bridge=BRIDGE, eta=1.0, noise=zeros),
                               dbim(D, X_T, 6, bridge=BRIDGE, eta=1.0, boot_noise=False, noise=zeros), atol=1e-6)
    np.testing.assert_allclose(dbim(D, X_T, 6, bridge=BRIDGE, noise=zeros),
                               dbim(D, X_T, 6, bridge=BRIDGE, boot_noise=False), atol=1e-6)
    key = jax.random.key(5)
    for f in (lambda **kw: ddbm_heun(D, X_T, 4, bridge=BRIDGE, key=key, **kw),
              lambda **kw: dbim(D, X_T, 4, bridge=BRIDGE, eta=0.5, key=key, **kw)):
        np.testing.assert_array_equal(f(), f(noise=gaussian))
    tree = BrownianTreeNoise(0.0, BRIDGE.T)
    x = ddbm_heun(D, X_T_REP[:64], 4, bridge=BRIDGE, key=key, noise=tree)
    assert bool(jnp.all(jnp.isfinite(x))) and float(jnp.std(x)) > 0.1


@pytest.mark.parametrize("sampler", ["ddbm_heun", "ddbm_heun_to_t_min", "dbim"])
def test_return_trajectory(sampler):
    D, key = DATA.denoiser(BRIDGE), jax.random.key(0)
    fn, ts = {"ddbm_heun": (ddbm_heun, ddbm_grid(BRIDGE, 4)),
              "ddbm_heun_to_t_min": (ddbm_heun, ddbm_grid(BRIDGE, 5)[:-1]),
              "dbim": (dbim, dbim_grid(BRIDGE, 4))}[sampler]
    x, traj = fn(D, X_T, ts, bridge=BRIDGE, key=key, return_trajectory=True)
    assert traj.shape == (4, *X_T.shape)
    np.testing.assert_array_equal(traj[-1], x)
    np.testing.assert_array_equal(x, fn(D, X_T, ts, bridge=BRIDGE, key=key))
    assert float(jnp.max(jnp.abs(traj[0] - X_T))) > 0


def test_bad_input():
    D = DATA.denoiser(BRIDGE)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x_T has shape"):
        dbim(lambda x, t, x_T: x[:, :2], X_T, 4, bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match=r"ts must lie in \[0, T\)"):
        dbim(D, X_T, np.array([1.5, 0.5, 0.1]), bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match=r"ts must lie in \[0, T\)"):
        ddbm_heun(D, X_T, np.array([0.5, 0.1, -0.1]), bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match="ts must be strictly decreasing"):
        dbim(D, X_T, np.array([0.5, 0.6, 0.1]), bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match="ts must be strictly decreasing"):
        ddbm_heun(D, X_T, np.array([0.5, 0.5, 0.0]), bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match="eta must lie in"):
        dbim(D, X_T, 4, bridge=BRIDGE, eta=-0.1, key=key)
    with pytest.raises(ValueError, match="order must be"):
        dbim(D, X_T, 4, bridge=BRIDGE, order=4, key=key)
    with pytest.raises(ValueError, match="eta must be 0 for order"):
        dbim(D, X_T, 4, bridge=BRIDGE, order=2, eta=0.5, key=key)
    with pytest.raises(ValueError, match="key is required"):
        ddbm_heun(D, X_T, 4, bridge=BRIDGE)
    with pytest.raises(ValueError, match="key is required"):
        dbim(D, X_T, 4, bridge=BRIDGE)
    with pytest.raises(ValueError, match="key is required"):
        dbim(D, X_T, 4, bridge=BRIDGE, eta=0.5, boot_noise=False)
    ddbm_heun(D, X_T, 4, bridge=BRIDGE, churn_step_ratio=0.0)  # deterministic: no key needed
    dbim(D, X_T, 4, bridge=BRIDGE, boot_noise=False)
    with pytest.raises(ValueError, match="noise source returned shape"):
        dbim(D, X_T, 4, bridge=BRIDGE, noise=lambda key, step, t, tn, shape, dtype: jnp.zeros(shape[1:], dtype))
    with pytest.raises(ValueError, match="x_T must have a leading batch axis"):
        ddbm_heun(D, jnp.ones(()), 4, bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match="ts as a step count must be >= 1"):
        ddbm_heun(D, X_T, 0, bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match="ts must be a 1-D grid"):
        dbim(D, X_T, np.array([0.5]), bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match=r"ts must lie in \[0, T\)"):
        dbim(D, X_T, np.array([0.5, np.nan, 0.1]), bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match="x_T has shape"):
        ddbm_heun(lambda x, t, x_T: x[:, :2], X_T, 4, bridge=BRIDGE, key=key)
    with pytest.raises(ValueError, match="churn_step_ratio"):
        ddbm_heun(D, X_T, 4, bridge=BRIDGE, churn_step_ratio=1.0, key=key)


@pytest.mark.parametrize("sampler", ["dbim", "ddbm_heun"])
def test_nan_denoiser_or_source_raises(sampler):
    fn = {"dbim": dbim, "ddbm_heun": ddbm_heun}[sampler]
    x_T = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="non-finite"):
        fn(lambda x, t, xT: x * jnp.nan, x_T, 4, bridge=VPBridge(), key=jax.random.key(0))
    with pytest.raises(ValueError, match="non-finite"):
        fn(lambda x, t, xT: x, x_T * jnp.nan, 4, bridge=VPBridge(), key=jax.random.key(0))
    with pytest.raises(ValueError, match="non-finite"):  # t stays in [0, T) for the bridge's own checks
        fn(DATA.denoiser(BRIDGE), X_T.at[0, 0].set(jnp.nan), 4, bridge=BRIDGE, key=jax.random.key(0))
