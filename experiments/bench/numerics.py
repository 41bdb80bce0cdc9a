"""Endpoint numerics: bridges, SDE marginals and samplers in float32 / bfloat16 against float64.

    python -m experiments.bench.numerics

Every quantity is evaluated at the *same* inputs in each dtype (time grids are first rounded,
towards 0, into the low dtype, then upcast exactly for the float64 reference), so the figures
measure evaluation error only, not the rounding of the inputs. Time grids cover [t_min, T − ε]
densely, log-spaced near 0 and with T − ε·T for ε in {1e-2, 1e-3, 1e-4, 1e-5, 1e-7} plus the
last representable time below T (one ulp; T − 1e-7·T rounds down to it in bfloat16).

Error measures: scalar coefficients, max_t |q − q64| / |q64|; vector quantities (h-transform,
bridge score, reverse drift, sampler outputs), max_t ‖q − q64‖ / ‖q64‖ over the batch row (for
samplers: the RMS over the whole output, relative to the reference's RMS). ``tests/reliability/
test_numerics.py`` asserts the tolerances ``TOL`` on these same functions.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
EPS_REL = (1e-2, 1e-3, 1e-4, 1e-5, 1e-7)


# --------------------------------------------------------------------------- grids and errors


def _round_down(v, dtype) -> np.ndarray:
    """float64 ``v`` cast into ``dtype`` rounding towards 0 (v ≥ 0); returns the low-precision values
    as float64 (exact)."""
    lo = np.asarray(jnp.asarray(v, dtype)).astype(np.float64)
    above = lo > v
    if np.any(above):
        down = np.asarray(jnp.nextafter(jnp.asarray(lo[above], dtype), jnp.asarray(0, dtype))).astype(np.float64)
        lo[above] = down
    return lo


def time_grid(t_min: float, T: float, dtype, *, n: int = 48) -> np.ndarray:
    """Sorted unique times in [t_min, T) representable in ``dtype`` (as float64): t_min, a log ramp
    to T/2, a linear ramp over the middle, T − ε T for ``EPS_REL`` and the last ``dtype`` value below T."""
    targets = np.concatenate([
        [t_min],
        np.geomspace(t_min, 0.5 * T, n),
        np.linspace(0.05 * T, 0.95 * T, n),
        [T - e * T for e in EPS_REL],
    ])
    t = _round_down(targets, dtype)
    ulp_below = float(jnp.nextafter(jnp.asarray(T, dtype), jnp.asarray(0, dtype)).astype(jnp.float32))
    t = np.unique(np.append(t[(t >= _round_down(np.array([t_min]), dtype)[0]) & (t < T)], ulp_below))
    return t


def rel_err(lo, ref) -> float:
    """max |lo − ref| / |ref| (elementwise), with |ref| = 0 counted as an absolute error."""
    lo, ref = np.asarray(lo, np.float64), np.asarray(ref, np.float64)
    if not np.all(np.isfinite(lo)):
        return math.inf
    den = np.where(ref == 0, 1.0, np.abs(ref))
    return float(np.max(np.abs(lo - ref) / den))


def row_rel_err(lo, ref) -> float:
    """max over rows of ‖lo − ref‖ / ‖ref‖ (rows: leading axis)."""
    lo, ref = np.asarray(lo, np.float64), np.asarray(ref, np.float64)
    if not np.all(np.isfinite(lo)):
        return math.inf
    lo, ref = lo.reshape(lo.shape[0], -1), ref.reshape(ref.shape[0], -1)
    return float(np.max(np.linalg.norm(lo - ref, axis=1) / np.linalg.norm(ref, axis=1)))


def _f64(fn, *args):
    """Evaluate ``fn`` on float64 JAX copies of NumPy ``args`` with x64 enabled; results as NumPy."""
    with jax.enable_x64(True):
        out = fn(*(jnp.asarray(a, jnp.float64) for a in args))
        return jax.tree.map(lambda v: np.asarray(v, np.float64), out)


def _lo(fn, dtype, *args):
    out = fn(*(jnp.asarray(a, dtype) for a in args))
    return jax.tree.map(lambda v: np.asarray(jnp.asarray(v, jnp.float32), np.float64), out)


# --------------------------------------------------------------------------- bridges


def _bridges():
    from jaxdiff.bridges.process import VEBridge, VPBridge

    return {"VPBridge": VPBridge(), "VEBridge": VEBridge()}


def _bridge_quantities(bridge, precond):
    def fn(t, x, x_T, x0):
        alpha, alpha_bar, rho2, rho_bar2 = bridge.alpha_rho(t)
        a, b, c = bridge.abc(t)
        c_skip, c_out, c_in, c_noise = precond.coefficients(bridge, t)
        return {
            "alpha": alpha, "alpha_bar": alpha_bar, "rho2": rho2, "rho_bar2": rho_bar2,
            "a": a, "b": b, "c": c,
            "c_skip": c_skip, "c_out": c_out, "c_in": c_in, "c_noise": c_noise,
            "h_transform": bridge.h_transform(x, x_T, t),
            "bridge_score": bridge.bridge_score(x, x_T, x0, t),
            "reverse_drift_ode": bridge.reverse_drift(x, x_T, x0, t, ode=True),
            "reverse_drift_sde": bridge.reverse_drift(x, x_T, x0, t, ode=False),
        }

    return fn


VECTOR = ("h_transform", "bridge_score", "reverse_drift_ode", "reverse_drift_sde")


def bridge_errors(d: int = 4, seed: int = 0) -> dict:
    """{(bridge, dtype): {quantity: max rel err}}; also checks finiteness (inf error if not)."""
    from jaxdiff.bridges.precond import DDBMPrecond

    precond = DDBMPrecond()
    out = {}
    for name, bridge in _bridges().items():
        fn = _bridge_quantities(bridge, precond)
        for dname, dtype in DTYPES.items():
            t = time_grid(bridge.t_min, bridge.T, dtype)
            rng = np.random.default_rng(seed)
            # x_t drawn from the bridge marginal at each t (x0, x_T ~ N(0, 0.5²)), so its scale is realistic
            x0, x_T, z = (0.5 * rng.normal(size=(t.size, d)) for _ in range(3))
            a, b, c = (np.asarray(v)[:, None] for v in bridge.abc(t))
            x = a * x_T + b * x0 + c * z
            x, x_T, x0 = (_round_down_signed(v, dtype) for v in (x, x_T, x0))
            lo = _lo(fn, dtype, t, x, x_T, x0)
            ref = _f64(fn, t, x, x_T, x0)
            errs = {k: (row_rel_err if k in VECTOR else rel_err)(lo[k], ref[k]) for k in ref}
            inner = (t >= 0.01 * bridge.T) & (t <= 0.99 * bridge.T)
            errs.update({f"{k} [.01T,.99T]": row_rel_err(lo[k][inner], ref[k][inner]) for k in VECTOR})
            errs["dtype"] = {str(np.dtype(v.dtype)) for v in jax.tree.leaves(fn(*(jnp.asarray(v, dtype) for v in
                                                                                 (t[:2], x[:2], x_T[:2], x0[:2]))))}
            out[(name, dname)] = errs
    return out


def _round_down_signed(v, dtype):
    return np.asarray(jnp.asarray(v, dtype)).astype(np.float64)


# --------------------------------------------------------------------------- SDE marginals


def _sdes():
    from jaxdiff import sde

    return {"VPSDE": sde.VPSDE(), "SubVPSDE": sde.SubVPSDE(), "VESDE": sde.VESDE(), "EDMSDE": sde.EDMSDE()}


def sde_errors() -> dict:
    """{(sde, dtype): {quantity: max rel err}} for mean scale, std, sigma(t) on [eps, T − ε] (and t = 0
    where defined) and t_from_sigma at σ = sigma(t) (rounded into the dtype); ``t_from_sigma_abs``
    is the absolute error in t, max over the grid."""
    out = {}
    for name, proc in _sdes().items():

        def fwd(t, proc=proc):
            s, std = proc.marginal(t)
            return {"mean_scale": s, "std": std, "sigma": proc.sigma(t)}

        def inv(sig, proc=proc):
            return proc.t_from_sigma(sig)

        for dname, dtype in DTYPES.items():
            t = time_grid(proc.eps, proc.T, dtype)
            lo, ref = _lo(fwd, dtype, t), _f64(fwd, t)
            errs = {k: rel_err(lo[k], ref[k]) for k in ref}
            sig = _round_down_signed(ref["sigma"], dtype)
            ti_lo, ti_ref = _lo(inv, dtype, sig), _f64(inv, sig)
            errs["t_from_sigma"] = rel_err(ti_lo, ti_ref)
            errs["t_from_sigma_abs"] = float(np.max(np.abs(ti_lo - ti_ref)))
            out[(name, dname)] = errs
    return out


# --------------------------------------------------------------------------- samplers


def _fixed_noise(seed: int = 1):
    """A ``jaxdiff.samplers.noise`` source drawing float32 normals cast to the dtype: the same draws
    in every dtype (JAX's normals differ between float32 and float64 for one key)."""

    def noise(key, step, sigma, sigma_next, shape, dtype):
        return jax.random.normal(jax.random.fold_in(jax.random.key(seed), step), shape, jnp.float32).astype(dtype)

    return noise


def _sampler_runs(n_steps: int = 18):
    from jaxdiff import schedules
    from jaxdiff.bridges import samplers as bs
    from jaxdiff.bridges.gaussian import GaussianBridgeData
    from jaxdiff.bridges.process import VEBridge, VPBridge
    from jaxdiff.denoisers import gaussian_denoiser
    from jaxdiff.samplers import ddim, dpmpp_2m, edm, euler, heun, vp_sigmas

    d = 8
    rng = np.random.default_rng(0)
    mean = rng.normal(0.0, 1.0, d)
    var = rng.uniform(0.05, 1.0, d)
    sigmas = np.asarray(schedules.karras(n_steps, 0.002, 80.0, dtype=jnp.float32), np.float64)
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1.0 - betas)
    timesteps_to0 = np.linspace(999, 0, n_steps).round().astype(np.int32)  # ends at t = 0 (abar ≈ 1 − 1e-4)
    gdata = GaussianBridgeData.random(d=d, seed=0)

    def edm_run(D, x, s):
        return edm(D, x, s, key=jax.random.key(0), noise=_fixed_noise(), s_churn=40.0, s_tmin=0.05, s_tmax=50.0)

    def k_sampler(fn):
        def run(dtype, x0):
            D = gaussian_denoiser(jnp.asarray(mean, dtype), var=jnp.asarray(var, dtype))
            return fn(D, jnp.asarray(80.0 * x0, dtype), jnp.asarray(sigmas, dtype))
        return run

    def ddim_run(ts):
        def run(dtype, x0):
            D = gaussian_denoiser(jnp.asarray(mean, dtype), var=jnp.asarray(var, dtype))
            # the grid stays float32 (float64 for the reference): the sampler casts it to x's dtype
            ac = jnp.asarray(abar, jnp.float64 if dtype == jnp.float64 else jnp.float32)
            x = jnp.asarray(x0 / np.sqrt(abar[ts[0]]), dtype)  # DDPM's x_T ~ N(0, I) in the EDM variable
            return ddim(D, x, vp_sigmas(ac, jnp.asarray(ts, jnp.int32)))
        return run

    def bridge_run(fn, bridge, ts):
        def run(dtype, x0):
            x_T = jnp.asarray(x0[:, :d], dtype)
            return fn(gdata.denoiser(bridge), x_T, ts, bridge=bridge)
        return run

    vp, ve = VPBridge(), VEBridge()
    return {
        "euler": k_sampler(euler),
        "heun": k_sampler(heun),
        "dpmpp_2m": k_sampler(dpmpp_2m),
        "edm (churn 40)": k_sampler(edm_run),
        "ddim (to t = 0)": ddim_run(timesteps_to0),
        "dbim VP": bridge_run(lambda D, x, ts, bridge: bs.dbim(D, x, ts, bridge=bridge, boot_noise=False),
                              vp, bs.dbim_grid(vp, n_steps)),
        "dbim VP order 3": bridge_run(lambda D, x, ts, bridge: bs.dbim(D, x, ts, bridge=bridge, order=3,
                                                                       boot_noise=False),
                                      vp, bs.cosine_grid(vp, n_steps)),
        "ddbm_heun VE": bridge_run(lambda D, x, ts, bridge: bs.ddbm_heun(D, x, ts, bridge=bridge,
                                                                         churn_step_ratio=0.0),
                                   ve, bs.ddbm_grid(ve, n_steps)),
        "ddbm_heun VP": bridge_run(lambda D, x, ts, bridge: bs.ddbm_heun(D, x, ts, bridge=bridge,
                                                                         churn_step_ratio=0.0),
                                   vp, bs.ddbm_grid(vp, n_steps)),
    }


def sampler_errors(batch: int = 16, seed: int = 0) -> dict:
    """{(sampler, dtype): (relative RMS error vs float64, output dtype)}; inf when not finite.

    Inputs are normals rounded into bfloat16 (× 80 for the σ-grid samplers), the same in every
    dtype; the float64 reference runs with a float64 schedule.
    Noise (edm's churn) is drawn in float32 and cast, the same in every dtype."""
    # bfloat16-representable inputs, so one float64 reference serves both dtypes
    x0 = _round_down_signed(np.asarray(jax.random.normal(jax.random.key(seed), (batch, 8), jnp.float32)),
                            jnp.bfloat16)
    out = {}
    for name, run in _sampler_runs().items():
        with jax.enable_x64(True):
            ref = np.asarray(run(jnp.float64, x0), np.float64)
        for dname, dtype in DTYPES.items():
            y = run(dtype, x0)
            yv = np.asarray(jnp.asarray(y, jnp.float32), np.float64)
            err = math.inf if not np.all(np.isfinite(yv)) else float(
                np.sqrt(np.mean((yv - ref) ** 2)) / np.sqrt(np.mean(ref**2)))
            out[(name, dname)] = (err, str(y.dtype))
    return out


# --------------------------------------------------------------------------- report


def main() -> None:
    np.set_printoptions(precision=2)
    print("## bridges: max relative error vs float64 on [t_min, T − ulp]")
    for (name, dname), errs in bridge_errors().items():
        print(f"{name:9s} {dname:9s} " + "  ".join(f"{k}={v:.1e}" for k, v in errs.items() if k != "dtype")
              + f"  (outputs {sorted(errs['dtype'])})")
    print("\n## SDE marginals: max relative error vs float64 on [eps, T − ulp]")
    for (name, dname), errs in sde_errors().items():
        print(f"{name:9s} {dname:9s} " + "  ".join(f"{k}={v:.1e}" for k, v in errs.items()))
    print("\n## samplers: relative RMS error of the output vs float64")
    for (name, dname), (err, odt) in sampler_errors().items():
        print(f"{name:20s} {dname:9s} {err:.1e}  (output {odt})")


if __name__ == "__main__":
    main()
