"""Predictor (regressor) guidance for discrete graph diffusion (DiGress, arXiv 2209.14734, section 4).

A property predictor ``y_hat(G_t, t)`` is trained on forward-noised graphs. At sampling time it steers an
unconditional denoiser towards a target ``y``: with ``L(G) = ||y - y_hat(G, t)||^2`` and a first-order
expansion of ``log p(y | G_{t-1})`` around ``G_t``, each reverse step samples from

    p(G_{t-1} | G_t, y)  ∝  p_theta(G_{t-1} | G_t) exp(-lam <grad_{G_t} L, G_{t-1}>).

The inner product factorises over the categorical variables: node ``i`` in class ``k`` gets the factor
``exp(-lam dL/dX_ik)``, and the unordered pair ``{i, j}`` in bond class ``k`` gets
``exp(-lam (dL/dE_ijk + dL/dE_jik))``, because the symmetric edge tensor holds each pair twice. ``L`` is
summed over the batch, so each graph's gradient is its own and ``lam`` does not depend on the batch size.
(DiGress's ``guidance_diffusion_model_discrete.py``, ``cond_fn``, averages the MSE over the batch and
tilts a pair by the average ``(dL/dE_ij + dL/dE_ji) / 2``: ``lam`` here equals its ``lambda_guidance``
divided by ``B`` on nodes and by ``2 B`` on edges.) Guidance changes the sampled distribution only; at
``lam = 0`` :func:`guided_sample` reproduces :func:`jaxdiff.graphs.discrete.sample` draw for draw.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.graphs import discrete
from jaxdiff.graphs.graph import Graph, pair_mask
from jaxdiff.graphs.nets import check_inputs, DiGressLayer, FeatureMLP, symmetrize

__all__ = [
    "PropertyPredictor",
    "predictor_loss",
    "guidance_grad",
    "guide_posterior",
    "guided_sample",
]


class PropertyPredictor(nn.Module):
    """Regressor on noisy graphs: (graph_t, t) -> (B, num_targets).

    graph_t: nodes (B, n, a), edges (B, n, n, b), mask (B, n) (one-hots, or any floats: the gradient
    with respect to them is what guidance uses); t () or (B,) float in [0, 1]. Node inputs are the node
    classes and the node's summed bond-class mass (a differentiable degree per bond type); edges and the
    global channel (t) go through ``depth`` DiGress X-E-y layers. The readout is a sum of per-node terms
    over real nodes plus a global term, suited to additive properties such as Crippen logP; both
    are zero-initialised. Permutation-invariant; padded slots are ignored.
    """

    num_node_classes: int
    num_edge_classes: int
    num_targets: int = 1
    hidden_nodes: int = 32
    hidden_edges: int = 8
    hidden_global: int = 16
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0

    @nn.compact
    def __call__(self, graph: Graph, t: jax.Array) -> jax.Array:
        a, b = self.num_node_classes, self.num_edge_classes
        if self.num_targets < 1:
            raise ValueError(f"num_targets must be >= 1, got {self.num_targets}")
        dx, de, dy = self.hidden_nodes, self.hidden_edges, self.hidden_global
        graph, t = check_inputs(graph, t, a, b)
        degree = graph.edges[..., 1:].sum(2)  # (B, n, b - 1)
        x = FeatureMLP(dx, dx, final_relu=True, name="in_x")(jnp.concatenate([graph.nodes, degree], -1))
        e = symmetrize(FeatureMLP(de, de, final_relu=True, name="in_e")(graph.edges))
        y = FeatureMLP(dy, dy, final_relu=True, name="in_y")(t[:, None])
        for i in range(self.depth):
            x, e, y = DiGressLayer(self.num_heads, self.mlp_ratio, name=f"layer{i}")(x, e, y, graph.mask)
        zeros = nn.initializers.zeros  # the prediction starts at 0, the mean of a standardised target
        per_node = nn.Dense(self.num_targets, kernel_init=zeros, use_bias=False, name="out_x")(x)
        per_node = jnp.where(graph.mask[..., None], per_node, 0.0)
        return per_node.sum(1) + nn.Dense(self.num_targets, kernel_init=zeros, name="out_y")(y)


def _check_target(target, batch: int) -> jax.Array:
    target = jnp.asarray(target)
    if target.ndim != 2 or target.shape[0] != batch or not jnp.issubdtype(target.dtype, jnp.floating):
        raise ValueError(f"target must be a float array of shape (B, num_targets) with B = {batch}, "
                         f"got {target.dtype} {target.shape}")
    return target


def _check_width(pred: jax.Array, target: jax.Array) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"target has shape {target.shape} but the predictor returns {pred.shape}: "
                         "its width must equal the predictor's num_targets")


def _check_scale(scale) -> jax.Array:
    """Guidance weight lam: a scalar >= 0 (checked when concrete; traced values pass through)."""
    if isinstance(scale, jax.core.Tracer):
        if jnp.shape(scale) != ():
            raise ValueError(f"scale must be a scalar, got shape {jnp.shape(scale)}")
        return scale
    value = np.asarray(scale)
    if value.shape != () or not np.issubdtype(value.dtype, np.number) or not np.isfinite(value) or value < 0:
        raise ValueError(f"scale (the guidance weight lambda) must be a finite scalar >= 0, got {scale!r}")
    return jnp.asarray(value, jnp.result_type(float))


def predictor_loss(predict: Callable, params, graph0: Graph, target: jax.Array, key: jax.Array, *,
                   transition, num_steps: int) -> tuple[jax.Array, dict[str, jax.Array]]:
    """MSE of the predictor on ``z_t ~ q(z_t | x_0)`` at ``t ~ U{1..T}`` (the times the sampler queries).

    ``predict(params, graph_t, t / T (B,)) -> (B, k)``; graph0 one-hot with batch (B,); target (B, k)
    float (e.g. standardised properties of the clean graphs; NaN entries are left out of the mean).
    Returns (loss, terms) with terms ``mse`` (= loss).
    """
    target = _check_target(target, graph0.mask.shape[0])
    key_t, key_z = jax.random.split(key)
    t = discrete.sample_timesteps(key_t, graph0.mask.shape[:-1], num_steps)
    graph_t = discrete.forward_sample(key_z, graph0, t, transition, num_steps)
    pred = predict(params, graph_t, t / num_steps)
    _check_width(pred, target)
    known = ~jnp.isnan(target)
    err = jnp.where(known, pred - jnp.where(known, target, 0.0), 0.0)
    mse = (err ** 2).sum() / jnp.maximum(known.sum(), 1)
    return mse, {"mse": mse}


def guidance_grad(predict_fn: Callable, graph_t: Graph, t: jax.Array, target: jax.Array) -> Graph:
    """Gradient of ``L = sum_b ||target_b - predict_fn(graph_t, t)_b||^2`` per categorical variable.

    predict_fn(graph_t, t (B,)) -> (B, k), parameters closed over; graph_t one-hot, batch (B,);
    t (B,) float in [0, 1]; target (B, k) float, NaN entries ignored (an all-NaN row is unguided).
    Returns a Graph of nodes (B, n, a) ``dL/dX`` and edges (B, n, n, b) ``dL/dE_ij + dL/dE_ji``
    (the gradient for the pair ``{i, j}``, symmetric), zero on padding and the diagonal.
    """
    target = _check_target(target, graph_t.mask.shape[0])
    known = ~jnp.isnan(target)

    def loss(nodes: jax.Array, edges: jax.Array) -> jax.Array:
        pred = predict_fn(Graph(nodes, edges, graph_t.mask), t)
        _check_width(pred, target)
        return (jnp.where(known, pred - jnp.where(known, target, 0.0), 0.0) ** 2).sum()

    g_x, g_e = jax.grad(loss, argnums=(0, 1))(graph_t.nodes, graph_t.edges)
    g_e = g_e + jnp.swapaxes(g_e, -2, -3)
    return Graph(g_x * graph_t.mask[..., None], g_e * pair_mask(graph_t.mask)[..., None], graph_t.mask)


def _tilt(probs: jax.Array, grad: jax.Array, scale: jax.Array) -> jax.Array:
    """probs (..., k) times exp(-scale grad), rescaled to the row's original mass; exact at scale 0."""
    ok = probs > 0
    tilt = -scale * grad
    top = jnp.max(jnp.where(ok, tilt, -jnp.inf), -1, keepdims=True)
    tilt = jnp.where(ok, tilt - jnp.where(jnp.isfinite(top), top, 0.0), 0.0)
    weighted = jnp.where(ok, probs * jnp.exp(tilt), 0.0)
    total, mass = weighted.sum(-1, keepdims=True), probs.sum(-1, keepdims=True)
    return jnp.where(total > 0, weighted * (mass / jnp.where(total > 0, total, 1.0)), probs)


def guide_posterior(probs: Graph, grad: Graph, scale) -> Graph:
    """Tilt reverse-step probabilities by the predictor gradient: ``p_k exp(-scale grad_k)``, renormalised.

    probs: Graph of ``p_theta(z_{t-1} | z_t)``, nodes (B, n, a), edges (B, n, n, b), rows summing to 1
    on real elements and 0 on padding; grad: :func:`guidance_grad` (same shapes); scale () >= 0.
    Rows keep their mass (padding stays 0), classes with zero probability stay 0, and edges stay
    symmetric when grad and probs are. At scale 0 the result equals ``probs`` exactly.
    """
    if grad.nodes.shape != probs.nodes.shape or grad.edges.shape != probs.edges.shape:
        raise ValueError(f"grad must match probs: nodes {probs.nodes.shape}, edges {probs.edges.shape}; "
                         f"got {grad.nodes.shape}, {grad.edges.shape}")
    scale = _check_scale(scale)
    return Graph(_tilt(probs.nodes, grad.nodes, scale), _tilt(probs.edges, grad.edges, scale), probs.mask)


def guided_sample(denoise_fn: Callable, predict_fn: Callable, key: jax.Array, mask: jax.Array, target: jax.Array,
                  *, transition, num_steps: int, scale, sample_steps: int | None = None,
                  cond: dict | None = None) -> Graph:
    """Ancestral sampling as :func:`jaxdiff.graphs.discrete.sample`, each step tilted towards ``target``.

    denoise_fn(graph_t, t / T (B,), **cond) -> (node_logits, edge_logits) and predict_fn(graph_t,
    t / T (B,)) -> (B, k), parameters closed over; mask (B, n) bool; target (B, k) float in the
    predictor's units (NaN: no guidance on that entry); scale (the guidance weight lam) () >= 0, may be
    traced (one compilation for every lam). Same key schedule as ``discrete.sample``, so scale 0
    gives identical graphs for the same key. Returns a one-hot Graph (B, n, a), (B, n, n, b).
    """
    num_steps = discrete._check_int("num_steps", num_steps, 1)
    sample_steps = num_steps if sample_steps is None else discrete._check_int("sample_steps", sample_steps, 1)
    if sample_steps > num_steps:
        raise ValueError(f"sample_steps={sample_steps} exceeds num_steps={num_steps}")
    mask = jnp.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"mask must be a (B, n) bool array, got {mask.dtype} {mask.shape}")
    target = _check_target(target, mask.shape[0])
    scale = _check_scale(scale)
    cond = {} if cond is None else cond
    key_prior, key_steps = jax.random.split(key)
    graph_T = discrete.sample_graph(key_prior, discrete.prior_probs(transition, mask))

    def step(graph_t: Graph, inputs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[Graph, None]:
        t_int, s_int, step_key = inputs
        t, s = jnp.full(mask.shape[:-1], t_int), jnp.full(mask.shape[:-1], s_int)
        probs = discrete._reverse_probs(denoise_fn, graph_t, t, s, transition, num_steps, cond)
        grad = guidance_grad(predict_fn, graph_t, t / num_steps, target)
        return discrete.sample_graph(step_key, guide_posterior(probs, grad, scale)), None

    times = np.round(np.linspace(num_steps, 0, sample_steps + 1)).astype(np.int32)
    steps = (jnp.asarray(times[:-1]), jnp.asarray(times[1:]), jax.random.split(key_steps, sample_steps))
    graph0, _ = jax.lax.scan(step, graph_T, steps)
    return graph0
