"""A small CNN on the 8x8 digits whose penultimate layer is the feature space for FD.

Training runs on the host CPU whatever the default device (fixed seed, fixed batch
order, one jitted ``scan``; a few seconds), so it is deterministic and gives a GPU or
TPU machine the network a CPU one gets; the parameters are cached on disk with
``flax.serialization`` under a version key, so every run scores samples with the
same network. Its products ask for float32 on every device (``Precision.HIGHEST``; see
the [precision policy][precision-policy]), so features computed on an accelerator are
the float32 features. Bump ``VERSION`` whenever the architecture or recipe changes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from jaxdiff.data.digits import load_digits

VERSION = "v2"
NUM_CLASSES = 10
FEATURE_DIM = 64
TRAIN_STEPS = 800
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4
SEED = 0
_EVAL_BATCH = 512
_FLOAT32 = jax.lax.Precision.HIGHEST  # GPUs would round float32 products to TF32, TPUs to bfloat16


class DigitsNet(nn.Module):
    """(N, 8, 8, 1) in [-1, 1] -> (features (N, FEATURE_DIM), logits (N, 10)), float32 products."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(32, (3, 3), padding="VALID", precision=_FLOAT32)(x))  # (N, 6, 6, 32)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))  # (N, 3, 3, 32)
        h = nn.relu(nn.Dense(FEATURE_DIM, precision=_FLOAT32)(x.reshape(x.shape[0], -1)))
        return h, nn.Dense(NUM_CLASSES, precision=_FLOAT32)(h)


_NET = DigitsNet()
_forward = jax.jit(_NET.apply)


@dataclasses.dataclass(frozen=True)
class DigitsClassifier:
    """Trained ``DigitsNet`` parameters plus how they were obtained.

    ``source`` is ``"trained"`` or ``"cache"``; ``train_seconds`` is the
    wall time of the original training run (also when loaded from cache).
    """

    params: Any
    test_accuracy: float
    train_seconds: float
    source: str

    def apply(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(N, 8, 8, 1) -> (features float32 (N, FEATURE_DIM), logits float32 (N, 10))."""
        return _apply_batched(self.params, images)

    def features(self, images) -> np.ndarray:
        """(N, 8, 8, 1) in [-1, 1] -> penultimate ReLU activations (N, FEATURE_DIM)."""
        return self.apply(images)[0]

    def logits(self, images) -> np.ndarray:
        """(N, 8, 8, 1) in [-1, 1] -> class logits (N, 10)."""
        return self.apply(images)[1]


def _apply_batched(params, images) -> tuple[np.ndarray, np.ndarray]:
    """Forward pass in fixed-size padded batches (one compile for any N)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != (8, 8, 1) or x.shape[0] < 1:
        raise ValueError(f"images must have shape (N, 8, 8, 1) with N >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images must be finite")
    n = x.shape[0]
    x = np.concatenate([x, np.zeros(((-n) % _EVAL_BATCH, 8, 8, 1), np.float32)])
    outs = [_forward(params, x[i : i + _EVAL_BATCH]) for i in range(0, len(x), _EVAL_BATCH)]
    feats, logits = (np.concatenate([np.asarray(o[j]) for o in outs])[:n] for j in (0, 1))
    return feats, logits


def cache_path() -> Path:
    """``$JAXDIFF_CACHE/digits_classifier_{VERSION}.msgpack`` (default dir ``~/.cache/jaxdiff``)."""
    root = os.environ.get("JAXDIFF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jaxdiff")
    return Path(root) / f"digits_classifier_{VERSION}.msgpack"


def _init_params():
    return _NET.init(jax.random.PRNGKey(SEED), jnp.zeros((1, 8, 8, 1), jnp.float32))


def train_digits_classifier() -> DigitsClassifier:
    """Train ``DigitsNet`` on the digits train split, on the host CPU; deterministic, a few seconds."""
    with jax.default_device(jax.devices("cpu")[0]):
        return _train()


def _train() -> DigitsClassifier:
    start = time.perf_counter()
    images, labels = load_digits("train")
    rng = np.random.default_rng(SEED)
    epochs = -(-TRAIN_STEPS * BATCH_SIZE // len(labels))
    order = np.concatenate([rng.permutation(len(labels)) for _ in range(epochs)])
    batches = order[: TRAIN_STEPS * BATCH_SIZE].reshape(TRAIN_STEPS, BATCH_SIZE)
    schedule = optax.cosine_decay_schedule(LEARNING_RATE, TRAIN_STEPS)
    tx = optax.adamw(schedule, weight_decay=WEIGHT_DECAY)

    @jax.jit
    def fit(params, x, y, batches):
        def loss_fn(p, xb, yb):
            logits = _NET.apply(p, xb)[1]
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        def step(carry, idx):
            p, opt_state = carry
            grads = jax.grad(loss_fn)(p, x[idx], y[idx])
            updates, opt_state = tx.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), batches)
        return params

    params = jax.device_get(fit(_init_params(), images, labels, batches))
    seconds = time.perf_counter() - start
    test_images, test_labels = load_digits("test")
    accuracy = float(np.mean(np.argmax(_apply_batched(params, test_images)[1], -1) == test_labels))
    return DigitsClassifier(params, accuracy, seconds, "trained")


def _read_cache(path: Path) -> DigitsClassifier | None:
    try:
        state = serialization.msgpack_restore(path.read_bytes())
        if state.get("version") != VERSION:
            return None
        params = serialization.from_state_dict(_init_params(), state["params"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return DigitsClassifier(params, float(state["test_accuracy"]), float(state["train_seconds"]), "cache")


def _write_cache(path: Path, clf: DigitsClassifier) -> None:
    state = {
        "version": VERSION,
        "params": serialization.to_state_dict(clf.params),
        "test_accuracy": clf.test_accuracy,
        "train_seconds": clf.train_seconds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(serialization.msgpack_serialize(state))
    os.replace(tmp, path)


def load_digits_classifier(path: str | os.PathLike | None = None) -> DigitsClassifier:
    """Load the classifier from ``path`` (default ``cache_path()``); train and cache it if absent or stale."""
    path = Path(path) if path is not None else cache_path()
    clf = _read_cache(path)
    if clf is None:
        clf = train_digits_classifier()
        _write_cache(path, clf)
    return clf


@functools.lru_cache(maxsize=4)
def _default_classifier(path: str) -> DigitsClassifier:
    return load_digits_classifier(path)


def default_classifier() -> DigitsClassifier:
    """``load_digits_classifier()``, memoised per cache path within the process."""
    return _default_classifier(str(cache_path()))


def digit_features(images, classifier: DigitsClassifier | None = None) -> np.ndarray:
    """(N, 8, 8, 1) in [-1, 1] -> penultimate activations float32 (N, FEATURE_DIM)."""
    return (classifier or default_classifier()).features(images)


def digit_logits(images, classifier: DigitsClassifier | None = None) -> np.ndarray:
    """(N, 8, 8, 1) in [-1, 1] -> logits float32 (N, 10)."""
    return (classifier or default_classifier()).logits(images)
