"""Search methods on a synthetic property table: random search, REA, model-based search."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jaxdiff.nag import nets, search, space
from jaxdiff.sde import VESDE

TINY = search.ModelSearch(n_init=8, per_round=8, budget=24, candidates=32, fit_steps=40, batch_size=32, num_steps=6)


def _top(values, fraction=0.01):
    return np.sort(values)[::-1][int(np.ceil(fraction * len(values))) - 1]


def test_random_search_and_mutation():
    rng = np.random.default_rng(0)
    rows = search.random_search(6466, rng, 100)
    assert len(np.unique(rows)) == 100
    cell = np.array([0, 1, 2, 3, 4, 0])
    for _ in range(50):
        child = search.mutate(cell, rng)
        assert (child != cell).sum() == 1 and space.check_cells(child).shape == (6,)
    assert search.evaluations_to_reach([0.1, 0.5, 0.9, 0.95], 0.9) == 3.0
    assert search.evaluations_to_reach([0.1, 0.5], 0.9) == float("inf")


def test_evolution_beats_random_search_on_a_smooth_landscape(synthetic_table):
    values = synthetic_table.values("val_acc")
    top = _top(values)
    rea, rnd = [], []
    for seed in range(10):
        h = search.regularized_evolution(synthetic_table, values, np.random.default_rng(seed), 300)
        assert len(h) == 300 and len(np.unique(h)) == 300
        rea.append(search.evaluations_to_reach(values[h], top))
        rnd.append(search.evaluations_to_reach(values[search.random_search(6466, np.random.default_rng(seed), 300)], top))
    assert np.median(rea) < 0.6 * np.median(rnd), (rea, rnd)
    with pytest.raises(ValueError, match="sample_size must be in"):
        search.regularized_evolution(synthetic_table, values, np.random.default_rng(0), 10, population=4, sample_size=5)


@pytest.mark.parametrize("guidance", [None, "target", "improvement"])
def test_model_search(synthetic_table, cells_denoiser, guidance):
    """Random and guided proposals (either guidance) evaluate distinct rows, start from the same
    random cells, and find better cells than their random start."""
    values = synthetic_table.values("val_acc")
    kw = dict(denoiser=cells_denoiser, process=VESDE(0.01, 5.0)) if guidance else {}
    settings = dataclasses.replace(TINY, guidance=guidance or "target")
    h = search.model_search(synthetic_table, values, [0, 1], nets.PropertyPredictor(hidden=16, depth=1, num_heads=2),
                            settings, **kw)
    assert h.shape == (2, 24)
    for i, row in enumerate(h):
        assert len(np.unique(row)) == 24
        np.testing.assert_array_equal(row[:8], np.random.default_rng(i).permutation(6466)[:8])
        assert values[row[8:]].mean() > values[row[:8]].mean()


def test_proxy_search_ranks_by_the_proxy_with_random_ties():
    proxy = np.array([1.0, 3.0, 3.0, 2.0, 0.0])
    orders = {tuple(search.proxy_search(proxy, np.random.default_rng(s), 4)) for s in range(20)}
    assert orders == {(1, 2, 3, 0), (2, 1, 3, 0)}


@pytest.mark.parametrize("guided", [False, True])
def test_model_search_from_a_prior(synthetic_table, cells_denoiser, guided):
    """A predictor pretrained on a zero-cost proxy that correlates with the property (parameter count;
    convolutions help in the synthetic table) picks first cells far better than random ones."""
    values = synthetic_table.values("val_acc")
    kw = dict(denoiser=cells_denoiser, process=VESDE(0.01, 5.0)) if guided else {}
    settings = dataclasses.replace(TINY, prior_steps=150)
    module = nets.PropertyPredictor(hidden=16, depth=1, num_heads=2)
    h = search.model_search(synthetic_table, values, [0, 1], module, settings, prior=synthetic_table.values("params"), **kw)
    assert h.shape == (2, 24)
    for row in h:
        assert len(np.unique(row)) == 24
    assert values[h[:, :8]].mean() > np.quantile(values, 0.7), (values[h[:, :8]].mean(), np.quantile(values, 0.7))
    with pytest.raises(ValueError, match=r"prior must be \(6466,\)"):
        search.model_search(synthetic_table, values, [0], module, settings, prior=np.zeros(5))


def test_prior_scale_is_the_first_rounds_guidance(synthetic_table, cells_denoiser):
    """The prior's round guides at ``prior_scale`` whatever ``scale`` is, by ``guidance``. Unguided (0),
    its ranked proposals still beat most cells, but they are smaller than those guided toward the
    largest parameter count."""
    values, params = synthetic_table.values("val_acc"), synthetic_table.values("params")
    module = nets.PropertyPredictor(hidden=16, depth=1, num_heads=2)

    def first_round(**options):  # budget = n_init: the prior's round only
        settings = dataclasses.replace(TINY, budget=TINY.n_init, prior_steps=150, **options)
        return search.model_search(synthetic_table, values, [0, 1], module, settings, denoiser=cells_denoiser,
                                   process=VESDE(0.01, 5.0), prior=params)

    unguided = first_round(prior_scale=0.0, scale=1.0)
    np.testing.assert_array_equal(unguided, first_round(prior_scale=0.0, scale=4.0))
    guided = first_round(scale=4.0)
    assert not np.array_equal(guided, first_round(scale=4.0, guidance="improvement"))  # the guidance is used
    assert values[unguided].mean() > np.quantile(values, 0.7), (values[unguided].mean(), np.quantile(values, 0.7))
    assert params[guided].mean() > params[unguided].mean(), (params[guided].mean(), params[unguided].mean())


def test_bad_settings():
    with pytest.raises(ValueError, match="n_init must be <= budget=5"):
        search.ModelSearch(n_init=10, budget=5)
    with pytest.raises(ValueError, match="per_round must be >= 1"):
        search.ModelSearch(per_round=0)
    with pytest.raises(ValueError, match="prior_scale must be >= 0"):
        search.ModelSearch(prior_scale=-1.0)
    with pytest.raises(ValueError, match="guidance must be one of target, improvement, got 'ucb'"):
        search.ModelSearch(guidance="ucb")
