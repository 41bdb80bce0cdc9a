"""Discrete (categorical) diffusion on dense graphs: DiGress (arXiv 2209.14734) and Graph-DiT (2401.13858).

Every real node and every unordered pair of distinct real nodes carries one categorical
variable (``a`` node classes, ``b`` edge classes, edge class 0 = "no edge"). Each is noised
independently by a Markov chain with one-step matrix

    Q_t = alpha_t I + (1 - alpha_t) 1 pi^T,    Qbar_t = Q_1 ... Q_t = alpha_bar_t I + (1 - alpha_bar_t) 1 pi^T

acting on row vectors, ``q(z_t | x_0) = x_0 Qbar_t``, with ``pi`` the prior: uniform, or the dataset
marginals (DiGress). Time ``t`` is an integer in ``{0..T}`` (networks see ``t / T``), ``alpha_bar_0 = 1``
and ``alpha_bar_T = 0``; training draws ``t ~ U{1..T}``; the reverse step marginalises the exact
posterior over the network's clean-graph prediction; classifier-free guidance combines the
conditional and unconditional posteriors log-linearly (Graph-DiT). ``JointTransition`` couples bonds
to their atoms through the path, with the independent prior Graph-DiT samples from. The
conventions, where they differ from the reference code, and the derivation:
[Discrete diffusion on graphs](../../design/graph_diffusion.md).
"""

from __future__ import annotations

import operator
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.graphs.graph import Graph, apply_mask, pair_mask, symmetrize_upper

HIGHEST = jax.lax.Precision.HIGHEST  # closed-form probabilities: float32 on every device (docs/design/precision.md)

__all__ = [
    "Transition",
    "cosine_alpha_bar",
    "JointTransition",
    "uniform_transition",
    "marginal_transition",
    "joint_transition",
    "dataset_marginals",
    "cooccurrence",
    "bond_given_atoms",
    "prior_probs",
    "sample_graph",
    "forward_probs",
    "forward_sample",
    "posterior_probs",
    "guide_probs",
    "cross_entropy_loss",
    "sample_timesteps",
    "training_loss",
    "sample",
    "node_counts_distribution",
    "sample_masks",
]


def _check_int(name: str, value, minimum: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def cosine_alpha_bar(num_steps: int, s: float = 0.008) -> jax.Array:
    """Discrete cosine schedule -> alpha_bar (num_steps + 1,), alpha_bar[0] = 1, alpha_bar[T] = 0.

    ``alpha_bar_t = f(t / T) / f(0)`` with ``f(u) = cos^2(pi/2 (u + s) / (1 + s))``; the one-step
    ``alpha_t = alpha_bar_t / alpha_bar_{t-1}`` lies in ``[0, 1]`` without clipping.
    """
    num_steps = _check_int("num_steps", num_steps, 1)
    if not s >= 0:
        raise ValueError(f"s must be >= 0, got {s}")
    u = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos(0.5 * np.pi * (u + s) / (1 + s)) ** 2
    alpha_bar = f / f[0]
    alpha_bar[-1] = 0.0  # cos(pi/2) up to rounding
    return jnp.asarray(alpha_bar, dtype=jnp.result_type(float))


def _kernel(stay: jax.Array, target: jax.Array) -> jax.Array:
    """stay (...,), target (..., k) -> ``stay I + (1 - stay) 1 target^T`` (..., k, k)."""
    eye = jnp.eye(target.shape[-1], dtype=target.dtype)
    stay = stay[..., None, None]
    return stay * eye + (1 - stay) * target[..., None, :]


def _alphas(t: jax.Array, num_steps: int, s: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """t (...,) int in 1..T, s < t (default t - 1) -> (alpha_bar_t, alpha_bar_s, alpha_{t|s} = their ratio)."""
    alpha_bar = cosine_alpha_bar(num_steps)
    now, before = alpha_bar[t], alpha_bar[t - 1 if s is None else s]
    return now, before, now / before


class Transition(NamedTuple):
    """Factorised chains ``Q_t = alpha_t I + (1 - alpha_t) 1 pi^T`` for nodes and edges (a pytree).

    node_limit (a,) and edge_limit (b,): the limit distributions ``pi``. Methods take integer ``t``
    of any shape (traced is fine) and a static ``num_steps`` and return (t.shape + (k, k)) matrices.
    """

    node_limit: jax.Array
    edge_limit: jax.Array

    def qbar(self, t: jax.Array, num_steps: int) -> tuple[jax.Array, jax.Array]:
        """Cumulative ``Qbar_t`` (t in 0..T) -> (nodes (..., a, a), edges (..., b, b))."""
        alpha_bar = cosine_alpha_bar(num_steps)[t]
        return _kernel(alpha_bar, self.node_limit), _kernel(alpha_bar, self.edge_limit)

    def q(self, t: jax.Array, num_steps: int, s: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """One-step ``Q_t`` (t in 1..T), or ``Q_{t|s} = Q_{s+1} ... Q_t`` for s < t ->
        (nodes (..., a, a), edges (..., b, b))."""
        alpha = _alphas(t, num_steps, s)[2]
        return _kernel(alpha, self.node_limit), _kernel(alpha, self.edge_limit)


class JointTransition(NamedTuple):
    """Atom-conditioned bond noise (consistent Graph-DiT variant; see the module docstring).

    Nodes: the marginal chain. Edge ``(i, j)`` with clean atoms ``(u, v)``:
    ``Qbar_t = alpha_bar_t I + (1 - alpha_bar_t) 1 r_t^T`` with ``r_t = lam alpha_bar_t c_uv + (1 - lam
    alpha_bar_t) m_e`` and ``Q_t = alpha_t I + (1 - alpha_t) 1 s_t^T`` with ``s_t = w_t c_uv + (1 - w_t)
    m_e``, ``w_t = lam alpha_bar_t alpha_bar_{t-1}``, where ``c_uv = P(bond | atoms u, v)``.
    node_limit (a,), edge_limit (b,), bond_given_atoms (a, a, b), coupling ``lam`` in [0, 1].
    """

    node_limit: jax.Array
    edge_limit: jax.Array
    bond_given_atoms: jax.Array
    coupling: jax.Array

    def qbar(self, t: jax.Array, num_steps: int) -> tuple[jax.Array, jax.Array]:
        """Cumulative ``Qbar_t`` (t in 0..T) -> (nodes (..., a, a), edges (..., a, a, b, b))."""
        alpha_bar = cosine_alpha_bar(num_steps)[t]
        return _kernel(alpha_bar, self.node_limit), self._edges(alpha_bar, self.coupling * alpha_bar)

    def q(self, t: jax.Array, num_steps: int, s: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """One-step ``Q_t`` (t in 1..T), or ``Q_{t|s}`` for s < t (weight ``lam alpha_bar_t alpha_bar_s``) ->
        (nodes (..., a, a), edges (..., a, a, b, b))."""
        now, before, alpha = _alphas(t, num_steps, s)
        return _kernel(alpha, self.node_limit), self._edges(alpha, self.coupling * now * before)

    def _edges(self, stay: jax.Array, weight: jax.Array) -> jax.Array:
        """Kernels towards ``weight c_uv + (1 - weight) m_e``: stay, weight (...,) -> (..., a, a, b, b)."""
        weight = weight[..., None, None, None]
        target = weight * self.bond_given_atoms + (1 - weight) * self.edge_limit
        return _kernel(stay[..., None, None], target)


def _check_distribution(name: str, p) -> jax.Array:
    p_np = np.asarray(p, dtype=np.float64)
    if p_np.ndim != 1 or p_np.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {p_np.shape}")
    if not (np.all(p_np >= 0) and abs(p_np.sum() - 1) < 1e-5):
        raise ValueError(f"{name} must be non-negative and sum to 1, got {p_np}")
    return jnp.asarray(p_np / p_np.sum(), dtype=jnp.result_type(float))


def uniform_transition(a: int, b: int) -> Transition:
    """Uniform noise: ``Qbar_t = alpha_bar_t I + (1 - alpha_bar_t) 11^T / k`` on a node and b edge classes."""
    a, b = _check_int("a", a, 1), _check_int("b", b, 1)
    dtype = jnp.result_type(float)
    return Transition(jnp.full((a,), 1 / a, dtype), jnp.full((b,), 1 / b, dtype))


def marginal_transition(node_marginals, edge_marginals) -> Transition:
    """DiGress marginal noise: ``Qbar_t = alpha_bar_t I + (1 - alpha_bar_t) 1 m^T``; m (a,) and (b,)."""
    return Transition(_check_distribution("node_marginals", node_marginals),
                      _check_distribution("edge_marginals", edge_marginals))


def joint_transition(atoms, bonds, a: int, b: int, coupling: float = 1.0) -> JointTransition:
    """Atom-conditioned bond noise from dataset statistics (see :class:`JointTransition`).

    atoms (N, n) int with -1 padding; bonds (N, n, n) int, symmetric; coupling in [0, 1] (0 gives
    the marginal transition).
    """
    if not 0 <= coupling <= 1:
        raise ValueError(f"coupling must be in [0, 1], got {coupling}")
    m_x, m_e = dataset_marginals(atoms, bonds, a, b)
    return JointTransition(m_x, m_e, bond_given_atoms(atoms, bonds, a, b),
                           jnp.asarray(coupling, dtype=jnp.result_type(float)))


def _int_graphs(atoms, bonds, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate integer graphs on the host -> (atoms (N, n), bonds (N, n, n), real pairs (N, n, n) bool)."""
    atoms, bonds = np.asarray(atoms), np.asarray(bonds)
    if atoms.ndim != 2 or atoms.size == 0 or not np.issubdtype(atoms.dtype, np.integer) \
            or atoms.min() < -1 or atoms.max() >= a:
        raise ValueError(f"atoms must be non-empty (N, n) ints in [-1, {a}), got {atoms.dtype} {atoms.shape}")
    if bonds.shape != atoms.shape + atoms.shape[-1:] or not np.issubdtype(bonds.dtype, np.integer) \
            or bonds.min() < 0 or bonds.max() >= b:
        raise ValueError(f"bonds must be {atoms.shape + atoms.shape[-1:]} ints in [0, {b}), "
                         f"got {bonds.dtype} {bonds.shape}")
    real = atoms >= 0
    return atoms, bonds, real[:, :, None] & real[:, None, :] & ~np.eye(atoms.shape[1], dtype=bool)


def _frequencies(counts: np.ndarray) -> jax.Array:
    """(..., c) counts -> row-normalised floats; rows without counts become uniform."""
    total = counts.sum(-1, keepdims=True)
    freq = np.where(total > 0, counts / np.maximum(total, 1), 1 / counts.shape[-1])
    return jnp.asarray(freq, dtype=jnp.result_type(float))


def dataset_marginals(atoms, bonds, a: int, b: int) -> tuple[jax.Array, jax.Array]:
    """Class frequencies -> (nodes (a,) over real nodes, edges (b,) over real off-diagonal pairs).

    atoms (N, n) int with -1 padding; bonds (N, n, n) int, symmetric. Computed on the host.
    """
    atoms, bonds, pairs = _int_graphs(atoms, bonds, a, b)
    if not pairs.any():
        raise ValueError("atoms has no graph with two real nodes, so edge marginals are undefined")
    return (_frequencies(np.bincount(atoms[atoms >= 0], minlength=a)),
            _frequencies(np.bincount(bonds[pairs], minlength=b)))


def cooccurrence(atoms, bonds, a: int, b: int) -> tuple[jax.Array, jax.Array]:
    """Atom-bond statistics over ordered pairs of distinct real nodes ``(i, j)``.

    Returns ``P(bond_ij | atom_i)`` (a, b) and ``P(atom_i | bond_ij)`` (b, a); classes never seen
    get a uniform row. atoms (N, n) int with -1 padding; bonds (N, n, n) int, symmetric.
    """
    atoms, bonds, pairs = _int_graphs(atoms, bonds, a, b)
    sources = np.broadcast_to(atoms[..., :, None], bonds.shape)[pairs]
    counts = np.bincount(sources * b + bonds[pairs], minlength=a * b).reshape(a, b)
    return _frequencies(counts), _frequencies(counts.T)


def bond_given_atoms(atoms, bonds, a: int, b: int) -> jax.Array:
    """``P(bond_ij | atom_i = u, atom_j = v)`` (a, a, b), symmetric in (u, v); unseen atom pairs get
    the edge marginals. atoms (N, n) int with -1 padding; bonds (N, n, n) int, symmetric.
    """
    atoms, bonds, pairs = _int_graphs(atoms, bonds, a, b)
    src = np.broadcast_to(atoms[..., :, None], bonds.shape)[pairs]
    dst = np.broadcast_to(atoms[..., None, :], bonds.shape)[pairs]
    counts = np.bincount((src * a + dst) * b + bonds[pairs], minlength=a * a * b).reshape(a, a, b)
    marginal = counts.sum((0, 1))
    counts = np.where(counts.sum(-1, keepdims=True) > 0, counts, marginal)
    return _frequencies(counts)


def prior_probs(transition: Transition | JointTransition, mask: jax.Array) -> Graph:
    """The limit distribution broadcast over a batch: mask (..., n) -> Graph of probabilities."""
    n = mask.shape[-1]
    nodes = jnp.broadcast_to(transition.node_limit, mask.shape + transition.node_limit.shape)
    edges = jnp.broadcast_to(transition.edge_limit, mask.shape + (n,) + transition.edge_limit.shape)
    return apply_mask(Graph(nodes, edges, mask))


def sample_graph(key: jax.Array, probs: Graph) -> Graph:
    """Draw a one-hot Graph from per-element probabilities; edges from the upper triangle, mirrored."""
    key_nodes, key_edges = jax.random.split(key)
    nodes = jax.nn.one_hot(jax.random.categorical(key_nodes, jnp.log(probs.nodes)), probs.nodes.shape[-1])
    edges = jax.nn.one_hot(jax.random.categorical(key_edges, jnp.log(probs.edges)), probs.edges.shape[-1])
    return apply_mask(Graph(nodes, symmetrize_upper(edges), probs.mask))


def forward_probs(graph0: Graph, t: jax.Array, transition: Transition | JointTransition, num_steps: int) -> Graph:
    """``q(z_t | x_0)`` for every element: t (...,) int in 0..T -> Graph of probabilities."""
    alpha_bar = cosine_alpha_bar(num_steps)[t]
    targets = transition.edge_limit
    if isinstance(transition, JointTransition):
        pair = jnp.einsum("...iu,uvk,...jv->...ijk", graph0.nodes, transition.bond_given_atoms, graph0.nodes,
                          precision=HIGHEST)
        weight = (transition.coupling * alpha_bar)[..., None, None, None]
        targets = weight * pair + (1 - weight) * targets
    stay_x, stay_e = alpha_bar[..., None, None], alpha_bar[..., None, None, None]
    nodes = stay_x * graph0.nodes + (1 - stay_x) * transition.node_limit * graph0.mask[..., None]
    edges = stay_e * graph0.edges + (1 - stay_e) * targets * graph0.edges.sum(-1, keepdims=True)
    return Graph(nodes, edges, graph0.mask)


def forward_sample(key: jax.Array, graph0: Graph, t: jax.Array, transition: Transition | JointTransition,
                   num_steps: int) -> Graph:
    """Draw ``z_t ~ q(z_t | x_0)``: t (...,) int in 0..T -> one-hot Graph (symmetric, masked)."""
    return sample_graph(key, forward_probs(graph0, t, transition, num_steps))


def _unnormalised_posterior(z_t: jax.Array, p0: jax.Array, q_t: jax.Array, qbar_s: jax.Array,
                            qbar_t: jax.Array) -> jax.Array:
    """z_t, p0 (..., k); matrices broadcastable to (..., k, k) -> (..., k).

    ``sum_i p0_i q(z_t | j) q(j | i) / q(z_t | i)`` over clean classes ``i``; those that cannot reach
    ``z_t`` get weight 0. Sums over ``j`` to the mass of ``p0`` on reachable classes.
    """
    likelihood = jnp.matmul(q_t, z_t[..., None], precision=HIGHEST)[..., 0]  # q(z_t | z_{t-1} = j)
    evidence = jnp.matmul(qbar_t, z_t[..., None], precision=HIGHEST)[..., 0]  # q(z_t | x_0 = i)
    weight = jnp.where(evidence > 0, p0 / jnp.where(evidence > 0, evidence, 1), 0)
    return jnp.matmul(weight[..., None, :], qbar_s, precision=HIGHEST)[..., 0, :] * likelihood


def _normalise(unnorm: jax.Array, fallback: jax.Array) -> jax.Array:
    """Rows (..., k) divided by their sum; rows without mass (padding, or a prediction with no
    support at ``z_t``) take ``fallback``."""
    total = unnorm.sum(-1, keepdims=True)
    return jnp.where(total > 0, unnorm / jnp.where(total > 0, total, 1), fallback)


def posterior_probs(graph_t: Graph, pred0_probs: Graph, t: jax.Array, transition: Transition | JointTransition,
                    num_steps: int, s: jax.Array | None = None) -> Graph:
    """``p(z_s | z_t) = sum_{x_0} p(x_0 | z_t) q(z_s | z_t, x_0)`` per element, s = t - 1 by default.

    graph_t: one-hot Graph; pred0_probs: Graph of predicted clean-class probabilities; t (...,) int
    in 1..T; s (...,) int in 0..t-1 (a skip of several steps). Returns a Graph of probabilities
    (padded rows zero). At ``s = 0`` it equals the prediction. For a joint transition the edge
    posterior also sums over the predicted atoms of both endpoints.
    """
    s = t - 1 if s is None else s
    qx_t, qe_t = transition.q(t, num_steps, s)
    qbx_s, qbe_s = transition.qbar(s, num_steps)
    qbx_t, qbe_t = transition.qbar(t, num_steps)
    node_mats = (m[..., None, :, :] for m in (qx_t, qbx_s, qbx_t))
    nodes = _unnormalised_posterior(graph_t.nodes, pred0_probs.nodes, *node_mats)
    if isinstance(transition, JointTransition):
        edge_mats = (m[..., None, None, :, :, :, :] for m in (qe_t, qbe_s, qbe_t))
        per_atoms = _unnormalised_posterior(graph_t.edges[..., None, None, :],  # (..., n, n, a, a, b)
                                            pred0_probs.edges[..., None, None, :], *edge_mats)
        atoms = pred0_probs.nodes
        edges = jnp.einsum("...iu,...jv,...ijuvk->...ijk", atoms, atoms, per_atoms, precision=HIGHEST)
    else:
        edge_mats = (m[..., None, None, :, :] for m in (qe_t, qbe_s, qbe_t))
        edges = _unnormalised_posterior(graph_t.edges, pred0_probs.edges, *edge_mats)
    return Graph(_normalise(nodes, graph_t.nodes), _normalise(edges, graph_t.edges), graph_t.mask)


def guide_probs(cond: jax.Array, uncond: jax.Array, scale) -> jax.Array:
    """Classifier-free guidance on probabilities (..., k): ``p_u (p_c / p_u)^s`` renormalised.

    Classes where either probability is 0 get 0; rows with no such class return ``cond``.
    """
    ok = (cond > 0) & (uncond > 0)
    log_c = jnp.log(jnp.where(ok, cond, 1))
    log_u = jnp.log(jnp.where(ok, uncond, 1))
    logits = jnp.where(ok, log_u + scale * (log_c - log_u), -jnp.inf)
    any_ok = ok.any(-1, keepdims=True)
    return jnp.where(any_ok, jax.nn.softmax(jnp.where(any_ok, logits, 0), axis=-1), cond)


def _masked_ce(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-element CE (...,) against one-hot targets (..., k); all-zero target rows give 0."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.where(targets > 0, targets * logp, 0), axis=-1)


def cross_entropy_loss(node_logits: jax.Array, edge_logits: jax.Array, graph0: Graph,
                       lambda_edges: float = 5.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DiGress loss: mean node CE over real nodes + lambda_edges * mean edge CE over real pairs.

    node_logits (..., n, a), edge_logits (..., n, n, b) against the one-hot graph0. Both orders
    ``(i, j)`` and ``(j, i)`` of each pair are counted (as DiGress does), i.e. the edge term is the
    mean over unordered pairs of the two directions' average. Returns (loss, terms) with terms
    ``node_ce``, ``edge_ce``, ``loss``.
    """
    if node_logits.shape != graph0.nodes.shape:
        raise ValueError(f"node_logits must have shape {graph0.nodes.shape}, got {node_logits.shape}")
    if edge_logits.shape != graph0.edges.shape:
        raise ValueError(f"edge_logits must have shape {graph0.edges.shape}, got {edge_logits.shape}")
    num_nodes = jnp.maximum(graph0.mask.sum(), 1)
    num_pairs = jnp.maximum(pair_mask(graph0.mask).sum(), 1)
    node_ce = _masked_ce(node_logits, graph0.nodes).sum() / num_nodes
    edge_ce = _masked_ce(edge_logits, graph0.edges).sum() / num_pairs
    loss = node_ce + lambda_edges * edge_ce
    return loss, {"node_ce": node_ce, "edge_ce": edge_ce, "loss": loss}


def sample_timesteps(key: jax.Array, shape: tuple[int, ...], num_steps: int) -> jax.Array:
    """Training times ``t ~ U{1..T}`` of the given shape (int)."""
    return jax.random.randint(key, shape, 1, num_steps + 1)


def training_loss(denoise: Callable, params, graph0: Graph, key: jax.Array, *,
                  transition: Transition | JointTransition, num_steps: int, lambda_edges: float = 5.0,
                  cond: dict | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Noise graph0 (one-hot, batch (B,)) at ``t ~ U{1..T}`` and score the clean-graph prediction.

    ``denoise(params, graph_t, t / T (B,), **cond) -> (node_logits (B, n, a), edge_logits (B, n, n, b))``.
    """
    key_t, key_z = jax.random.split(key)
    t = sample_timesteps(key_t, graph0.mask.shape[:-1], num_steps)
    graph_t = forward_sample(key_z, graph0, t, transition, num_steps)
    node_logits, edge_logits = denoise(params, graph_t, t / num_steps, **(cond or {}))
    return cross_entropy_loss(node_logits, edge_logits, graph0, lambda_edges)


def _reverse_probs(denoise_fn: Callable, graph_t: Graph, t: jax.Array, s: jax.Array,
                   transition: Transition | JointTransition, num_steps: int, cond: dict) -> Graph:
    node_logits, edge_logits = denoise_fn(graph_t, t / num_steps, **cond)
    pred0 = Graph(jax.nn.softmax(node_logits, -1), jax.nn.softmax(edge_logits, -1), graph_t.mask)
    return posterior_probs(graph_t, pred0, t, transition, num_steps, s)


def sample(denoise_fn: Callable, key: jax.Array, mask: jax.Array, *, transition: Transition | JointTransition,
           num_steps: int, sample_steps: int | None = None, cond: dict | None = None, guidance_scale=None,
           uncond: dict | None = None) -> Graph:
    """Ancestral sampling from the prior at t = T down to a one-hot graph at t = 0.

    mask (B, n) bool (e.g. from ``sample_masks``); ``denoise_fn(graph_t, t / T (B,), **cond) ->
    (node_logits, edge_logits)`` with parameters closed over (static under ``jit``, as are
    num_steps and sample_steps). ``sample_steps`` < T visits an evenly spaced subset of the
    training times and jumps between them with the exact multi-step posterior ``q(z_s | z_t, x_0)``
    (default: all T steps). With ``guidance_scale``, ``uncond`` is the keyword dict of the null condition and each
    step samples from ``guide_probs(p(. | cond), p(. | uncond), guidance_scale)``.
    """
    num_steps = _check_int("num_steps", num_steps, 1)
    sample_steps = num_steps if sample_steps is None else _check_int("sample_steps", sample_steps, 1)
    if sample_steps > num_steps:
        raise ValueError(f"sample_steps={sample_steps} exceeds num_steps={num_steps}")
    sample_steps = num_steps if sample_steps is None else _check_int("sample_steps", sample_steps, 1)
    if sample_steps > num_steps:
        raise ValueError(f"sample_steps={sample_steps} exceeds num_steps={num_steps}")
    if guidance_scale is not None and uncond is None:
        raise ValueError("uncond must be given when guidance_scale is set")
    cond = {} if cond is None else cond
    key_prior, key_steps = jax.random.split(key)
    graph_T = sample_graph(key_prior, prior_probs(transition, mask))

    def step(graph_t: Graph, inputs: tuple[jax.Array, jax.Array]) -> tuple[Graph, None]:
        t_int, s_int, step_key = inputs
        t, s = jnp.full(mask.shape[:-1], t_int), jnp.full(mask.shape[:-1], s_int)
        probs = _reverse_probs(denoise_fn, graph_t, t, s, transition, num_steps, cond)
        if guidance_scale is not None:
            free = _reverse_probs(denoise_fn, graph_t, t, s, transition, num_steps, uncond)
            probs = Graph(guide_probs(probs.nodes, free.nodes, guidance_scale),
                          guide_probs(probs.edges, free.edges, guidance_scale), mask)
        return sample_graph(step_key, probs), None

    times = np.round(np.linspace(num_steps, 0, sample_steps + 1)).astype(np.int32)
    steps = (jnp.asarray(times[:-1]), jnp.asarray(times[1:]), jax.random.split(key_steps, sample_steps))
    graph0, _ = jax.lax.scan(step, graph_T, steps)
    return graph0


def node_counts_distribution(counts, max_nodes: int | None = None) -> jax.Array:
    """Empirical distribution of graph sizes -> probs (max_nodes + 1,), index = number of nodes.

    counts: (N,) int node counts, or (N, n) bool masks (then max_nodes defaults to n).
    """
    counts = np.asarray(counts)
    if counts.dtype == bool:
        if counts.ndim != 2:
            raise ValueError(f"counts given as masks must have shape (N, n), got {counts.shape}")
        max_nodes = counts.shape[1] if max_nodes is None else max_nodes
        counts = counts.sum(1)
    if counts.ndim != 1 or counts.shape[0] == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError("counts must be a non-empty (N,) int array or (N, n) bool masks, "
                         f"got {counts.dtype} {counts.shape}")
    if counts.min() < 0:
        raise ValueError(f"counts must be >= 0, got min {counts.min()}")
    max_nodes = int(counts.max()) if max_nodes is None else _check_int("max_nodes", max_nodes, 1)
    if counts.max() > max_nodes:
        raise ValueError(f"max_nodes={max_nodes} is below the largest count {counts.max()}")
    return _frequencies(np.bincount(counts, minlength=max_nodes + 1))


def sample_masks(key: jax.Array, counts_probs: jax.Array, batch: int, max_nodes: int) -> jax.Array:
    """Draw graph sizes from counts_probs (c,) -> node masks (batch, max_nodes) bool (first k real)."""
    batch, max_nodes = _check_int("batch", batch, 1), _check_int("max_nodes", max_nodes, 1)
    counts_probs = jnp.asarray(counts_probs)
    if counts_probs.ndim != 1 or counts_probs.shape[0] > max_nodes + 1:
        raise ValueError(f"counts_probs must have shape (c,) with c <= max_nodes + 1 = {max_nodes + 1}, "
                         f"got {counts_probs.shape}")
    sizes = jax.random.categorical(key, jnp.log(counts_probs), shape=(batch,))
    return jnp.arange(max_nodes) < sizes[:, None]
