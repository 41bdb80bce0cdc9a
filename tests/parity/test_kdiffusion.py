"""Parity with k-diffusion's ``sample_*`` (float64, same denoiser, initial x and noise draws).

Needs the extras in requirements-parity.txt (k-diffusion 0.1.1.post1 was used). Only
``k_diffusion/sampling.py`` is loaded, with a stand-in ``k_diffusion.utils``, because the
package ``__init__`` imports heavy training dependencies. Noise is injected on both sides
by replaying one fixed table of normal draws, call by call.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxdiff import samplers  # noqa: E402
from jaxdiff.data.digits import load_digits  # noqa: E402
from jaxdiff.denoisers import gaussian_denoiser, ideal_denoiser  # noqa: E402

STEPS, BATCH = 12, 4
TOL = 1e-12  # float64; the largest difference measured is 2e-14 (dpmpp_2m, euler_ancestral)


def _load_sampling():
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed (see requirements-parity.txt)")
    path = f"{spec.submodule_search_locations[0]}/sampling.py"
    try:
        open(path).close()
    except OSError:
        pytest.skip("k_diffusion/sampling.py is missing")
    pytest.importorskip("torchsde")
    pytest.importorskip("torchdiffeq")
    pytest.importorskip("scipy")
    pytest.importorskip("tqdm")
    pkg = types.ModuleType("_kd")
    pkg.__path__ = []
    utils = types.ModuleType("_kd.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    pkg.utils = utils
    saved = {k: sys.modules.get(k) for k in ("_kd", "_kd.utils")}
    sys.modules.update({"_kd": pkg, "_kd.utils": utils})
    try:
        module_spec = importlib.util.spec_from_file_location("_kd.sampling", path)
        sampling = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(sampling)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return sampling


@pytest.fixture(scope="module")
def kd():
    return _load_sampling()


@pytest.fixture(scope="module")
def setup():
    images, _ = load_digits("train")
    data = images[:16].reshape(16, -1).astype(np.float64)
    rng = np.random.default_rng(0)
    sigmas = np.concatenate([np.geomspace(10.0, 0.05, STEPS), [0.0]])
    x = rng.standard_normal((BATCH, 64)) * sigmas[0]
    table = rng.standard_normal((2 * STEPS, BATCH, 64))
    return data, sigmas, x, table


def torch_ideal(data):
    y = torch.from_numpy(data)

    def model(x, sigma):
        logits = (x @ y.T - 0.5 * (y * y).sum(1)) / sigma[:, None] ** 2
        return torch.softmax(logits, dim=1) @ y

    return model


def replay_noise(table):
    def noise(key, step, sigma, sigma_next, shape, dtype):
        return jnp.asarray(table, dtype)[step]

    return noise


def torch_replay(table):
    calls = iter(range(len(table)))
    return lambda *_: torch.from_numpy(table[next(calls)])


CASES = [
    ("euler", {}, None),
    ("heun", {}, None),
    ("dpm_2", {}, None),
    ("dpmpp_2m", {}, None),
    ("lms", {}, None),
    ("euler_ancestral", {"eta": 1.0}, "noise_sampler"),
    ("euler_ancestral", {"eta": 0.5, "s_noise": 0.9}, "noise_sampler"),
    ("dpmpp_2s_ancestral", {"eta": 1.0}, "noise_sampler"),
    ("dpmpp_sde", {"eta": 1.0}, "noise_sampler"),
    ("dpmpp_sde", {"eta": 0.7, "r": 0.4}, "noise_sampler"),
    ("dpmpp_2m_sde", {"eta": 1.0}, "noise_sampler"),
    ("dpmpp_2m_sde", {"eta": 0.5, "solver_type": "heun"}, "noise_sampler"),
    ("dpmpp_3m_sde", {"eta": 1.0}, "noise_sampler"),
    ("dpmpp_3m_sde", {"eta": 0.0}, "noise_sampler"),
]


def _run_both(kd_sampler, jax_sampler, setup, kd_kw, jax_kw):
    """Max abs difference over the whole trajectory: the final denoise at small σ snaps to a
    data point on both sides, so comparing only the output would hide errors."""
    data, sigmas, x, _ = setup
    seen = []
    ref = kd_sampler(
        torch_ideal(data), torch.from_numpy(x), torch.from_numpy(sigmas), disable=True,
        callback=lambda info: seen.append(info["x"].numpy().copy()), **kd_kw,
    )
    out, traj = jax_sampler(ideal_denoiser(data), jnp.asarray(x), jnp.asarray(sigmas), return_trajectory=True, **jax_kw)
    ref_traj = np.stack(seen[1:] + [ref.numpy()])
    assert np.abs(np.diff(ref_traj, axis=0)).max() > 1e-3  # the trajectory moves: not a trivial match
    return float(np.abs(np.asarray(traj) - ref_traj).max())


@pytest.mark.parametrize("name,options,noise_kw", CASES, ids=lambda v: str(v))
def test_parity(kd, setup, x64, name, options, noise_kw):
    table = setup[3]
    kd_kw, jax_kw = dict(options), dict(options)
    if noise_kw:
        kd_kw[noise_kw] = torch_replay(table)
        jax_kw["noise"] = replay_noise(table)
    err = _run_both(getattr(kd, f"sample_{name}"), getattr(samplers, name), setup, kd_kw, jax_kw)
    print(f"parity {name} {options}: max abs diff {err:.2e}")
    assert err < TOL, (name, err)


def test_parity_edm_churn(kd, setup, x64, monkeypatch):
    """``edm`` against ``sample_heun`` with churn, its ``randn_like`` call per step replayed. Its
    callback sees the churned state, so the final outputs are compared, under a linear (Gaussian)
    denoiser through which every earlier error reaches the output."""
    _, sigmas, x, table = setup
    calls = iter(range(len(table)))
    monkeypatch.setattr(torch, "randn_like", lambda t: torch.from_numpy(table[next(calls)]))
    mean, var = 0.3, 0.5
    opts = {"s_churn": 8.0, "s_tmin": 0.1, "s_tmax": 5.0, "s_noise": 1.003}
    ref = kd.sample_heun(
        lambda x, sigma: mean + var / (var + sigma[:, None] ** 2) * (x - mean),
        torch.from_numpy(x), torch.from_numpy(sigmas), disable=True, **opts,
    )
    denoiser = gaussian_denoiser(jnp.full((64,), mean), var=var)
    out = samplers.edm(denoiser, jnp.asarray(x), jnp.asarray(sigmas), noise=replay_noise(table), **opts)
    err = float(np.abs(np.asarray(out) - ref.numpy()).max())
    print(f"parity edm {opts}: max abs diff {err:.2e}")
    assert err < TOL, err
