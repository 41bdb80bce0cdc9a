"""A small NAS-Bench-201-style network on scikit-learn's 8x8 digits, trained for many cells at once.

The macro skeleton (channels ``C``, every cell of one network the same)::

    8x8x1 ─ stem: 3x3 conv (C) + BN ─ 2x2 average pool ─ cell (C, 4x4)
          ─ reduction: 2x2 average pool, 1x1 conv (2C) + BN ─ cell (2C, 2x2)
          ─ BN, ReLU, global average pool ─ linear (10)

NAS-Bench-201's skeleton (stem, five cells per stage, residual reduction blocks, three stages) is
cut to one cell per stage and two stages, and the reduction keeps only the shortcut path of its
residual block (pool and 1x1 convolution), so the cells do all the spatial processing. Cell
operations follow NAS-Bench-201: ``none`` (zeros), ``skip_connect``, ``nor_conv_1x1`` and
``nor_conv_3x3`` (ReLU, convolution, batch norm with affine parameters), ``avg_pool_3x3``
(stride 1, padding not counted).

One compiled program serves every cell: each edge computes every operation and a one-hot gate
``(6, 5)`` keeps one (the 1x1 convolution is the centre tap of the edge's 3x3 kernel, so an edge
runs one convolution), and ``jax.vmap`` batches cells. Activations are ``(B, P, C)`` with ``P``
the pixels; a 3x3 convolution on the small maps is one matrix product with its unrolled
(Toeplitz) weight, built from the kernel by a constant shift tensor. Batch norm uses the batch's
statistics in training; evaluation uses statistics of a fixed batch of training images
(``eval_stats``), the same for every cell.

Training: SGD with Nesterov momentum, cosine learning rate, weight decay on every parameter,
``steps`` batches drawn in an order fixed by the seed (the same for every cell of a seed); the
initial weights of a cell depend on the seed and the cell's key alone.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.nag.space import EDGES, NUM_EDGES, OPS, check_cells

__all__ = ["Skeleton", "digits_splits", "init_params", "apply", "count_params", "count_flops", "train_and_evaluate"]

NUM_CLASSES = 10
_NONE, _SKIP, _CONV1, _CONV3, _POOL = range(len(OPS))
_OUT_EDGES = {i: [e for e, (a, _) in enumerate(EDGES) if a == i] for i in (0, 1, 2)}
_BN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """The network's width and its training budget.

    Attributes:
        channels: ``C``, the first stage's channels (the second has ``2C``).
        steps: SGD steps.
        batch_size: images per step.
        learning_rate: peak learning rate (cosine decay to 0 over ``steps``).
        momentum: Nesterov momentum.
        weight_decay: L2 coefficient on every parameter.
        stats_batch: training images whose batch-norm statistics serve evaluation.
    """

    channels: int = 8
    steps: int = 30
    batch_size: int = 64
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    stats_batch: int = 512

    def __post_init__(self):
        for name in ("channels", "steps", "batch_size", "stats_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")


def digits_splits(val_size: int = 360, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn digits as ``{"train", "val", "test"}`` -> ``(images (N, 8, 8) float32 in [-1, 1],
    labels (N,) int32)``: ``test`` is ``jaxdiff.data.digits``' test split (360 images), ``val`` a fixed
    random ``val_size`` of its train split (``seed``), ``train`` the rest (1,077 by default)."""
    from jaxdiff.data.digits import load_digits

    x, y = load_digits("train")
    xt, yt = load_digits("test")
    if not 0 < val_size < len(y):
        raise ValueError(f"val_size must be in (0, {len(y)}), got {val_size}")
    perm = np.random.default_rng(seed).permutation(len(y))
    val, train = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    return {"train": (x[train, ..., 0], y[train]), "val": (x[val, ..., 0], y[val]), "test": (xt[..., 0], yt)}


# -- constant operators on n x n maps ------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _shifts(n: int, stride: int = 1) -> np.ndarray:
    """``S[t, p, q] = 1`` when input pixel q is tap t of output pixel p (3x3, padding 1): ``(9, m², n²)``."""
    m = (n - 1) // stride + 1
    s = np.zeros((9, m * m, n * n), np.float32)
    for t in range(9):
        di, dj = t // 3 - 1, t % 3 - 1
        for i in range(m):
            for j in range(m):
                a, b = i * stride + di, j * stride + dj
                if 0 <= a < n and 0 <= b < n:
                    s[t, i * m + j, a * n + b] = 1.0
    return s


@functools.lru_cache(maxsize=None)
def _pool(n: int) -> np.ndarray:
    """3x3 average pooling, stride 1, padding not counted, as a ``(n², n²)`` matrix."""
    p = _shifts(n).sum(0)
    return p / p.sum(1, keepdims=True)


def _unrolled(kernel, n: int):
    """3x3 kernel ``(9, ci, co)`` -> its ``(n² ci, n² co)`` matrix on n x n maps (padding 1)."""
    s = _shifts(n)
    ci, co = kernel.shape[1:]
    return jnp.einsum("tpq,tio->qipo", s, kernel).reshape(n * n * ci, n * n * co)


def _avg2(h, n: int):
    """2x2 average pooling of ``(B, n², c)`` -> ``(B, (n/2)², c)``."""
    b, _, c = h.shape
    return h.reshape(b, n // 2, 2, n // 2, 2, c).mean((2, 4)).reshape(b, (n // 2) ** 2, c)


def _patches(images):
    """``(B, 8, 8)`` -> the 3x3 neighbourhoods ``(B, 64, 9)`` (padding 0)."""
    return jnp.einsum("tpq,bq->bpt", _shifts(8), images.reshape(images.shape[0], 64))


# -- parameters and the network ------------------------------------------------------------------


def _he(key, shape, fan_in):
    return jax.random.normal(key, shape) * np.sqrt(2.0 / fan_in)


def _cell_params(key, c: int) -> dict:
    k1, k3 = jax.random.split(key)
    one, zero = jnp.ones((NUM_EDGES, c)), jnp.zeros((NUM_EDGES, c))
    return dict(w1=_he(k1, (NUM_EDGES, c, c), c), w3=_he(k3, (NUM_EDGES, 9, c, c), 9 * c),
                g1=one, b1=zero, g3=one, b3=zero)


def init_params(key, channels: int) -> dict:
    """Every operation's parameters for ``channels`` = C (the gates pick which are used)."""
    c = int(channels)
    ks = jax.random.split(key, 5)
    return dict(
        stem=_he(ks[0], (9, c), 9), stem_g=jnp.ones(c), stem_b=jnp.zeros(c),
        cell1=_cell_params(ks[1], c),
        reduce=_he(ks[2], (c, 2 * c), c), reduce_g=jnp.ones(2 * c), reduce_b=jnp.zeros(2 * c),
        cell2=_cell_params(ks[3], 2 * c),
        head_g=jnp.ones(2 * c), head_b=jnp.zeros(2 * c),
        fc=jax.random.normal(ks[4], (2 * c, NUM_CLASSES)) / np.sqrt(2 * c), fc_b=jnp.zeros(NUM_CLASSES),
    )


def _norm(h, gamma, beta, name: str, stats, seen: dict):
    """Batch norm over every axis but the last ones of ``gamma``'s shape; ``stats[name]`` (mean, var)
    when given, else the batch's, recorded in ``seen``."""
    axes = tuple(range(h.ndim - gamma.ndim))
    mean, var = (h.mean(axes), h.var(axes)) if stats is None else stats[name]
    seen[name] = (mean, var)
    return (h - mean) * jax.lax.rsqrt(var + _BN_EPS) * gamma + beta


def _cell(h, p: dict, gates, n: int, name: str, stats, seen: dict):
    """One cell on ``(B, n², c)`` with one-hot ``gates`` ``(6, 5)``."""
    b, pixels, c = h.shape
    centre = jnp.zeros((9, 1, 1)).at[4].set(1.0)
    kernel = gates[:, _CONV3, None, None, None] * p["w3"] + gates[:, _CONV1, None, None, None] * centre * p["w1"][:, None]
    gamma = gates[:, _CONV3, None] * p["g3"] + gates[:, _CONV1, None] * p["g1"]
    beta = gates[:, _CONV3, None] * p["b3"] + gates[:, _CONV1, None] * p["b1"]
    pool = jnp.asarray(_pool(n))
    nodes, sums = [h], {1: 0.0, 2: 0.0, 3: 0.0}
    for i in (0, 1, 2):
        x, out = nodes[i], _OUT_EDGES[i]
        w = jnp.concatenate([_unrolled(kernel[e], n).reshape(pixels * c, pixels, c) for e in out], axis=-1)
        conv = (jax.nn.relu(x).reshape(b, pixels * c) @ w.reshape(pixels * c, -1)).reshape(b, pixels, len(out), c)
        conv = _norm(conv, gamma[np.array(out)], beta[np.array(out)], f"{name}_node{i}", stats, seen)
        pooled = jnp.einsum("pq,bqc->bpc", pool, x)
        for k, e in enumerate(out):
            sums[EDGES[e][1]] = sums[EDGES[e][1]] + gates[e, _SKIP] * x + conv[:, :, k] + gates[e, _POOL] * pooled
        nodes.append(sums[i + 1])
    return nodes[3]


def apply(params: dict, gates, patches, stats: dict | None = None):
    """Logits of one network: ``gates`` ``(6, 5)`` one-hot (the cell), ``patches`` ``(B, 64, 9)`` (the
    3x3 neighbourhoods of the images, ``_patches``). Batch norm reads ``stats`` when given, else the
    batch. Returns ``(logits (B, 10), stats)``, the statistics used."""
    seen: dict = {}
    h = _norm(patches @ params["stem"], params["stem_g"], params["stem_b"], "stem", stats, seen)
    h = _cell(_avg2(h, 8), params["cell1"], gates, 4, "cell1", stats, seen)
    h = _norm(_avg2(h, 4) @ params["reduce"], params["reduce_g"], params["reduce_b"], "reduce", stats, seen)
    h = _cell(h, params["cell2"], gates, 2, "cell2", stats, seen)
    h = jax.nn.relu(_norm(h, params["head_g"], params["head_b"], "head", stats, seen)).mean(1)
    return h @ params["fc"] + params["fc_b"], seen


def _gates(cells):
    return jax.nn.one_hot(jnp.asarray(cells), len(OPS), dtype=jnp.float32)


def count_params(cells, channels: int) -> np.ndarray:
    """Trainable parameters of the skeleton with each cell ``(..., 6)`` (only the operations it
    uses), shape ``(...)`` int64."""
    cells = check_cells(cells)
    c = int(channels)
    conv1 = (cells == _CONV1).sum(-1)
    conv3 = (cells == _CONV3).sum(-1)
    fixed = (9 * c + 2 * c) + (c * 2 * c + 4 * c) + 4 * c + (2 * c * NUM_CLASSES + NUM_CLASSES)
    per_op = lambda k: conv1 * (k * k + 2 * k) + conv3 * (9 * k * k + 2 * k)
    return fixed + per_op(c) + per_op(2 * c)


def count_flops(cells, channels: int) -> np.ndarray:
    """Multiply-accumulates of one 8x8 image's forward pass through the convolutions and the linear
    layer (pooling, batch norm and sums not counted), shape ``(...)`` int64."""
    cells = check_cells(cells)
    c = int(channels)
    conv1 = (cells == _CONV1).sum(-1)
    conv3 = (cells == _CONV3).sum(-1)
    fixed = 64 * 9 * c + 4 * c * 2 * c + 2 * c * NUM_CLASSES
    per_op = lambda pixels, k: pixels * (conv1 * k * k + conv3 * 9 * k * k)
    return fixed + per_op(16, c) + per_op(4, 2 * c)


@functools.lru_cache(maxsize=8)
def _program(skeleton: Skeleton):
    """The jitted ``run(keys (A,), gates (A, 6, 5), train (x, y), order (S, B), stats_x, evals) ->
    (correct counts per eval set (A,) each, final training loss (A,))``."""
    s = skeleton

    def loss_fn(params, gates, x, y):
        logits, _ = apply(params, gates, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    def one(key, gates, train_x, train_y, order, stats_x, evals):
        params = init_params(key, s.channels)
        velocity = jax.tree.map(jnp.zeros_like, params)
        lrs = 0.5 * s.learning_rate * (1 + jnp.cos(jnp.pi * jnp.arange(s.steps) / s.steps))

        def step(carry, inputs):
            params, velocity = carry
            idx, lr = inputs
            loss, grads = jax.value_and_grad(loss_fn)(params, gates, train_x[idx], train_y[idx])
            grads = jax.tree.map(lambda g, p: g + s.weight_decay * p, grads, params)
            velocity = jax.tree.map(lambda v, g: s.momentum * v + g, velocity, grads)
            params = jax.tree.map(lambda p, v, g: p - lr * (g + s.momentum * v), params, velocity, grads)
            return (params, velocity), loss

        (params, _), losses = jax.lax.scan(step, (params, velocity), (order, lrs))
        _, stats = apply(params, gates, stats_x)
        correct = tuple(jnp.sum(jnp.argmax(apply(params, gates, x, stats)[0], -1) == y) for x, y in evals)
        return correct, losses[-1]

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None, None, None)))


def train_and_evaluate(cells, keys, seed: int, data: dict, skeleton: Skeleton = Skeleton()) -> dict[str, np.ndarray]:
    """Train the skeleton with each cell from scratch and measure it.

    Args:
        cells: ``(A, 6)`` cells, trained side by side (one compiled program per ``A`` and skeleton).
        keys: ``(A,)`` integers: a cell's initial weights depend on ``(seed, key)`` alone (its index
            in ``unique_cells``, say), so a cell gets the same weights in any batch of cells.
        seed: selects the initial weights (with ``keys``) and the order of the training batches.
        data: ``digits_splits()``: ``"train"`` trains, every other split is measured.
        skeleton: width and training budget.

    Returns:
        ``{split: accuracy (A,) float64}`` for every split but ``"train"``, and ``"train_loss"``
        ``(A,)``, the cross-entropy of the last batch.
    """
    cells = check_cells(cells)
    if cells.ndim != 2:
        raise ValueError(f"cells must have shape (A, {NUM_EDGES}), got {cells.shape}")
    keys = np.asarray(keys)
    if keys.shape != cells.shape[:1]:
        raise ValueError(f"keys must have shape ({len(cells)},) (one per cell), got {keys.shape}")
    if "train" not in data:
        raise ValueError(f"data must hold a 'train' split, got {sorted(data)}")
    train_x, train_y = data["train"]
    rng = np.random.default_rng(seed)
    epochs = -(-skeleton.steps * skeleton.batch_size // len(train_y))
    order = np.concatenate([rng.permutation(len(train_y)) for _ in range(epochs)])
    order = order[:skeleton.steps * skeleton.batch_size].reshape(skeleton.steps, skeleton.batch_size)
    stats_idx = np.random.default_rng(seed + 10_000).permutation(len(train_y))[:skeleton.stats_batch]
    names = [k for k in data if k != "train"]
    evals = tuple((_patches(jnp.asarray(data[k][0])), jnp.asarray(data[k][1])) for k in names)
    base = jax.random.key(seed)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(base, k))(jnp.asarray(keys, jnp.uint32))
    correct, loss = _program(skeleton)(init_keys, _gates(cells), _patches(jnp.asarray(train_x)),
                                       jnp.asarray(train_y), jnp.asarray(order),
                                       _patches(jnp.asarray(train_x[stats_idx])), evals)
    out = {k: np.asarray(n, np.float64) / len(data[k][1]) for k, n in zip(names, correct)}
    out["train_loss"] = np.asarray(loss, np.float64)
    return out
