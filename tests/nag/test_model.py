"""The score network, the noisy-cell predictor and guided sampling (against the exact denoiser)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm, spearmanr

from jaxdiff.nag import model, nets, space
from jaxdiff.sde import VESDE

PROCESS = VESDE(sigma_min=0.01, sigma_max=5.0)


def _perturbed(params, key):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize("dag", [True, False])
def test_attention_follows_the_dag(dag):
    """One masked block: node 2 (edge 0->2) does not see node 1 (edge 0->1), which lies on no path with it."""
    module = nets.CellTransformer(hidden=16, depth=1, num_heads=2, dag_attention=dag)
    x = jnp.asarray(model.to_data(space.unique_cells()[100:104].astype(np.int64)))
    params = _perturbed(module.init(jax.random.key(0), x, jnp.zeros(4))["params"], jax.random.key(1))
    out = module.apply({"params": params}, x, jnp.zeros(4))
    assert out.shape == (4, 8, 7)
    moved = module.apply({"params": params}, x.at[:, 1].add(1.0), jnp.zeros(4))
    change = jnp.abs(moved - out).max(-1)
    assert change[:, 1].min() > 1e-3 and change[:, 3].min() > 1e-3  # node 1 and its descendant see it
    if dag:
        np.testing.assert_allclose(change[:, 2], 0, atol=1e-6)
    else:
        assert change[:, 2].min() > 1e-4


def test_unguided_sampling_reproduces_the_data(cells_denoiser):
    """The exact denoiser of the unique cells, sampled by predictor-corrector on the VE SDE: valid
    cells of the space, spread over many classes, operation frequencies close to the data's."""
    from jaxdiff.nag.metrics import generation_metrics

    x = jax.jit(lambda k: model.sample(cells_denoiser, k, 256, process=PROCESS, num_steps=40))(jax.random.key(0))
    cells, valid = model.to_cells(x)
    data = space.unique_cells()
    m = generation_metrics(cells, valid, np.arange(6466), data)
    assert m["validity"] > 0.95 and m["uniqueness"] > 0.9 and m["novelty"] == 0.0
    assert m["op_tv"] < 0.08, m


def test_guidance_moves_the_samples(cells_denoiser):
    """Gradient guidance by a differentiable property (the number of 3x3 convolutions, read off the
    matrix) toward its maximum raises it; the sign of the target's side decides the direction."""
    def conv3(x, sigma):  # the expected count under the matrix's operation logits
        return jax.nn.softmax(x[:, 1:7, 2:] * 20.0, -1)[..., 3].sum(1)

    @functools.partial(jax.jit, static_argnums=2)
    def sample(target, scale, guidance):
        log_prob = guidance(conv3, target, 0.5)
        return model.sample(cells_denoiser, jax.random.key(1), 128, process=PROCESS, num_steps=40,
                            log_prob=log_prob, scale=scale)

    def draw(target, scale, guidance=model.target_log_prob):
        cells, valid = model.to_cells(sample(target, scale, guidance))
        return (cells[valid] == 3).sum(1).mean()

    plain, up, down = draw(0.0, 0.0), draw(6.0, 1.0), draw(0.0, 1.0)
    assert up > plain + 1.0 and down < plain - 0.5, (plain, up, down)
    better = draw(3.0, 1.0, model.improvement_log_prob)  # the probability of more than three
    assert better > plain + 1.0, (plain, better)


def test_improvement_log_prob():
    """``log Phi((f - best) / tau)`` in closed form; its pull is positive everywhere and fades once the
    prediction is above ``best`` (no pull back, unlike a Gaussian target)."""
    def f(x, sigma):
        return x.sum((1, 2))

    v = np.linspace(-3.0, 3.0, 13)
    log_prob = model.improvement_log_prob(f, 1.0, 0.5)
    np.testing.assert_allclose(log_prob(jnp.asarray(v).reshape(-1, 1, 1), 0.1), norm.logcdf((v - 1.0) / 0.5),
                               rtol=1e-5, atol=1e-7)  # float32 near log 1
    pull = np.asarray(jax.vmap(jax.grad(lambda u: log_prob(u.reshape(1, 1, 1), 0.1)[0]))(jnp.asarray(v, jnp.float32)))
    assert np.all(pull > 0) and np.all(np.diff(pull) < 0) and pull[-1] < 1e-4 * pull[0], pull


def test_predictor_on_noisy_cells():
    """Regressing a cell property from noisy matrices: rank-accurate on clean held-out cells, and
    it forgets the cell at the top noise level (predictions collapse toward the mean)."""
    cells = space.unique_cells().astype(np.int64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(cells))
    value = (cells == 3).sum(1) + 0.5 * (cells == 2).sum(1)
    pred, params, losses = model.fit_predictor(nets.PropertyPredictor(hidden=16, depth=1, num_heads=2),
                                               cells[idx[:400]], value[idx[:400]], jax.random.key(0), steps=200)
    assert losses[-20:].mean() < 0.5 * losses[:20].mean()
    test = cells[idx[400:700]]
    x = jnp.asarray(model.to_data(test))
    clean = np.asarray(pred(params, x, 0.01))
    assert spearmanr(clean, value[idx[400:700]])[0] > 0.9
    noisy = np.asarray(pred(params, x + 5.0 * jax.random.normal(jax.random.key(1), x.shape), 5.0))
    assert noisy.std() < 0.5 * clean.std()


def test_bad_input():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        model.target_log_prob(lambda x, s: x.sum((1, 2)), 1.0, 0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        model.improvement_log_prob(lambda x, s: x.sum((1, 2)), 1.0, -1.0)
    with pytest.raises(ValueError, match=r"values must have shape \(3,\)"):
        model.fit_predictor(nets.PropertyPredictor(), np.zeros((3, 6), int), np.zeros(2), jax.random.key(0))
    with pytest.raises(ValueError, match="weight must be"):
        model.fit_predictor(nets.PropertyPredictor(), np.zeros((3, 6), int), np.zeros(3), jax.random.key(0),
                            weight=np.zeros(3))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, 7\)"):
        nets.CellTransformer().init(jax.random.key(0), jnp.zeros((1, 8, 5)), jnp.zeros(1))
