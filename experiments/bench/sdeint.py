r"""jaxdiff.sdeint against diffrax and torchsde: wall time after compilation and strong error.

    python -m experiments.bench.sdeint [--paths=10000] [--paths64=1000] [--steps=1000]

Problems (float32, t in [0, 1], Euler–Maruyama, the same step count everywhere):
  * 1-D OU ``dX = -θ X dt + σ dW`` (θ = 1, σ = 0.5, X0 = 1), ``--paths`` paths;
  * 64-D ``dX = (-X + tanh(X A)) dt + 0.3 (1 + 0.5 cos X) ⊙ dW`` (diagonal noise, fixed
    random A / 8), ``--paths64`` paths.
Rows marked "shared" consume the same Brownian increments, coarsened from a 4x finer
grid on which the reference is solved (SRA1 with Lévy areas for OU, Milstein for 64-D);
their strong error is ``mean over paths of RMS over components of |X_N - X_ref|``. The
jaxdiff tree row's reference is Euler–Maruyama on the same tree queried on an 8x finer
grid (so its error is understated by up to ~1/8). Rows with their own random numbers
report no error, except the SRA1 row: timed with its own draws on an 8x coarser grid,
its error is measured on the shared path coarsened to that grid. Times: best of
``--repeats`` runs after a warm-up (diffrax's VirtualBrownianTree and torchsde's
BrownianInterval: one run; torch needs no warm-up). Prints a markdown table.

``--work_precision`` adds, per problem, error-vs-time curves over ``--wp_steps``: each
library's Euler and its higher-order scheme for the problem (SRA1 / torchsde's SRK for the
additive-noise OU, Itô Milstein for 64-D), timed with its own noise (jaxdiff: a key;
diffrax: ``UnsafeBrownianPath``; torchsde: ``BrownianInterval``) and scored on the shared
path coarsened to the same grid. Saves a log-log plot per problem to ``--plot_dir``.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxdiff import sdeint as sde


def define_flags() -> None:
    flags.DEFINE_integer("paths", 10_000, "Paths of the 1-D OU problem.")
    flags.DEFINE_integer("paths64", 1_000, "Paths of the 64-D problem.")
    flags.DEFINE_integer("steps", 1_000, "Steps on [0, 1].")
    flags.DEFINE_integer("repeats", 3, "Timing repeats (best is reported).")
    flags.DEFINE_list("dims", ["1", "64"], "Which problems to run (1 and/or 64).")
    flags.DEFINE_bool("diffrax_tree", True, "Time diffrax's VirtualBrownianTree (slow).")
    flags.DEFINE_bool("work_precision", False, "Add error-vs-time curves over --wp_steps and a plot.")
    flags.DEFINE_list("wp_steps", ["125", "250", "500", "1000"], "Step counts of the work-precision curves.")
    flags.DEFINE_string("plot_dir", "docs/img", "Where the work-precision figures go (sdeint_work_precision_<d>d.png).")


FLAGS = flags.FLAGS

THETA, SIGMA, FINE = 1.0, 0.5, 4


def _time(fn, repeats, warmup=True):
    """Best of ``repeats`` calls after a warm-up call; one call if the warm-up took over 5 s."""
    if warmup:
        t = time.perf_counter()
        out = fn()
        if isinstance(out, jax.Array):
            out.block_until_ready()
        repeats = 1 if time.perf_counter() - t > 5 else repeats
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        if isinstance(out, jax.Array):
            out.block_until_ready()
        best = min(best, time.perf_counter() - t)
    return best


def _err(x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return float(np.sqrt(((x - ref) ** 2).reshape(x.shape[0], -1).mean(1)).mean())


def _problems(d):
    a = jax.random.normal(jax.random.key(7), (d, d)) / 8
    if d == 1:
        return (lambda x, t: -THETA * x), (lambda x, t: SIGMA * jnp.ones_like(x))
    return (lambda x, t: -x + jnp.tanh(x @ a)), (lambda x, t: 0.3 * (1 + 0.5 * jnp.cos(x)))


def _reference(key, f, g, x0, n, paths, d, levy):
    """Solve on a FINE-times finer grid, drawing noise in the scan; return X_ref, dW (n, paths, d), H."""
    h = 1.0 / (n * FINE)
    solver = sde.sra1 if levy else sde.milstein

    def coarse_step(x, k):
        z = jax.random.normal(jax.random.fold_in(key, k), (2, FINE, paths, d))
        dw, hh = jnp.sqrt(h) * z[0], jnp.sqrt(h / 12) * z[1]
        ts = k / n + h * jnp.arange(FINE + 1)
        for j in range(FINE):
            x = jax.vmap(lambda xi, wi, ai: solver.step(f, g, xi, ts[j], h, wi, ai))(x, dw[j], hh[j])
        _, dwc, hc = sde.coarsen(ts, dw, hh, factor=FINE)
        return x, (dwc[0], hc[0])

    x, (dw, hh) = jax.lax.scan(coarse_step, jnp.broadcast_to(x0, (paths, d)), jnp.arange(n))
    return x, dw, hh


def _row(name, fn, reps, ref=None, repeats_warmup=True):
    """``(name, seconds, strong error or None)`` for ``fn() -> X_N``."""
    seconds = _time(fn, reps, warmup=repeats_warmup)
    return name, seconds, None if ref is None else _err(fn(), ref)


def _jaxdiff_rows(f, g, x0, ts, dw, hh, ref, key, paths, d, reps):
    @functools.partial(jax.jit, static_argnums=0)
    def solve(solver, grid, *bm):
        return jax.vmap(lambda b: sde.sdeint(solver, f, g, x0, grid, b), in_axes=1)(bm if len(bm) > 1 else bm[0])

    em, keys = sde.euler_maruyama, jax.random.split(key, paths)
    rows = [_row("jaxdiff euler_maruyama, shared dW", lambda: solve(em, ts, dw), reps, ref)]
    if d == 1:
        rows.append(_row("jaxdiff sra1 (order 1.5), shared (dW, H)", lambda: solve(sde.sra1, ts, dw, hh), reps, ref))
    else:
        rows.append(_row("jaxdiff milstein, shared dW", lambda: solve(sde.milstein, ts, dw), reps, ref))
    up_front = jax.jit(lambda k: solve(em, ts, sde.increments(k, ts, (paths, d))))
    rows.append(_row("jaxdiff euler_maruyama, dW drawn up front in the same jit", lambda: up_front(key), reps))
    in_scan = jax.jit(jax.vmap(lambda k: sde.sdeint(em, f, g, x0, ts, k)))
    rows.append(_row("jaxdiff euler_maruyama, key: dW drawn inside the scan", lambda: in_scan(keys), reps))
    if d > 1:
        return rows
    # Work-precision: SRA1 on an 8x coarser grid, timed with its own draws.
    ts8, dw8, hh8 = sde.coarsen(ts, dw, hh, factor=8)
    own8 = jax.jit(jax.vmap(lambda k: sde.sdeint(sde.sra1, f, g, x0, ts8, k)))
    name = f"jaxdiff sra1, {ts8.shape[0] - 1} steps, key: (dW, H) drawn inside the scan"
    rows.append((name, _time(lambda: own8(keys), reps), _err(solve(sde.sra1, ts8, dw8, hh8), ref)))
    tol = 1.0 / 2 ** int(np.ceil(np.log2(ts.shape[0] - 1)))

    def tree_run(k, grid):
        bt = sde.VirtualBrownianTree(0.0, 1.0, k, shape=(paths, d), tol=tol)
        return solve(em, grid, bt.grid_increments(grid))

    tree_ref = jax.jit(tree_run)(key, jnp.linspace(0.0, 1.0, (ts.shape[0] - 1) * 8 + 1))
    run = jax.jit(tree_run)
    name = f"jaxdiff euler_maruyama, VirtualBrownianTree (tol 2^{int(np.log2(tol))})"
    rows.append(_row(name, lambda: run(key, ts), reps, tree_ref))
    return rows


def _diffrax_rows(f, g, x0, ts, dw, ref, key, paths, d, reps, with_tree):
    import diffrax as dfx
    import lineax as lx

    n = ts.shape[0] - 1

    def solve_one(bm):
        terms = dfx.MultiTerm(
            dfx.ODETerm(lambda t, y, a: f(y, t)),
            dfx.ControlTerm(lambda t, y, a: lx.DiagonalLinearOperator(g(y, t)), bm),
        )
        sol = dfx.diffeqsolve(
            terms, dfx.Euler(), 0.0, 1.0, None, x0, stepsize_controller=dfx.StepTo(ts=ts),
            saveat=dfx.SaveAt(t1=True), max_steps=n, adjoint=dfx.ForwardMode(),
        )
        return sol.ys[0]

    w = jnp.concatenate([jnp.zeros((1, paths, d)), jnp.cumsum(dw, 0)])
    shared = jax.jit(jax.vmap(lambda wi: solve_one(dfx.LinearInterpolation(ts=ts, ys=wi)), in_axes=1))
    rows = [("diffrax Euler, shared dW (LinearInterpolation)", _time(lambda: shared(w), reps), _err(shared(w), ref))]
    keys = jax.random.split(key, paths)
    unsafe = jax.jit(jax.vmap(lambda k: solve_one(dfx.UnsafeBrownianPath(shape=(d,), key=k))))
    rows.append(("diffrax Euler, UnsafeBrownianPath", _time(lambda: unsafe(keys), reps), None))
    if with_tree:
        tol = 1.0 / 2 ** int(np.ceil(np.log2(n)))
        tree = jax.jit(jax.vmap(lambda k: solve_one(dfx.VirtualBrownianTree(0.0, 1.0, tol=tol, shape=(d,), key=k))))
        rows.append(_row(f"diffrax Euler, VirtualBrownianTree (tol 2^{int(np.log2(tol))})", lambda: tree(keys), 1))
    return rows


def _work_precision(f, g, x0, dw, hh, ref, key, paths, d, reps, steps):
    """Curves ``{label: [(seconds, strong error), ...]}`` over the step counts ``steps``."""
    import diffrax as dfx
    import lineax as lx
    import torch
    import torchsde

    model, grid_bm = _torch_problem(d)
    n_fine = dw.shape[0]
    keys = jax.random.split(key, paths)
    high = ("sra1", dfx.SRA1(), "srk") if d == 1 else ("milstein", dfx.ItoMilstein(), "milstein")
    jsolvers = {"euler_maruyama": sde.euler_maruyama, high[0]: getattr(sde, high[0])}

    class GridPath(dfx.AbstractBrownianPath):
        """The shared increments (and Lévy areas) of one path, looked up by step."""

        dw: jax.Array
        hh: jax.Array
        levy_area: type = dfx.SpaceTimeLevyArea

        @property
        def t0(self):
            return 0.0

        @property
        def t1(self):
            return 1.0

        def evaluate(self, t0, t1=None, left=True, use_levy=False):
            k = jnp.clip(jnp.round(t0 * self.dw.shape[0]).astype(jnp.int32), 0, self.dw.shape[0] - 1)
            return dfx.SpaceTimeLevyArea(dt=t1 - t0, W=self.dw[k], H=self.hh[k]) if use_levy else self.dw[k]

    def dfx_solve(solver, bm, ts):
        diffusion = dfx.ControlTerm(lambda t, y, a: lx.DiagonalLinearOperator(g(y, t)), bm)
        terms = dfx.MultiTerm(dfx.ODETerm(lambda t, y, a: f(y, t)), diffusion)
        sol = dfx.diffeqsolve(terms, solver, 0.0, 1.0, None, x0, stepsize_controller=dfx.StepTo(ts=ts),
                              saveat=dfx.SaveAt(t1=True), max_steps=ts.shape[0] - 1, adjoint=dfx.ForwardMode())
        return sol.ys[0]

    y0 = torch.full((paths, d), float(np.asarray(x0).ravel()[0]))
    curves = {}
    for n in steps:
        factor = n_fine // n
        ts = jnp.linspace(0.0, 1.0, n + 1)
        _, dwc, hc = sde.coarsen(jnp.linspace(0.0, 1.0, n_fine + 1), dw, hh, factor=factor)
        for name, solver in jsolvers.items():
            own = jax.jit(jax.vmap(lambda k, s=solver: sde.sdeint(s, f, g, x0, ts, k)))
            bm = (dwc, hc) if solver.levy_area else (dwc,)
            shared = jax.jit(jax.vmap(lambda *b, s=solver: sde.sdeint(s, f, g, x0, ts, b if len(b) > 1 else b[0]),
                                      in_axes=1))
            curves.setdefault(f"jaxdiff {name}", []).append((_time(lambda: own(keys), reps), _err(shared(*bm), ref)))
        for name, solver in (("Euler", dfx.Euler()), (type(high[1]).__name__, high[1])):
            levy = dfx.SpaceTimeLevyArea if isinstance(solver, dfx.SRA1) else dfx.BrownianIncrement
            own = jax.jit(jax.vmap(lambda k, s=solver, lv=levy: dfx_solve(
                s, dfx.UnsafeBrownianPath(shape=(d,), key=k, levy_area=lv), ts)))
            shared = jax.jit(jax.vmap(lambda w, h, s=solver: dfx_solve(s, GridPath(w, h), ts), in_axes=1))
            curves.setdefault(f"diffrax {name}", []).append((_time(lambda: own(keys), reps), _err(shared(dwc, hc), ref)))
        h = 1.0 / n
        inc, u = torch.from_numpy(np.array(dwc)), torch.from_numpy(np.array(h * (0.5 * dwc + hc)))
        for method in ("euler", high[2]):
            levy = "space-time" if method == "srk" else "none"
            interval = lambda: torchsde.BrownianInterval(0.0, 1.0, size=(paths, d), levy_area_approximation=levy,  # noqa: E731
                                                         dtype=torch.float32)
            run = lambda bm: torchsde.sdeint(model, y0, torch.tensor([0.0, 1.0]), bm=bm, method=method,  # noqa: E731
                                             dt=h * (1 + 1e-5))[-1]
            with torch.no_grad():
                seconds = _time(lambda: run(interval()).numpy(), 1, warmup=False)
                err = _err(run(grid_bm(inc, u)).numpy(), ref)
            curves.setdefault(f"torchsde {method}", []).append((seconds, err))
    return curves


def _plot(title, curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, pts in curves.items():
        t, e = zip(*pts)
        style = "-o" if label.startswith("jaxdiff") else ("--s" if label.startswith("diffrax") else ":^")
        ax.loglog(t, e, style, label=label)
    ax.set(title=title, xlabel="wall time after compilation (s)", ylabel="strong error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _torch_problem(d):
    """``(model, grid_bm)``: the torchsde version of ``_problems(d)`` and ``grid_bm(inc, u=None)``, a
    torchsde Brownian motion answering each step of a grid on [0, 1] from shared increments ``inc``
    (n, paths, d) (and ``U = ∫(W - W_s) du`` per step when a solver asks for it)."""
    import torch
    from torchsde._brownian.brownian_base import BaseBrownian

    torch.set_num_threads(2)
    a = torch.from_numpy(np.array(jax.random.normal(jax.random.key(7), (d, d)) / 8))

    class SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return -THETA * y if d == 1 else -y + torch.tanh(y @ a)

        def g(self, t, y):
            return SIGMA * torch.ones_like(y) if d == 1 else 0.3 * (1 + 0.5 * torch.cos(y))

    class GridBM(BaseBrownian):
        def __init__(self, inc, u=None):
            self.inc, self.u = inc, u

        def __call__(self, ta, tb=None, return_U=False, return_A=False):
            k = min(int(round(float(ta) * self.inc.shape[0])), self.inc.shape[0] - 1)
            return (self.inc[k], self.u[k]) if return_U else self.inc[k]

        def __repr__(self):
            return "GridBM"

        dtype = property(lambda self: self.inc.dtype)
        device = property(lambda self: self.inc.device)
        shape = property(lambda self: self.inc.shape[1:])
        levy_area_approximation = property(lambda self: "none" if self.u is None else "space-time")

    return SDE(), GridBM


def _torchsde_rows(x0, n, dw, ref, paths, d, reps):
    import torch
    import torchsde

    model, grid_bm = _torch_problem(d)
    y0 = torch.full((paths, d), float(x0))
    span = torch.tensor([0.0, 1.0])
    inc = torch.from_numpy(np.array(dw))
    run = lambda bm: torchsde.sdeint(model, y0, span, bm=bm, method="euler", dt=(1 + 1e-5) / n)[-1]  # noqa: E731
    with torch.no_grad():
        rows = [_row("torchsde euler, shared dW", lambda: run(grid_bm(inc)).numpy(), reps, ref, repeats_warmup=False)]
        rows.append(_row("torchsde euler, BrownianInterval", lambda: run(None), 1, repeats_warmup=False))
    return rows


def main(_):
    n, reps = FLAGS.steps, FLAGS.repeats
    ts = jnp.linspace(0.0, 1.0, n + 1)
    table = []
    for d, paths in ((1, FLAGS.paths), (64, FLAGS.paths64)):
        if str(d) not in FLAGS.dims:
            continue
        f, g = _problems(d)
        x0 = jnp.ones(d)
        key = jax.random.key(d)
        ref, dw, hh = jax.jit(lambda k: _reference(k, f, g, x0, n, paths, d, d == 1))(key)
        rows = _jaxdiff_rows(f, g, x0, ts, dw, hh, ref, key, paths, d, reps)
        rows += _diffrax_rows(f, g, x0, ts, dw, ref, key, paths, d, reps, FLAGS.diffrax_tree and d == 1)
        rows += _torchsde_rows(1.0, n, dw, ref, paths, d, reps)
        table += [(f"{d}-D, {paths} x {n}", *r) for r in rows]
        if FLAGS.work_precision:
            steps = [int(k) for k in FLAGS.wp_steps]
            curves = _work_precision(f, g, x0, dw, hh, ref, key, paths, d, reps, steps)
            path = os.path.join(FLAGS.plot_dir, f"sdeint_work_precision_{d}d.png")
            _plot(f"{d}-D, {paths} paths, {', '.join(FLAGS.wp_steps)} steps", curves, path)
            print(f"\n{d}-D work-precision (steps {steps}): method: (seconds, strong error) per step count; saved {path}")
            for label, pts in curves.items():
                print(f"| {label} | " + " | ".join(f"{t:.3f} s, {e:.2e}" for t, e in pts) + " |")
    print("| problem | method | time (s) | strong error |")
    print("|---|---|---:|---:|")
    for prob, name, t, e in table:
        print(f"| {prob} | {name} | {t:.3f} | {'—' if e is None else f'{e:.2e}'} |")


if __name__ == "__main__":
    define_flags()
    app.run(main)
