"""torchvision RAFT checkpoints -> jaxdiff: the name table, every tensor used once, equal flows, bad input.

The parity tests run torchvision's ``raft_large`` / ``raft_small`` with their random initialisation
(batch-norm weights and statistics randomised too, so a swapped pair would show) and jaxdiff's
``RAFT`` on the converted weights, on one synthetic pair of odd size (131x133, padded to 136x136:
17x17 feature maps, so every pyramid level pools an odd size). They need torch and torchvision
(requirements-parity.txt) and skip without them.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.flow import convert, raft
from jaxdiff.flow.data import make_dataset

SIZE = (131, 133)
ITERS = 32
TOL32 = 1e-4


def _variable_shapes(size):
    """(collection, path) -> shape of every variable of jaxdiff's RAFT of ``size``."""
    image = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    model = raft.RAFT(small=size == "small")
    variables = jax.eval_shape(lambda a, b: model.init(jax.random.key(0), a, b, 1), image, image)
    return {(p[0].key, "/".join(k.key for k in p[1:])): leaf.shape
            for p, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]}


def _torch_layout(shape):
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape


def _numbered_state_dict(size):
    """A state dict of arrays in torchvision's names and layouts, entry values 0, 1, 2, ... across tensors."""
    shapes, state, offset = _variable_shapes(size), {}, 0
    for key, target in convert.torchvision_names(size).items():
        shape = () if target is None else _torch_layout(shapes[target])
        n = int(np.prod(shape))
        state[key] = np.arange(offset, offset + n, dtype=np.float32).reshape(shape) if target else np.int64(0)
        offset += n if target else 0
    return state, offset


def _relative_errors(flows, reference):
    """max |flow - reference| / max |reference| per iteration, over (N, B, H, W, 2) stacks."""
    flows, reference = np.asarray(flows), np.asarray(reference)
    assert flows.shape == reference.shape, (flows.shape, reference.shape)
    return np.abs(flows - reference).max(axis=(1, 2, 3, 4)) / np.abs(reference).max(axis=(1, 2, 3, 4))


# ----------------------------------------------------------------------------- the table (no torch)


@pytest.mark.parametrize("size", convert.SIZES)
def test_names_fill_every_variable_exactly_once(size):
    table = convert.torchvision_names(size)
    targets = [t for t in table.values() if t is not None]
    assert len(targets) == len(set(targets))
    assert set(targets) == set(_variable_shapes(size))
    assert all(key.endswith(".num_batches_tracked") for key, t in table.items() if t is None)
    # Every entry of every tensor lands in exactly one place, in the right layout.
    state, total = _numbered_state_dict(size)
    variables = convert.variables_from_torchvision(state, size)
    values = np.concatenate([np.ravel(v) for v in jax.tree.leaves(variables)])
    np.testing.assert_array_equal(np.sort(values), np.arange(total))
    kernel = variables["params"]["fnet"]["Conv_0"]["kernel"]  # (7, 7, 3, C) from (C, 3, 7, 7)
    np.testing.assert_array_equal(kernel, state["feature_encoder.convnormrelu.0.weight"].transpose(2, 3, 1, 0))
    assert ("batch_stats" in variables) == (size == "large")


# ----------------------------------------------------------------------------- bad input (no torch)


def test_bad_state_dicts_name_the_first_key_that_does_not_fit():
    large, _ = _numbered_state_dict("large")
    small, _ = _numbered_state_dict("small")
    with pytest.raises(ValueError, match=r"which raft_small lacks; it is a key of raft_large's: .* size='large'"):
        convert.variables_from_torchvision(large, "small")
    with pytest.raises(ValueError, match=r"which raft_large lacks; .*size='small'"):
        convert.variables_from_torchvision(small, "large")
    with pytest.raises(ValueError, match=r"lacks raft_large's key 'update_block.flow_head.conv2.bias'"):
        convert.variables_from_torchvision({k: v for k, v in large.items() if k != "update_block.flow_head.conv2.bias"})
    with pytest.raises(ValueError, match=r"'module.fnet.conv1.weight', which raft_large lacks; is this a torchvision"):
        convert.variables_from_torchvision({"module.fnet.conv1.weight": np.zeros((64, 3, 7, 7))} | large)
    key = "update_block.recurrent_block.convgru1.convz.weight"
    shapes = r"has shape \(128, 384, 5, 1\), raft_large's is \(128, 384, 1, 5\)"
    with pytest.raises(ValueError, match=rf"state_dict\['{key}'\] {shapes}"):
        convert.variables_from_torchvision(large | {key: large[key].transpose(0, 1, 3, 2)})
    with pytest.raises(ValueError, match=r"state_dict\['model'\] is a mapping, not a tensor"):
        convert.variables_from_torchvision({"model": large, "epoch": 10})  # a training checkpoint
    with pytest.raises(ValueError, match="mapping"):
        convert.variables_from_torchvision(list(large.values()))
    with pytest.raises(ValueError, match="size"):
        convert.variables_from_torchvision(large, "medium")
    with pytest.raises(ValueError, match="size"):
        convert.torchvision_names("base")


# ----------------------------------------------------------------------------- torchvision


@pytest.fixture(scope="module")
def peer():
    """(torch, torchvision.models.optical_flow), torch on one thread (it only slows under shared cores)."""
    torch = pytest.importorskip("torch")
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed (see requirements-parity.txt)")
    # RAFT uses none of torchvision's compiled operators; registering their fake kernels fails where
    # those do not load (a CUDA build of torchvision next to the CPU torch wheel), so that module is skipped.
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    from torchvision.models import optical_flow

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch, optical_flow
    torch.set_num_threads(threads)


def _torchvision_model(peer, size, seed):
    """torchvision's RAFT of ``size`` in eval mode, random weights, batch norms randomised too."""
    torch, optical_flow = peer
    torch.manual_seed(seed)
    model = (optical_flow.raft_large if size == "large" else optical_flow.raft_small)().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def _reference_flows(peer, model, image1, image2, iters, flow_init=None):
    """torchvision's ``RAFT.forward`` step by step, started at ``coords0 + flow_init`` as the original RAFT
    (torchvision has no ``flow_init``), with its coordinate grid in the model's dtype (torchvision's is
    float32, which fails in float64). NCHW images in [-1, 1] -> (iters, B, H, W, 2) numpy."""
    torch, optical_flow = peer
    from torchvision.models.optical_flow._utils import make_coords_grid, upsample_flow

    with torch.no_grad():
        fmap1, fmap2 = torch.chunk(model.feature_encoder(torch.cat([image1, image2])), 2)
        model.corr_block.build_pyramid(fmap1, fmap2)
        context = model.context_encoder(image1)
        hidden = model.update_block.hidden_state_size
        net, inp = torch.split(context, [hidden, context.shape[1] - hidden], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        b, _, h, w = fmap1.shape
        coords0 = make_coords_grid(b, h, w).to(fmap1.dtype)
        coords1 = coords0 if flow_init is None else coords0 + flow_init
        flows = []
        for _ in range(iters):
            corr = model.corr_block.index_pyramid(centroids_coords=coords1)
            net, delta = model.update_block(net, inp, corr, coords1 - coords0)
            coords1 = coords1 + delta
            mask = None if model.mask_predictor is None else model.mask_predictor(net)
            flows.append(upsample_flow(coords1 - coords0, up_mask=mask))
    return _nhwc(flows)


def _nhwc(flows):
    return np.stack([f.permute(0, 2, 3, 1).numpy() for f in flows])


@pytest.fixture(scope="module")
def pair():
    """One odd-size synthetic pair (1, 131, 133, 3) in [0, 255], and a warm start (1, 17, 17, 2) from its flow."""
    d = make_dataset("val", 1, SIZE, "chairs", seed=4)
    flow, _ = raft.pad_to_multiple(jnp.asarray(d["flow"]), 8)
    return d["image1"], d["image2"], np.array(flow[:, 4::8, 4::8] / 8)


def _torch_images(peer, *images, dtype=None):
    """NHWC [0, 255] -> NCHW [-1, 1] (torchvision's input), padded as ``raft.pad_to_multiple`` does."""
    torch, _ = peer
    out = []
    for image in images:
        x = torch.from_numpy(np.asarray(image)).permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        ph, pw = -h % 8, -w % 8
        x = torch.nn.functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="replicate")
        x = x.to(dtype or x.dtype)
        out.append(2 * (x / 255.0) - 1)
    return out


@pytest.mark.parametrize("size", convert.SIZES)
def test_torchvision_state_dict_is_used_exactly_once(peer, size):
    torch, _ = peer
    model = _torchvision_model(peer, size, seed=0)
    state = model.state_dict()
    assert set(state) == set(convert.torchvision_names(size))
    numbered, offset = {}, 0
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            numbered[key] = value
            continue
        numbered[key] = torch.arange(offset, offset + value.numel(), dtype=torch.float32).reshape(value.shape)
        offset += value.numel()
    values = np.concatenate([np.ravel(v) for v in jax.tree.leaves(convert.variables_from_torchvision(numbered, size))])
    np.testing.assert_array_equal(np.sort(values), np.arange(offset))
    params = sum(p.numel() for p in model.parameters())
    assert params == {"large": 5_257_536, "small": 990_162}[size]


@pytest.mark.parametrize("size", convert.SIZES)
def test_flows_match_torchvision(peer, pair, size):
    """32 iterations, every iteration's flow: from zero (torchvision's ``forward``) and from a warm start."""
    torch, _ = peer
    image1, image2, warm = pair
    model = _torchvision_model(peer, size, seed=1)
    variables = convert.variables_from_torchvision(model.state_dict(), size)
    t1, t2 = _torch_images(peer, image1, image2)
    (j1, _), (j2, _) = raft.pad_to_multiple(jnp.asarray(image1)), raft.pad_to_multiple(jnp.asarray(image2))
    ours = raft.RAFT(small=size == "small", unroll=1)  # rolled: 32 unrolled refinements compile slowly
    run = jax.jit(lambda v, a, b, f: ours.apply(v, a, b, ITERS, flow_init=f))

    with torch.no_grad():
        cold = _nhwc(model(t1, t2, num_flow_updates=ITERS))
    errors = _relative_errors(run(variables, j1, j2, jnp.zeros_like(warm)), cold)
    assert errors.max() <= TOL32, errors

    reference = _reference_flows(peer, model, t1, t2, ITERS, torch.from_numpy(warm).permute(0, 3, 1, 2))
    errors = _relative_errors(run(variables, j1, j2, warm), reference)
    assert errors.max() <= TOL32, errors
    assert _relative_errors(reference, cold).min() > 0.01  # the warm start matters

    # Not a trivial agreement: one 3x3 kernel rotated by 180 degrees (convolution taken for
    # correlation) moves the flow by far more than the tolerance.
    path = ("params", "refine", "update_block", "Conv_0", "kernel")  # the flow head's last 3x3
    broken = jax.tree_util.tree_map_with_path(
        lambda p, x: x[::-1, ::-1] if tuple(k.key for k in p) == path else x, variables)
    assert _relative_errors(run(broken, j1, j2, warm), reference).max() > 100 * TOL32


@pytest.mark.parametrize("size", convert.SIZES)
def test_estimate_flow_on_odd_frames_matches_torchvision(peer, pair, size):
    """The user's path: any frame size, padded to multiples of 8 by edge replication, 12 iterations."""
    torch, _ = peer
    image1, image2, _ = pair
    model = _torchvision_model(peer, size, seed=2)
    variables = convert.variables_from_torchvision(model.state_dict(), size)
    with torch.no_grad():
        reference = model(*_torch_images(peer, image1, image2), num_flow_updates=12)[-1]
    top, left = (-SIZE[0] % 8) // 2, (-SIZE[1] % 8) // 2
    reference = _nhwc([reference])[:, :, top : top + SIZE[0], left : left + SIZE[1]]
    ours = raft.RAFT(small=size == "small")
    flow = jax.jit(lambda v, a, b: raft.estimate_flow(ours, v, a, b, iters=12))(variables, image1, image2)
    assert flow.shape == (1, *SIZE, 2)
    assert _relative_errors(flow[None], reference).max() <= TOL32


@pytest.mark.parametrize("size, tol", [("large", 1e-12), ("small", 1e-7)])
def test_flows_match_torchvision_in_float64(peer, pair, size, tol):
    """float64 on both sides, warm start, 4 iterations. RAFT-small stops at ~1e-8: torchvision divides its
    correlation by ``torch.sqrt(torch.tensor(128))``, a float32 square root (that of 256 is exact)."""
    torch, _ = peer
    image1, image2, warm = pair
    model = _torchvision_model(peer, size, seed=3).double()
    t1, t2 = _torch_images(peer, image1, image2, dtype=torch.float64)
    warm = warm.astype(np.float64)
    reference = _reference_flows(peer, model, t1, t2, 4, torch.from_numpy(warm).permute(0, 3, 1, 2))
    with jax.enable_x64(True):
        variables = convert.variables_from_torchvision(model.state_dict(), size)
        assert jax.tree.leaves(variables)[0].dtype == jnp.float64
        (j1, _), (j2, _) = (raft.pad_to_multiple(jnp.asarray(x, jnp.float64)) for x in (image1, image2))
        ours = raft.RAFT(small=size == "small", corr_kernel="xla")  # the C++ lookup is float32
        flows = jax.jit(lambda v, a, b, f: ours.apply(v, a, b, 4, flow_init=f))(variables, j1, j2, warm)
        assert flows.dtype == jnp.float64
    assert _relative_errors(flows, reference).max() <= tol


# ----------------------------------------------------------------------------- checkpoint files


def test_load_torchvision_reads_a_saved_state_dict_and_rejects_other_files(peer, tmp_path):
    torch, _ = peer
    model = _torchvision_model(peer, "small", seed=5)
    path = tmp_path / "raft_small.pth"
    torch.save(model.state_dict(), path)
    loaded = convert.load_torchvision(str(path), "small")
    expected = convert.variables_from_torchvision(model.state_dict(), "small")
    jax.tree.map(np.testing.assert_array_equal, loaded, expected)
    with pytest.raises(ValueError, match="which raft_large lacks"):
        convert.load_torchvision(str(path), "large")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="mapping"):
        convert.load_torchvision(str(tmp_path / "list.pth"), "small")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a saved state dict"):
        convert.load_torchvision(str(tmp_path / "text.pth"), "small")
    with pytest.raises(FileNotFoundError):
        convert.load_torchvision(str(tmp_path / "missing.pth"), "small")
