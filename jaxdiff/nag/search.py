"""Architecture search over a property table: random search, regularised evolution (REA), ranking by a
zero-cost proxy, and model-based search with a noisy-cell property predictor, proposing either guided
generations of the score model (DiffusionNAG) or random cells ranked by the predictor alone; the
predictor can start from a zero-cost proxy (pretrained on it for every cell, DiffusionNAG's meta-learned
predictor in the role of prior knowledge) instead of from random cells.

Every method returns the table rows it evaluated, distinct, in the order of evaluation: a look-up
of a cell is an evaluation, and a cell isomorphic to one already evaluated costs nothing (its result
is known). Cells whose class a partial table lacks cannot be evaluated and are passed over.
"""

from __future__ import annotations

import collections
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.nag import model
from jaxdiff.nag.space import NUM_EDGES, OPS

__all__ = ["random_search", "proxy_search", "mutate", "regularized_evolution", "evaluations_to_reach",
           "ModelSearch", "model_search"]


def random_search(num_rows: int, rng: np.random.Generator, budget: int) -> np.ndarray:
    """``budget`` distinct rows of ``num_rows``, uniformly at random: ``(min(budget, num_rows),)``."""
    return rng.permutation(num_rows)[:budget]


def proxy_search(proxy, rng: np.random.Generator, budget: int) -> np.ndarray:
    """The ``budget`` rows with the highest zero-cost ``proxy`` ``(num_rows,)`` (e.g. parameter count),
    highest first, ties in random order: ``(min(budget, num_rows),)``."""
    proxy = np.asarray(proxy, np.float64)
    return np.lexsort((rng.permutation(len(proxy)), -proxy))[:budget]


def mutate(cell, rng: np.random.Generator) -> np.ndarray:
    """The cell ``(6,)`` with one random edge's operation changed to another random operation."""
    cell = np.array(cell, np.int64)
    e = rng.integers(NUM_EDGES)
    cell[e] = (cell[e] + rng.integers(1, len(OPS))) % len(OPS)
    return cell


def regularized_evolution(table, values, rng: np.random.Generator, budget: int, population: int = 20,
                          sample_size: int = 5) -> np.ndarray:
    """Regularised evolution (Real et al. 2019): ``population`` random cells; then repeatedly the best
    of ``sample_size`` members drawn without replacement is mutated (``mutate``), the child joins the
    population and the oldest member leaves. Returns the distinct rows evaluated, ``(<= budget,)``.

    Args:
        table: a ``jaxdiff.nag.table.PropertyTable`` (its cells and rows).
        values: ``(len(table),)`` the property maximised.
        rng: randomness.
        budget: evaluations.
        population: members kept.
        sample_size: members per tournament (at most ``population``).
    """
    if not 0 < sample_size <= population:
        raise ValueError(f"sample_size must be in [1, population={population}], got {sample_size}")
    cells = table.cells
    history = list(rng.permutation(len(table))[:min(population, budget)])
    seen = set(history)
    members = collections.deque(history)
    for _ in range(100 * budget):
        if len(history) >= budget:
            break
        drawn = rng.choice(len(members), min(sample_size, len(members)), replace=False)
        parent = max((members[i] for i in drawn), key=lambda r: values[r])
        row = int(table.rows(mutate(cells[parent], rng), strict=False))
        if row < 0:
            continue
        if row not in seen:
            seen.add(row)
            history.append(row)
        members.append(row)
        if len(members) > population:
            members.popleft()
    return np.asarray(history, np.int64)


def evaluations_to_reach(found, threshold: float) -> float:
    """Evaluations until a value ``>= threshold`` first appears in ``found`` (values in evaluation
    order), ``inf`` when none does."""
    hit = np.flatnonzero(np.asarray(found) >= threshold)
    return float(hit[0] + 1) if len(hit) else float("inf")


GUIDANCE = {"target": model.target_log_prob, "improvement": model.improvement_log_prob}


@dataclasses.dataclass(frozen=True)
class ModelSearch:
    """Settings of ``model_search``.

    Attributes:
        n_init: cells evaluated first: random ones, or with a prior the pretrained predictor's best
            candidates.
        per_round: cells evaluated per round (the predictor's best candidates).
        budget: evaluations in all.
        candidates: cells proposed per round (generated, or drawn at random for ranking).
        fit_steps: the predictor's training steps per round (retrained from scratch on every evaluation).
        batch_size: its batch.
        learning_rate: its peak learning rate.
        scale: guidance weight.
        margin: the guidance target is the best value found plus ``margin`` standard deviations of the
            values found; the guidance temperature is that standard deviation.
        guidance: ``"target"``, the Gaussian likelihood of the target (``model.target_log_prob``), or
            ``"improvement"``, the probability of exceeding it (``model.improvement_log_prob``).
        num_steps: predictor–corrector steps of the sampler.
        prior_steps: training steps of the predictor on the prior (with ``model_search``'s ``prior``).
        prior_scale: guidance weight of the prior's round (None: ``scale``; 0: unguided proposals,
            ranked by the pretrained predictor).
    """

    n_init: int = 10
    per_round: int = 10
    budget: int = 100
    candidates: int = 128
    fit_steps: int = 200
    batch_size: int = 64
    learning_rate: float = 3e-3
    scale: float = 1.0
    margin: float = 1.0
    guidance: str = "target"
    num_steps: int = 30
    prior_steps: int = 1000
    prior_scale: float | None = None

    def __post_init__(self):
        for name in ("n_init", "per_round", "budget", "candidates", "fit_steps", "batch_size", "num_steps",
                     "prior_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("scale", "prior_scale"):
            if getattr(self, name) is not None and not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.guidance not in GUIDANCE:
            raise ValueError(f"guidance must be one of {', '.join(GUIDANCE)}, got {self.guidance!r}")
        if self.n_init > self.budget:
            raise ValueError(f"n_init must be <= budget={self.budget}, got {self.n_init}")


def _predict(module, params, mean, std, x, sigma):
    return mean + std * model.Predictor(module).raw(params, x, sigma)


def model_search(table, values, seeds, module, settings: ModelSearch = ModelSearch(), *, denoiser=None,
                 process=None, prior=None) -> np.ndarray:
    """Model-based search, every seed side by side: ``n_init`` random cells, then rounds of: train a
    predictor (``module``) on the noisy cells evaluated so far (``model.fit_predictor``'s loss), propose
    ``candidates`` cells, evaluate the ``per_round`` new ones the predictor ranks highest (at the
    lowest noise level). With ``denoiser`` the proposals are guided generations
    (``model.sample`` guided by ``settings.guidance``); without, uniform random rows. A round with too
    few new candidates fills up with random unevaluated rows.

    With ``prior``, a zero-cost property known for every row without evaluating it (e.g. parameter
    count), the predictor is first trained on the whole table's standardised prior
    (``prior_steps``); that predictor chooses the first ``n_init`` cells (a round whose guidance
    target is the prior's maximum plus ``margin``, at weight ``prior_scale``) and every later round
    fine-tunes it, rather than a fresh network, on the cells evaluated so far.

    Args:
        table: a ``jaxdiff.nag.table.PropertyTable``.
        values: ``(len(table),)`` the property maximised.
        seeds: integers, one search each.
        module: the predictor network (``nets.PropertyPredictor``).
        settings: the search's budget and schedule.
        denoiser: the score model ``D(x, sigma)``, or None for ranking random cells.
        process: the VE SDE of the sampler (with ``denoiser``; also the predictor's noise range).
        prior: ``(len(table),)`` zero-cost values to pretrain the predictor on, or None.

    Returns:
        ``(len(seeds), budget)`` rows in evaluation order.
    """
    s = settings
    if denoiser is not None and process is None:
        raise ValueError("process is required with denoiser (the sampler's VE SDE)")
    values = np.asarray(values, np.float64)
    sigma_min, sigma_max = (0.01, 5.0) if process is None else (process.sigma_min, process.sigma_max)
    cells = table.cells
    data = model.to_data(cells)
    rngs = [np.random.default_rng(int(seed)) for seed in seeds]
    keys = jax.vmap(jax.random.key)(jnp.asarray([int(seed) for seed in seeds], jnp.uint32))
    train = functools.partial(model.train_predictor, module, batch_size=s.batch_size, learning_rate=s.learning_rate,
                              sigma_min=sigma_min, sigma_max=sigma_max)
    fit = jax.vmap(functools.partial(train, steps=s.fit_steps))
    init = jax.jit(jax.vmap(lambda k: module.init(k, jnp.zeros((1,) + data.shape[1:]), jnp.zeros((1,)))["params"]))
    score = jax.jit(jax.vmap(lambda p, m, sd, x: _predict(module, p, m, sd, x, sigma_min)))

    @jax.jit
    def generate(params, mean, std, target, key, scale):
        def one(p, m, sd, tgt, k):
            predictor = functools.partial(_predict, module, p, m, sd)
            log_prob = GUIDANCE[s.guidance](predictor, tgt, sd)
            return model.sample(denoiser, k, s.candidates, process=process,
                                num_steps=s.num_steps, log_prob=log_prob, scale=scale)
        return jax.vmap(one)(params, mean, std, target, key)

    n = len(rngs)
    if prior is None:
        start = None
        history = [list(rng.permutation(len(table))[:s.n_init]) for rng in rngs]
    else:
        prior = np.asarray(prior, np.float64)
        if prior.shape != (len(table),) or not np.all(np.isfinite(prior)):
            raise ValueError(f"prior must be ({len(table)},) finite values, one per table row, got shape {prior.shape}")
        z = (prior - prior.mean()) / (prior.std() if prior.std() > 0 else 1.0)
        k_init, k_fit = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, 2**30), 2))(keys).T
        pretrain = jax.vmap(functools.partial(train, steps=s.prior_steps), in_axes=(0, None, None, None, 0))
        start, _ = pretrain(init(k_init), jnp.asarray(data), jnp.asarray(z, jnp.float32),
                            jnp.ones(len(table), jnp.float32), k_fit)
        history = [[] for _ in rngs]

    round_ = 0
    while len(history[0]) < s.budget:
        k_init, k_fit, k_gen = jax.vmap(lambda k, r: jax.random.split(jax.random.fold_in(k, r), 3),
                                        in_axes=(0, None))(keys, round_).T
        if not history[0]:  # the prior's round: the pretrained predictor toward the prior's maximum
            params, room = start, s.n_init
            scale = s.scale if s.prior_scale is None else s.prior_scale
            mean, std = np.zeros(n), np.ones(n)
            target = np.full(n, z.max() + s.margin)
        else:
            rows = np.zeros((n, s.budget), np.int64)
            weight = np.zeros((n, s.budget), np.float32)
            for i, h in enumerate(history):
                rows[i, :len(h)], weight[i, :len(h)] = h, 1.0
            y = values[rows]
            mean = (y * weight).sum(1) / weight.sum(1)
            std = np.sqrt((((y - mean[:, None]) ** 2) * weight).sum(1) / weight.sum(1))
            std = np.where(std > 0, std, 1.0)
            params, _ = fit(init(k_init) if start is None else start, jnp.asarray(data[rows]),
                            jnp.asarray((y - mean[:, None]) / std[:, None], jnp.float32), jnp.asarray(weight), k_fit)
            room, scale = s.per_round, s.scale
            target = np.array([values[h].max() for h in history]) + s.margin * std
        if denoiser is None:
            proposed = np.stack([rng.choice(len(table), min(s.candidates, len(table)), replace=False) for rng in rngs])
        else:
            x = generate(params, jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32),
                         jnp.asarray(target, jnp.float32), k_gen, jnp.float32(scale))
            got, _ = model.to_cells(np.asarray(x).reshape(-1, *data.shape[1:]))
            proposed = table.rows(got, strict=False).reshape(n, -1)
        predicted = np.asarray(score(params, jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32),
                                     jnp.asarray(data[np.maximum(proposed, 0)])))
        for i, (h, rng) in enumerate(zip(history, rngs)):
            left = min(room, s.budget - len(h))
            seen = set(h)
            for j in np.argsort(-predicted[i], kind="stable"):
                r = int(proposed[i, j])
                if left and r >= 0 and r not in seen:
                    h.append(r)
                    seen.add(r)
                    left -= 1
            if left:
                rest = np.setdiff1d(np.arange(len(table)), h)
                h.extend(rng.choice(rest, left, replace=False).tolist())
        round_ += 1
    return np.asarray(history, np.int64)
