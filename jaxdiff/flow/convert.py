"""torchvision's RAFT checkpoints as ``jaxdiff.flow.raft.RAFT`` variables: a pure mapping of names and layouts.

torchvision's ``raft_large`` / ``raft_small`` (``torchvision.models.optical_flow``) and
``RAFT(small=False)`` / ``RAFT(small=True)`` are the same networks; ``variables_from_torchvision``
renames each tensor and transposes convolution kernels from OIHW to HWIO, nothing else.
``torchvision_names`` is the table it follows: every torchvision parameter and buffer with the
variable it fills. Batch-norm ``num_batches_tracked`` counters map to nothing: jaxdiff's batch norm
has a fixed momentum, so the counter has no role.

The converted model takes jaxdiff's inputs, images (B, H, W, 3) in [0, 255] (torchvision's takes
them scaled to [-1, 1], which ``RAFT`` does itself), and gives the same flows, per iteration, as
torchvision's ``RAFT.forward``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.flow.raft import RAFT

SIZES = ("large", "small")
_ARCH = {"large": "raft_large", "small": "raft_small"}


# ----------------------------------------------------------------------------- the table


def _conv(tv: str, jd: str) -> dict[str, tuple[str, str] | None]:
    return {f"{tv}.weight": ("params", f"{jd}/kernel"), f"{tv}.bias": ("params", f"{jd}/bias")}


def _batch_norm(tv: str, jd: str) -> dict[str, tuple[str, str] | None]:
    return {
        f"{tv}.weight": ("params", f"{jd}/scale"),
        f"{tv}.bias": ("params", f"{jd}/bias"),
        f"{tv}.running_mean": ("batch_stats", f"{jd}/mean"),
        f"{tv}.running_var": ("batch_stats", f"{jd}/var"),
        f"{tv}.num_batches_tracked": None,
    }


def _encoder(tv: str, jd: str, small: bool, batch_norm: bool) -> dict:
    """torchvision ``FeatureEncoder`` -> jaxdiff ``Encoder`` (instance norm and no norm have no variables)."""
    block, convs = ("BottleneckBlock", 3) if small else ("ResidualBlock", 2)
    table = _conv(f"{tv}.convnormrelu.0", f"{jd}/Conv_0")
    if batch_norm:
        table |= _batch_norm(f"{tv}.convnormrelu.1", f"{jd}/norm1")
    for i in range(6):
        layer, index = divmod(i, 2)
        t, j = f"{tv}.layer{layer + 1}.{index}", f"{jd}/{block}_{i}"
        for c in range(convs):
            table |= _conv(f"{t}.convnormrelu{c + 1}.0", f"{j}/Conv_{c}")
            if batch_norm:
                table |= _batch_norm(f"{t}.convnormrelu{c + 1}.1", f"{j}/norm{c + 1}")
        if index == 0 and layer > 0:  # strided: a projected shortcut
            table |= _conv(f"{t}.downsample.0", f"{j}/Conv_{convs}")
            if batch_norm:
                table |= _batch_norm(f"{t}.downsample.1", f"{j}/norm{convs + 1}")
    return table | _conv(f"{tv}.conv", f"{jd}/Conv_1")


@functools.cache
def torchvision_names(size: str = "large") -> dict[str, tuple[str, str] | None]:
    """torchvision state-dict key -> (collection, "/"-joined path) in ``RAFT``'s variables, or None
    for the batch-norm counters that map to nothing; in torchvision's order.

    Args:
        size: "large" (``raft_large``, ``RAFT()``) or "small" (``raft_small``, ``RAFT(small=True)``).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    small = size == "small"
    table = _encoder("feature_encoder", "fnet", small, batch_norm=False)
    table |= _encoder("context_encoder", "cnet", small, batch_norm=not small)
    ub, me = "update_block", "refine/update_block/MotionEncoder_0"
    motion = (("convcorr1", 0), ("convflow2", 1), ("convflow1", 2), ("conv", 3)) if small else (
        ("convcorr2", 0), ("convcorr1", 1), ("convflow2", 2), ("convflow1", 3), ("conv", 4))
    for name, index in motion:
        table |= _conv(f"{ub}.motion_encoder.{name}.0", f"{me}/Conv_{index}")
    for p in range(1 if small else 2):
        for k, gate in enumerate("zrq"):
            table |= _conv(f"{ub}.recurrent_block.convgru{p + 1}.conv{gate}",
                           f"refine/update_block/ConvGRU_0/Conv_{3 * p + k}")
    table |= _conv(f"{ub}.flow_head.conv2", "refine/update_block/Conv_0")
    table |= _conv(f"{ub}.flow_head.conv1", "refine/update_block/Conv_1")
    if not small:
        table |= _conv("mask_predictor.conv", "refine/update_block/Conv_2")
        table |= _conv("mask_predictor.convrelu.0", "refine/update_block/Conv_3")
    return table


@functools.cache
def _target_shapes(size: str) -> dict[tuple[str, str], tuple[int, ...]]:
    """(collection, path) -> shape of every variable of ``RAFT`` of this size."""
    image = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    model = RAFT(small=size == "small")
    variables = jax.eval_shape(lambda a, b: model.init(jax.random.key(0), a, b, 1), image, image)
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        names = [p.key for p in path]
        shapes[(names[0], "/".join(names[1:]))] = leaf.shape
    return shapes


# ----------------------------------------------------------------------------- conversion


def _array(key: str, value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if not hasattr(value, "shape"):
        raise ValueError(f"state_dict[{key!r}] must be an array, got {type(value).__name__}")
    return np.asarray(value)


def _other_size(key: str, size: str) -> str:
    other = SIZES[1 - SIZES.index(size)]
    if key in torchvision_names(other):
        return f"; it is a key of {_ARCH[other]}'s: convert with size={other!r}"
    return "; is this a torchvision RAFT state dict?"


def variables_from_torchvision(state_dict: Mapping, size: str = "large") -> dict:
    """``RAFT`` variables from a torchvision RAFT state dict.

    Args:
        state_dict: torchvision's ``raft_large().state_dict()`` or ``raft_small().state_dict()``, or a
            checkpoint of them (names -> torch tensors or arrays); dtypes are kept.
        size: "large" (``RAFT()``, which also needs the context encoder's batch-norm statistics) or
            "small" (``RAFT(small=True)``).

    Returns:
        ``{"params": ...}``, and ``"batch_stats"`` for the large model: ``RAFT(small=size == "small")
        .apply(variables, image1, image2, iters)``.

    Raises:
        ValueError: naming the first key that does not fit (unknown, missing, or of another shape).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must be a mapping of {_ARCH[size]} names to tensors, "
                         f"got {type(state_dict).__name__}")
    table, shapes = torchvision_names(size), _target_shapes(size)
    for key in state_dict:
        if isinstance(state_dict[key], Mapping):
            raise ValueError(f"state_dict[{key!r}] is a mapping, not a tensor: pass the state dict it holds")
        if key not in table:
            raise ValueError(f"state_dict has key {key!r}, which {_ARCH[size]} lacks{_other_size(str(key), size)}")
    for key in table:
        if key not in state_dict:
            raise ValueError(f"state_dict lacks {_ARCH[size]}'s key {key!r}")
    flat = {}
    for key, target in table.items():
        value = _array(key, state_dict[key])
        if target is None:
            continue
        shape = shapes[target]
        expected = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape  # OIHW
        if value.shape != expected:
            raise ValueError(f"state_dict[{key!r}] has shape {value.shape}, {_ARCH[size]}'s is {expected}")
        flat[target] = jnp.asarray(value.transpose(2, 3, 1, 0) if value.ndim == 4 else value)
    variables: dict = {}
    for (collection, path), value in flat.items():
        node = variables.setdefault(collection, {})
        *parents, leaf = path.split("/")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return variables


def load_torchvision(path: str, size: str = "large") -> dict:
    """``RAFT`` variables from a torchvision RAFT checkpoint file (a saved state dict; needs torch).

    Args:
        path: a ``.pth`` file of torchvision's RAFT weights, e.g. ``Raft_Large_Weights.DEFAULT.url``
            downloaded.
        size: "large" or "small", as in ``variables_from_torchvision``.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    try:
        import torch
    except ImportError as e:
        raise ImportError("load_torchvision needs torch (pip install torch); "
                          "variables_from_torchvision takes a state dict of arrays without it") from e
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises pickle, zip and runtime errors alike
        raise ValueError(f"{path} is not a saved state dict of {_ARCH.get(size, 'RAFT')}: {e}") from e
    return variables_from_torchvision(state_dict, size)
