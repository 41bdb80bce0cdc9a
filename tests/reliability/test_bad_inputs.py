"""Bad-input suite: every case is called eagerly with one bad argument and
must raise a ValueError whose message names that argument, except the ``test_documented_*`` cases,
whose bad input has a documented finite answer. Tiny shapes throughout."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxdiff.samplers
from jaxdiff import likelihood, precond, schedules, sde
from jaxdiff.bridges import precond as bpre
from jaxdiff.bridges import process as bproc
from jaxdiff.bridges import samplers as bsamp
from jaxdiff.data.pipeline import EpochSampler
from jaxdiff.flow import corr
from jaxdiff.graphs import discrete, molecules
from jaxdiff.graphs import metrics as graph_metrics
from jaxdiff.graphs.graph import Graph
from jaxdiff.graphs.nets import GraphDiT
from jaxdiff.latent import vae
from jaxdiff.metrics import distances, frechet
import importlib
import re

from jaxdiff.samplers import ode, stochastic
from jaxdiff.sdeint import brownian, solvers
from jaxdiff.train.optim import OptimConfig

ddpm = importlib.import_module("jaxdiff.samplers.ddpm")  # the package re-exports a ddpm function
HYP = settings(max_examples=25, deadline=None)
KEY = jax.random.key(0)
X = jnp.ones((2, 3))
GOOD_SIGMAS = jnp.array([2.0, 1.0, 0.5, 0.0])


def graph_dit_init(n=4, numeric=None, categorical=None):
    """Initialise a tiny GraphDiT (4 node slots, one numeric and one 3-way categorical condition)."""
    model = GraphDiT(num_node_classes=4, num_edge_classes=4, max_nodes=4, hidden=16, depth=1, num_heads=2,
                     num_numeric=1, categorical_sizes=(3,))
    graph = Graph(jnp.zeros((1, n, 4)), jnp.zeros((1, n, n, 4)), jnp.ones((1, n), bool))
    numeric = jnp.zeros((1, 1)) if numeric is None else numeric
    categorical = jnp.zeros((1, 1), jnp.int32) if categorical is None else categorical
    return model.init(KEY, graph, jnp.zeros(1), numeric, categorical)


def ident(x, sigma, **cond):
    return x * 0.5


def wrong_shape(x, sigma, **cond):
    return jnp.zeros(x.shape[:-1] + (x.shape[-1] + 1,))


def bridge_den(x, t, x_T, **cond):
    return x * 0.5


def bridge_wrong_shape(x, t, x_T, **cond):
    return jnp.zeros((x.shape[0], x.shape[1] + 1))


SAMPLERS = {name: functools.partial(lambda spec, d, s, **kw: spec.fn(d, X, s, key=KEY, **kw), spec)
            for name, spec in jaxdiff.samplers.REGISTRY.items()}  # every registered sampler

# --------------------------------------------------------------------------- table

CASES = [
    # schedules
    ("schedules.karras-n0", lambda: schedules.karras(0, 0.1, 10.0), "n"),
    ("schedules.karras-sigma_min-neg", lambda: schedules.karras(5, -0.1, 10.0), "sigma_min"),
    ("schedules.karras-sigma_min>max", lambda: schedules.karras(5, 20.0, 10.0), "sigma_min"),
    ("schedules.karras-rho0", lambda: schedules.karras(5, 0.1, 10.0, rho=0.0), "rho"),
    ("schedules.karras-sigma_max-inf", lambda: schedules.karras(5, 0.1, np.inf), "sigma_max"),
    ("schedules.karras-sigma_min-nan", lambda: schedules.karras(5, np.nan, 10.0), "sigma_min"),
    ("schedules.exponential-sigma_min0", lambda: schedules.exponential(5, 0.0, 10.0), "sigma_min"),
    ("schedules.vp-eps_s-1", lambda: schedules.vp(5, eps_s=1.0), "eps_s"),
    ("schedules.vp-beta_min-neg", lambda: schedules.vp(5, beta_min=-1.0), "beta_min"),
    ("schedules.cosine-s0", lambda: schedules.cosine(5, s=0.0), "s"),
    ("schedules.cosine-n-float", lambda: schedules.cosine(2.5), "n"),
    ("schedules.linear_beta-beta_end>1", lambda: schedules.linear_beta(10, 1e-4, 1.5), "beta_end"),
    ("schedules.sigma_from_alpha_bar-0", lambda: schedules.sigma_from_alpha_bar(jnp.array([0.0, 0.5])), "alpha_bar"),
    ("schedules.alpha_bar_from_sigma-neg", lambda: schedules.alpha_bar_from_sigma(jnp.array([-1.0])), "sigma"),
    # sde
    ("sde.VPSDE.marginal-t>T", lambda: sde.VPSDE().marginal(jnp.array(2.0)), "t"),
    ("sde.VPSDE.sigma-t<0", lambda: sde.VPSDE().sigma(jnp.array(-0.1)), "t"),
    ("sde.VESDE.marginal-t-nan", lambda: sde.VESDE().marginal(jnp.array(np.nan)), "t"),
    ("sde.VPSDE-beta_min0", lambda: sde.VPSDE(beta_min=0.0), "beta_min"),
    ("sde.VESDE-sigma_max<min", lambda: sde.VESDE(sigma_min=1.0, sigma_max=0.5), "sigma_max"),
    ("sde.VPSDE.prior_logp-scalar", lambda: sde.VPSDE().prior_logp(jnp.array(1.0)), "z"),
    ("sde.VPSDE.t_from_sigma-neg", lambda: sde.VPSDE().t_from_sigma(jnp.array([1.0, -0.5])), "sigma"),
    ("sde.VESDE.t_from_sigma-0", lambda: sde.VESDE().t_from_sigma(0.0), "sigma"),
    ("sde.EDMSDE.t_from_sigma-nan", lambda: sde.EDMSDE().t_from_sigma(jnp.array(np.nan)), "sigma"),
    # precond
    ("precond.EDM-sigma0", lambda: precond.EDMPrecond().coefficients(jnp.array([0.0, 1.0])), "sigma"),
    ("precond.EDM-sigma-neg", lambda: precond.EDMPrecond().coefficients(jnp.array([-1.0])), "sigma"),
    ("precond.VP-sigma-nan", lambda: precond.VPPrecond().coefficients(jnp.array([np.nan])), "sigma"),
    ("precond.VP.sigma_inv-neg", lambda: precond.VPPrecond().sigma_inv(jnp.array(-1.0)), "sigma"),
    ("precond.VE-sigma0", lambda: precond.VEPrecond().coefficients(jnp.array([0.0])), "sigma"),
    ("precond.iDDPM-sigma-neg", lambda: precond.IDDPMPrecond(M=10).coefficients(jnp.array([-0.5])), "sigma"),
    ("precond.denoiser-sigma-nan",
     lambda: precond.denoiser(lambda p, x, c, key=None: x, None, precond.EDMPrecond())(X, np.nan), "sigma"),
    # samplers (not covered by the hypothesis properties below)
    ("samplers.euler_ancestral-eta<0", lambda: SAMPLERS["euler_ancestral"](ident, GOOD_SIGMAS, eta=-0.5), "eta"),
    ("samplers.get-unknown-name", lambda: jaxdiff.samplers.get("hune"), "sampler"),
    ("samplers.check_options-unknown", lambda: jaxdiff.samplers.check_options("heun", {"eta": 1.0}), "eta"),
    ("samplers.euler_ancestral-no-key",
     lambda: stochastic.euler_ancestral(ident, X, GOOD_SIGMAS), "key"),
    ("samplers.lms-order0", lambda: ode.lms(ident, X, GOOD_SIGMAS, order=0), "order"),
    ("samplers.dpmpp_sde-r0", lambda: stochastic.dpmpp_sde(ident, X, GOOD_SIGMAS, key=KEY, r=0.0), "r"),
    ("samplers.ddim-eta<0",
     lambda: ddpm.ddim(ident, X, ddpm.vp_sigmas(jnp.linspace(0.99, 0.1, 10), jnp.array([9, 5, 0])), eta=-0.1), "eta"),
    ("samplers.vp_sigmas-timesteps-increasing",
     lambda: ddpm.vp_sigmas(jnp.linspace(0.99, 0.1, 10), jnp.array([0, 5, 9])), "timesteps"),
    ("samplers.vp_sigmas-timesteps-out-of-range",
     lambda: ddpm.vp_sigmas(jnp.linspace(0.99, 0.1, 10), jnp.array([20, 5, 0])), "timesteps"),
    ("samplers.ddpm-no-key",
     lambda: ddpm.ddpm(ident, X, ddpm.vp_sigmas(jnp.linspace(0.99, 0.1, 10), jnp.array([9, 0])), key=None), "key"),
    # bridges
    ("bridges.dbim-eta<0", lambda: bsamp.dbim(bridge_den, X, 4, bridge=bproc.VPBridge(), eta=-0.1), "eta"),
    ("bridges.dbim-order4", lambda: bsamp.dbim(bridge_den, X, 4, bridge=bproc.VPBridge(), order=4, key=KEY), "order"),
    ("bridges.dbim-ts-beyond-T",
     lambda: bsamp.dbim(bridge_den, X, jnp.array([1.5, 0.5, 0.0]), bridge=bproc.VPBridge(), key=KEY), "ts"),
    ("bridges.dbim-ts-increasing",
     lambda: bsamp.dbim(bridge_den, X, jnp.array([0.0, 0.5, 0.9]), bridge=bproc.VPBridge(), key=KEY), "ts"),
    ("bridges.dbim-x_T-no-batch",
     lambda: bsamp.dbim(bridge_den, jnp.ones(()), 4, bridge=bproc.VPBridge(), key=KEY), "x_T"),
    ("bridges.dbim-denoiser-wrong-shape",
     lambda: bsamp.dbim(bridge_wrong_shape, X, 4, bridge=bproc.VPBridge(), key=KEY), "shape"),
    ("bridges.ddbm_heun-churn>=1",
     lambda: bsamp.ddbm_heun(bridge_den, X, 4, bridge=bproc.VPBridge(), churn_step_ratio=1.0, key=KEY),
     "churn_step_ratio"),
    ("bridges.ddbm_heun-ts-negative",
     lambda: bsamp.ddbm_heun(bridge_den, X, jnp.array([0.5, -0.1]), bridge=bproc.VPBridge(), key=KEY), "ts"),
    ("bridges.VPBridge.abc-t>T", lambda: bproc.VPBridge().abc(jnp.array(2.0)), "t"),
    ("bridges.VPBridge.abc-t<0", lambda: bproc.VPBridge().abc(jnp.array([-0.1, 0.5])), "t"),
    ("bridges.VEBridge.h_transform-t>T", lambda: bproc.VEBridge().h_transform(X, X, jnp.array(90.0)), "t"),
    ("bridges.DDBMPrecond-t0", lambda: bpre.DDBMPrecond().coefficients(bproc.VPBridge(), jnp.array([0.0])), "t"),
    ("bridges.DDBMPrecond-t-nan",
     lambda: bpre.DDBMPrecond().coefficients(bproc.VPBridge(), jnp.array([np.nan])), "t"),
    # flow.corr
    ("corr.volume-channel-mismatch",
     lambda: corr.correlation_volume(jnp.ones((1, 4, 4, 3)), jnp.ones((1, 4, 4, 5))), "f1 and f2"),
    ("corr.volume-f1-3d", lambda: corr.correlation_volume(jnp.ones((4, 4, 3)), jnp.ones((1, 4, 4, 3))), "f1"),
    ("corr.pyramid-num_levels0",
     lambda: corr.correlation_pyramid(jnp.ones((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3)), num_levels=0), "num_levels"),
    ("corr.pyramid-too-many-levels",
     lambda: corr.correlation_pyramid(jnp.ones((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3)), num_levels=6), "num_levels"),
    ("corr.lookup-coords-shape",
     lambda: corr.lookup(corr.correlation_pyramid(jnp.ones((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3)), 1),
                         jnp.zeros((1, 4, 4, 3)), radius=1), "coords"),
    ("corr.lookup-coords-nan",
     lambda: corr.lookup(corr.correlation_pyramid(jnp.ones((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3)), 1),
                         jnp.full((1, 4, 4, 2), jnp.nan), radius=1), "coords"),
    ("corr.lookup-radius<0",
     lambda: corr.lookup(corr.correlation_pyramid(jnp.ones((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3)), 1),
                         jnp.zeros((1, 4, 4, 2)), radius=-1), "radius"),
    ("corr.lookup-empty-pyramid", lambda: corr.lookup([], jnp.zeros((1, 4, 4, 2))), "pyramid"),
    ("corr.bilinear_sample-image-3d",
     lambda: corr.bilinear_sample(jnp.ones((4, 4, 3)), jnp.zeros((1, 4, 4, 2))), "image"),
    # sdeint
    ("sdeint.ts-decreasing",
     lambda: solvers.sdeint(solvers.euler_maruyama, lambda x, t: -x, lambda x, t: x, jnp.ones(3),
                            jnp.array([0.0, 0.5, 0.2]), KEY), "ts"),
    ("sdeint.f-wrong-shape",
     lambda: solvers.sdeint(solvers.euler_maruyama, lambda x, t: jnp.ones(4), lambda x, t: x, jnp.ones(3),
                            jnp.linspace(0.0, 1.0, 5), KEY), "f"),
    ("sdeint.g-wrong-shape",
     lambda: solvers.sdeint(solvers.euler_maruyama, lambda x, t: -x, lambda x, t: jnp.ones((3, 2)), jnp.ones(3),
                            jnp.linspace(0.0, 1.0, 5), KEY), "g"),
    ("sdeint.bm-wrong-steps",
     lambda: solvers.sdeint(solvers.euler_maruyama, lambda x, t: -x, lambda x, t: x, jnp.ones(3),
                            jnp.linspace(0.0, 1.0, 5), jnp.zeros((3, 3))), "bm"),
    ("sdeint.time_grid-dt0", lambda: solvers.time_grid(0.0, 1.0, 0.0), "dt"),
    ("sdeint.x0-nan",
     lambda: solvers.sdeint(solvers.euler_maruyama, lambda x, t: -x, lambda x, t: x, jnp.array([1.0, np.nan]),
                            jnp.linspace(0.0, 1.0, 5), KEY), "x0"),
    ("sdeint.bm-nan",
     lambda: solvers.sdeint(solvers.euler_maruyama, lambda x, t: -x, lambda x, t: x, jnp.ones(3),
                            jnp.linspace(0.0, 1.0, 5), jnp.full((4, 3), np.nan)), "bm"),
    ("sdeint.ts-inf",
     lambda: solvers.sdeint(solvers.euler_maruyama, lambda x, t: -x, lambda x, t: x, jnp.ones(3),
                            jnp.array([0.0, 1.0, np.inf]), KEY), "ts"),
    ("sdeint.f-returns-nan",
     lambda: solvers.sdeint(solvers.euler_maruyama, lambda x, t: x * np.nan, lambda x, t: x, jnp.ones(3),
                            jnp.linspace(0.0, 1.0, 5), KEY), "f"),
    ("sdeint.VirtualBrownianTree-t1<=t0",
     lambda: brownian.VirtualBrownianTree(t0=1.0, t1=0.0, key=KEY, depth=4), "t1"),
    # latent
    ("latent.Gaussian-variance0", lambda: vae.Gaussian(variance=0.0), "variance"),
    ("latent.Gaussian-variance-neg", lambda: vae.Gaussian(variance=-1.0), "variance"),
    ("latent.gaussian_kl-shape-mismatch", lambda: vae.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 4))), "log_var"),
    ("latent.reparameterize-shape-mismatch",
     lambda: vae.reparameterize(KEY, jnp.zeros((2, 3)), jnp.zeros((3,))), "log_var"),
    ("latent.gaussian_kl-mean-nan", lambda: vae.gaussian_kl(jnp.array([0.0, np.nan]), jnp.zeros(2)), "mean"),
    ("latent.gaussian_kl-log_var-inf", lambda: vae.gaussian_kl(jnp.zeros(2), jnp.array([0.0, np.inf])), "log_var"),
    ("latent.reparameterize-mean-nan",
     lambda: vae.reparameterize(KEY, jnp.full((2, 3), np.nan), jnp.zeros((2, 3))), "mean"),
    ("latent.DiscretizedLogistic-levels1", lambda: vae.DiscretizedLogistic(num_levels=1), "num_levels"),
    ("latent.kl_warmup-neg", lambda: vae.kl_warmup(0, -1), "warmup_steps"),
    # likelihood
    ("likelihood.divergence", lambda: likelihood.log_likelihood(ident, X, divergence="bogus", key=KEY), "divergence"),
    ("likelihood.probe", lambda: likelihood.log_likelihood(ident, X, probe="uniform", key=KEY), "probe"),
    ("likelihood.sigma_min0", lambda: likelihood.log_likelihood(ident, X, sigma_min=0.0, key=KEY), "sigma_min"),
    ("likelihood.hutchinson-no-key", lambda: likelihood.log_likelihood(ident, X), "key"),
    ("likelihood.x-1d", lambda: likelihood.log_likelihood(ident, jnp.ones(3), key=KEY), "x"),
    ("likelihood.dequantize-bin_width0", lambda: likelihood.dequantize(KEY, X, 0.0), "bin_width"),
    ("likelihood.bits_per_dim-dim0", lambda: likelihood.bits_per_dim(jnp.ones(2), 0), "dim"),
    ("likelihood.bits_per_dim-dim-nan", lambda: likelihood.bits_per_dim(jnp.ones(2), np.nan), "dim"),
    ("likelihood.bits_per_dim-logp-nan",
     lambda: likelihood.bits_per_dim(jnp.array([1.0, np.nan]), 4), "logp_nats"),
    ("likelihood.bits_per_dim-bin_width-inf",
     lambda: likelihood.bits_per_dim(jnp.ones(2), 4, np.inf), "bin_width"),
    ("likelihood.x-nan", lambda: likelihood.log_likelihood(ident, jnp.full((1, 2), np.nan), key=KEY), "x"),
    # metrics
    ("metrics.frechet-mu-2d",
     lambda: frechet.frechet_distance(np.zeros((2, 2)), np.eye(2), np.zeros(2), np.eye(2)), "mu1"),
    ("metrics.frechet-cov-mismatch",
     lambda: frechet.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), "cov1"),
    ("metrics.frechet-mu2-nan",
     lambda: frechet.frechet_distance(np.zeros(2), np.eye(2), np.full(2, np.nan), np.eye(2)), "mu2"),
    ("metrics.frechet-cov1-indefinite",
     lambda: frechet.frechet_distance(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), np.zeros(2), np.eye(2)),
     "cov1"),
    ("metrics.frechet-cov2-negative",
     lambda: frechet.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), -np.eye(2)), "cov2"),
    ("metrics.frechet-cov2-asymmetric",
     lambda: frechet.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]])),
     "cov2"),
    ("metrics.gaussian_stats-N1", lambda: frechet.gaussian_stats(np.zeros((1, 3))), "features"),
    ("metrics.gaussian_stats-nan", lambda: frechet.gaussian_stats(np.full((4, 3), np.nan)), "features"),
    ("metrics.mmd-y-dim-mismatch", lambda: distances.mmd(jnp.zeros((4, 2)), jnp.zeros((4, 3))), "y"),
    ("metrics.sliced_wasserstein-proj0",
     lambda: distances.sliced_wasserstein(jnp.zeros((4, 2)), jnp.zeros((4, 2)), KEY, num_projections=0),
     "num_projections"),
    # data / train
    ("data.EpochSampler-batch0", lambda: EpochSampler(10, 0), "batch_size"),
    ("data.EpochSampler-batch>N", lambda: EpochSampler(4, 8), "batch_size"),
    ("train.OptimConfig-lr0", lambda: OptimConfig(learning_rate=0.0), "learning_rate"),
    ("train.OptimConfig-warmup-neg", lambda: OptimConfig(warmup_steps=-1), "warmup_steps"),
    ("train.OptimConfig-grad_clip0", lambda: OptimConfig(grad_clip=0.0), "grad_clip"),
    ("train.OptimConfig-b2=1", lambda: OptimConfig(b2=1.0), "b2"),
    # graphs
    ("graphs.smiles_to_ints-invalid", lambda: molecules.smiles_to_ints("C1CC(", 9), "SMILES"),
    ("graphs.smiles_to_ints-S-atom", lambda: molecules.smiles_to_ints("CSC", 9), "atom"),
    ("graphs.smiles_to_ints-10-atoms", lambda: molecules.smiles_to_ints("CCCCCCCCCC", 9), "max_nodes"),
    ("graphs.smiles_to_ints-charged", lambda: molecules.smiles_to_ints("C[NH3+]", 9), "atom"),
    ("graphs.marginal_transition-not-a-distribution",
     lambda: discrete.marginal_transition([0.5, 0.6], [1.0, 0.0]), "node_marginals"),
    ("graphs.cosine_alpha_bar-0", lambda: discrete.cosine_alpha_bar(0), "num_steps"),
    ("graphs.sample-sample_steps>num_steps",
     lambda: discrete.sample(ident, KEY, jnp.ones((1, 3), bool), transition=discrete.uniform_transition(2, 2),
                             num_steps=5, sample_steps=9), "sample_steps"),
    ("graphs.node_counts_distribution-negative", lambda: discrete.node_counts_distribution(np.array([-1, 2])),
     "counts"),
    ("graphs.graph_smiles-mode", lambda: graph_metrics.graph_smiles(np.zeros((1, 3), int), np.zeros((1, 3, 3), int),
                                                                    mode="fuzzy"), "mode"),
    ("graphs.validity-lengths", lambda: graph_metrics.validity(np.zeros((2, 3), int), np.zeros((1, 3, 3), int)),
     "atoms"),
    ("graphs.GraphDiT-numeric-width", lambda: graph_dit_init(numeric=jnp.zeros((1, 2))), "numeric"),
    ("graphs.GraphDiT-categorical-width", lambda: graph_dit_init(categorical=jnp.zeros((1, 3), jnp.int32)),
     "categorical"),
    ("graphs.GraphDiT-too-many-nodes", lambda: graph_dit_init(n=5), "max_nodes"),
]


@pytest.mark.parametrize("call,arg", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_table(call, arg):
    # the argument's name as a whole word, so a one-letter name like "t" can't match by accident
    with pytest.raises(ValueError, match=rf"(?<![\w.])(optim\.)?{re.escape(arg)}\b"):
        call()


# --------------------------------------------------------------------------- samplers × bad grids

BAD_GRIDS = {
    "increasing": (jnp.array([0.5, 1.0, 2.0, 0.0]), "sigmas"),
    "not-ending-in-0": (jnp.array([2.0, 1.0, 0.5]), "sigmas"),
    "negative": (jnp.array([2.0, 1.0, -0.5, 0.0]), "sigmas"),
    "nan": (jnp.array([2.0, jnp.nan, 0.5, 0.0]), "sigmas"),
    "2d": (jnp.ones((2, 2)), "sigmas"),
}


@pytest.mark.parametrize("grid", sorted(BAD_GRIDS))
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_sampler_bad_sigmas(sampler, grid):
    sigmas, arg = BAD_GRIDS[grid]
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        SAMPLERS[sampler](ident, sigmas)


# options under which GOOD_SIGMAS (3 steps) is a valid grid for the sampler
VALID_ON_3_STEPS = {"ipndm": {"order": 3}, "restart": {"t_max": 1.0}}


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_sampler_denoiser_wrong_shape(sampler):
    with pytest.raises(ValueError, match="denoiser returned shape"):
        SAMPLERS[sampler](wrong_shape, GOOD_SIGMAS, **VALID_ON_3_STEPS.get(sampler, {}))


# --------------------------------------------------------------------------- hypothesis properties

@HYP
@given(st.lists(st.floats(0.01, 50.0), min_size=2, max_size=6).filter(lambda v: any(np.diff(v) >= 0)))
def test_hyp_non_monotone_sigmas(levels):
    sigmas = jnp.array(levels + [0.0], jnp.float32)
    if np.all(np.diff(np.asarray(sigmas)) < 0):  # float32 rounding made it monotone: not a bad grid
        return
    with pytest.raises(ValueError, match="sigmas"):
        ode.euler(ident, X, sigmas)


@HYP
@given(st.floats(-1e6, 0.0))
def test_hyp_karras_non_positive_sigma_min(sigma_min):
    with pytest.raises(ValueError, match="sigma_min"):
        schedules.karras(4, sigma_min, 10.0)


@HYP
@given(st.one_of(st.floats(-1e3, -1e-3), st.floats(1.01, 1e3)))
def test_hyp_vpsde_t_out_of_range(t):
    with pytest.raises(ValueError, match="t must lie"):
        sde.VPSDE().marginal(jnp.array(t))


@HYP
@given(st.one_of(st.floats(-1e3, -1e-3), st.floats(1.01, 1e3), st.just(np.nan)))
def test_hyp_vpbridge_t_out_of_range(t):
    with pytest.raises(ValueError, match="t must lie"):
        bproc.VPBridge().abc(jnp.array(t))


@HYP
@given(st.sampled_from(sorted(precond.PRECONDITIONINGS)), st.one_of(st.floats(-1e3, -1e-6), st.just(np.nan)))
def test_hyp_precond_bad_sigma(name, sigma):
    with pytest.raises(ValueError, match="sigma"):
        precond.PRECONDITIONINGS[name]().coefficients(jnp.array([sigma]))


@HYP
@given(st.floats(-10.0, -1e-6))
def test_hyp_euler_ancestral_negative_eta(eta):
    with pytest.raises(ValueError, match="eta"):
        stochastic.euler_ancestral(ident, X, GOOD_SIGMAS, key=KEY, eta=eta)


@HYP
@given(st.integers(1, 6), st.integers(1, 6))
def test_hyp_corr_channel_mismatch(d1, d2):
    if d1 == d2:
        return
    with pytest.raises(ValueError, match="f1 and f2"):
        corr.correlation_volume(jnp.ones((1, 2, 2, d1)), jnp.ones((1, 2, 2, d2)))


@HYP
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6).filter(lambda v: any(np.diff(v) <= 0)))
def test_hyp_sdeint_non_increasing_ts(ts):
    with pytest.raises(ValueError, match="ts"):
        brownian.check_grid(jnp.array(ts, jnp.float32))


@HYP
@given(st.floats(-1e3, 0.0, exclude_max=False))
def test_hyp_optim_non_positive_lr(lr):
    with pytest.raises(ValueError, match="learning_rate"):
        OptimConfig(learning_rate=lr)


# --------------------------------------------------------------------------- documented answers


@pytest.mark.parametrize("path", ["all_pairs", "on_the_fly"])
def test_documented_infinite_coords_give_zero_correlation(path):
    """±inf RAFT coordinates lie outside the image like far ones: zero windows, no NaN."""
    f = jax.random.normal(KEY, (1, 4, 4, 3))
    coords = jnp.zeros((1, 4, 4, 2)).at[0, 1, 2, 0].set(jnp.inf).at[0, 3, 0, 1].set(-jnp.inf)
    out = corr.correlation_lookup(f, f, num_levels=2, radius=1, mode=path)(coords)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert bool(jnp.all(out[0, 1, 2] == 0)) and bool(jnp.all(out[0, 3, 0] == 0))


@HYP
@given(st.one_of(st.text(max_size=12), st.text("CNOFScnos()[]=#+-123@H.%/\\", max_size=16)))
def test_hyp_smiles_to_ints_random_text(text):
    """Random text is either a valid (atoms (9,), bonds (9, 9)) pair or a ValueError, never another error."""
    try:
        atoms, bonds = molecules.smiles_to_ints(text, 9)
    except ValueError:
        return
    assert atoms.shape == (9,) and bonds.shape == (9, 9)


@HYP
@given(st.sampled_from(["mean", "log_var"]), st.sampled_from([np.nan, np.inf, -np.inf]), st.integers(0, 5))
def test_hyp_gaussian_kl_non_finite(arg, bad, index):
    args = {"mean": np.zeros(6, np.float32), "log_var": np.zeros(6, np.float32)}
    args[arg][index] = bad
    with pytest.raises(ValueError, match=arg):
        vae.gaussian_kl(jnp.asarray(args["mean"]), jnp.asarray(args["log_var"]))
