"""Endpoint numerics: float32 and bfloat16 bridges, SDE marginals and samplers against float64.

The measurements live in ``experiments/bench/numerics.py`` (``python -m experiments.bench.numerics``
prints them; BENCHMARKS.md, "Reliability: endpoint numerics", quotes them); here the documented
tolerances are asserted. Time grids cover [t_min, T − ε] down to one ulp below T in each dtype.
Every error is also required to be finite: an inf error means a NaN or inf output.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import numerics

COEFFS = ("alpha", "alpha_bar", "rho2", "rho_bar2", "a", "b", "c", "c_skip", "c_out", "c_in", "c_noise")

# float32: coefficients to a few ulps; vector quantities (h-transform, scores, drifts) are limited
# near the ends by the cancellation x − ᾱ x_T (x − b x0_hat near 0) of the rounded inputs, relative
# error ≈ u |x| / |x − ᾱ x_T| ~ u / c_t, measured ≤ 2.3e-4 at T − 1 ulp and ≤ 2e-6 on [.01T, .99T].
F32_COEFF, F32_VEC, F32_VEC_INNER = 2e-6, 1e-3, 1e-5
# bfloat16 (u = 2^-8): coefficients measured ≤ 2.1e-2; vectors only bounded in the interior (≤ 0.28,
# conditioning of the bf16 inputs, see above), and finite everywhere.
BF16_COEFF, BF16_VEC_INNER = 5e-2, 0.5


@pytest.fixture(scope="module")
def bridge_errs():
    return numerics.bridge_errors()


@pytest.fixture(scope="module")
def sde_errs():
    return numerics.sde_errors()


@pytest.fixture(scope="module")
def sampler_errs():
    return numerics.sampler_errors()


def test_time_grid_reaches_both_ends():
    for dtype in (jnp.float32, jnp.bfloat16):
        t = numerics.time_grid(1e-4, 1.0, dtype)
        below_T = float(np.asarray(jnp.nextafter(jnp.asarray(1.0, dtype), jnp.asarray(0.0, dtype)), np.float64))
        assert t[0] <= 1e-4 and t[-1] == below_T and np.all(np.diff(t) > 0)
        assert np.all(np.asarray(jnp.asarray(t, dtype)).astype(np.float64) == t)  # representable


@pytest.mark.parametrize("bridge", ["VPBridge", "VEBridge"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bridge_coefficients(bridge_errs, bridge, dtype):
    errs = bridge_errs[(bridge, dtype)]
    print(bridge, dtype, {k: f"{v:.1e}" for k, v in errs.items() if k != "dtype"})
    assert errs["dtype"] == {dtype}, "bridge quantities must keep the dtype of t (regression: VP ρ̄² was float32)"
    assert all(math.isfinite(v) for k, v in errs.items() if k != "dtype"), errs
    tol = F32_COEFF if dtype == "float32" else BF16_COEFF
    assert max(errs[k] for k in COEFFS) <= tol, {k: errs[k] for k in COEFFS}
    inner = {k: v for k, v in errs.items() if k.endswith("[.01T,.99T]")}
    assert max(inner.values()) <= (F32_VEC_INNER if dtype == "float32" else BF16_VEC_INNER), inner
    if dtype == "float32":
        vec = {k: errs[k] for k in numerics.VECTOR}
        assert max(vec.values()) <= F32_VEC, vec


@pytest.mark.parametrize("bridge", ["VPBridge", "VEBridge"])
def test_reverse_sde_drift_has_no_cancellation_at_T(bridge_errs, bridge):
    """Regression: ∇log q − h was formed as a difference of two O(1/ρ̄²) terms (float32 relative error
    0.16 for VP, 0.06 for VE at T − 1 ulp); now in closed form, as accurate as the other drifts."""
    assert bridge_errs[(bridge, "float32")]["reverse_drift_sde"] <= 1e-4


@pytest.mark.parametrize("name", ["VPSDE", "SubVPSDE", "VESDE", "EDMSDE"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sde_marginals(sde_errs, name, dtype):
    errs = sde_errs[(name, dtype)]
    print(name, dtype, {k: f"{v:.1e}" for k, v in errs.items()})
    assert all(math.isfinite(v) for v in errs.values()), errs
    f32 = dtype == "float32"
    assert max(errs[k] for k in ("mean_scale", "std", "sigma")) <= (2e-6 if f32 else 6e-2), errs
    # t_from_sigma: relative for VP/sub-VP; VE's log(σ/σ_min) cancels near σ_min (condition number
    # 1/ln(σ/σ_min)), so there only the absolute error in t is bounded (relative 4.8e-4 in float32)
    T = numerics._sdes()[name].T
    assert errs["t_from_sigma_abs"] <= (1e-6 if f32 else 1e-2) * T, errs
    if name != "VESDE":
        assert errs["t_from_sigma"] <= (2e-6 if f32 else 2e-2), errs


SAMPLER_TOL = {  # (float32, bfloat16) relative RMS vs float64
    "euler": (1e-5, 2e-2), "heun": (1e-5, 2e-2), "dpmpp_2m": (1e-5, 2e-2), "edm (churn 40)": (1e-5, 2e-2),
    "ddim (to t = 0)": (1e-5, 2e-2),
    # the bridge samplers cast t into x's dtype for the denoiser (t_max = T − 1e-4 rounds to T in bf16)
    "dbim VP": (1e-5, 1e-1), "dbim VP order 3": (1e-5, 1e-1),
    # ddbm_heun: its first step from t_max multiplies x and x_T by drift coefficients ~1/(T − t) that
    # nearly cancel, so rounding is amplified (float32 4e-5; bfloat16 VP 0.26, see BENCHMARKS.md)
    "ddbm_heun VE": (1e-5, 2e-2), "ddbm_heun VP": (1e-5, 2e-2),
}


@pytest.mark.parametrize("name", sorted(SAMPLER_TOL))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_samplers(sampler_errs, name, dtype):
    err, out_dtype = sampler_errs[(name, dtype)]
    print(name, dtype, f"{err:.1e}", out_dtype)
    assert math.isfinite(err), "NaN or inf in the output (regression: bf16 ddim to t = 0 was NaN)"
    assert out_dtype == dtype  # samplers keep bfloat16, no silent upcast
    assert err <= SAMPLER_TOL[name][dtype == "bfloat16"]
