"""Correlation lookup: parity with RAFT's CorrBlock (NumPy, PyTorch), equivalences, gradients, bad input."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxdiff import _native
from jaxdiff.flow import corr

# ----------------------------------------------------------------------------- NumPy RAFT reference (NCHW)


def np_grid_sample(img, grid):
    """``torch.nn.functional.grid_sample(img, grid, align_corners=True)``: bilinear, zero padding."""
    n, c, h, w = img.shape
    ix = (grid[..., 0] + 1) / 2 * (w - 1)
    iy = (grid[..., 1] + 1) / 2 * (h - 1)
    ix_nw, iy_nw = np.floor(ix), np.floor(iy)
    out = np.zeros((n, c) + grid.shape[1:3], img.dtype)
    corners = [
        (ix_nw, iy_nw, (ix_nw + 1 - ix) * (iy_nw + 1 - iy)),
        (ix_nw + 1, iy_nw, (ix - ix_nw) * (iy_nw + 1 - iy)),
        (ix_nw, iy_nw + 1, (ix_nw + 1 - ix) * (iy - iy_nw)),
        (ix_nw + 1, iy_nw + 1, (ix - ix_nw) * (iy - iy_nw)),
    ]
    batch = np.arange(n)[:, None, None]
    for cx, cy, wgt in corners:
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        xi = np.clip(cx, 0, w - 1).astype(int)
        yi = np.clip(cy, 0, h - 1).astype(int)
        vals = img[batch, :, yi, xi]  # (n, ho, wo, c)
        out += np.moveaxis(np.where(inside, wgt, 0)[..., None] * vals, -1, 1)
    return out


def np_bilinear_sampler(img, coords):
    """RAFT ``utils.bilinear_sampler``."""
    h, w = img.shape[-2:]
    xgrid, ygrid = coords[..., :1], coords[..., 1:]
    xgrid = 2 * xgrid / (w - 1) - 1
    ygrid = 2 * ygrid / (h - 1) - 1
    return np_grid_sample(img, np.concatenate([xgrid, ygrid], -1))


def np_avg_pool2d(x):
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    x = x[..., : 2 * h, : 2 * w]
    return x.reshape(x.shape[:-2] + (h, 2, w, 2)).mean((-3, -1))


class NumpyCorrBlock:
    """RAFT ``core/corr.py::CorrBlock`` transcribed to NumPy; fmaps (B, D, H, W), coords (B, 2, H, W)."""

    def __init__(self, fmap1, fmap2, num_levels=4, radius=4):
        self.num_levels, self.radius = num_levels, radius
        batch, dim, ht, wd = fmap1.shape
        fmap1, fmap2 = fmap1.reshape(batch, dim, ht * wd), fmap2.reshape(batch, dim, ht * wd)
        c = np.matmul(fmap1.transpose(0, 2, 1), fmap2)
        c = c.reshape(batch * ht * wd, 1, ht, wd) / np.sqrt(dim)
        self.corr_pyramid = [c]
        for _ in range(num_levels - 1):
            c = np_avg_pool2d(c)
            self.corr_pyramid.append(c)

    def __call__(self, coords):
        r = self.radius
        coords = coords.transpose(0, 2, 3, 1)
        batch, h1, w1, _ = coords.shape
        out_pyramid = []
        for i in range(self.num_levels):
            dx = np.linspace(-r, r, 2 * r + 1)
            dy = np.linspace(-r, r, 2 * r + 1)
            delta = np.stack(np.meshgrid(dy, dx, indexing="ij"), axis=-1)
            centroid_lvl = coords.reshape(batch * h1 * w1, 1, 1, 2) / 2**i
            coords_lvl = centroid_lvl + delta.reshape(1, 2 * r + 1, 2 * r + 1, 2)
            c = np_bilinear_sampler(self.corr_pyramid[i], coords_lvl)
            out_pyramid.append(c.reshape(batch, h1, w1, -1))
        return np.concatenate(out_pyramid, -1).transpose(0, 3, 1, 2)


def torch_corr_block(fmap1, fmap2, coords, num_levels, radius):
    """RAFT's CorrBlock verbatim in PyTorch (NCHW in and out)."""
    import torch
    import torch.nn.functional as F

    def bilinear_sampler(img, coords):
        H, W = img.shape[-2:]
        xgrid, ygrid = coords.split([1, 1], dim=-1)
        xgrid = 2 * xgrid / (W - 1) - 1
        ygrid = 2 * ygrid / (H - 1) - 1
        grid = torch.cat([xgrid, ygrid], dim=-1)
        return F.grid_sample(img, grid, align_corners=True)

    batch, dim, ht, wd = fmap1.shape
    c = torch.matmul(fmap1.view(batch, dim, ht * wd).transpose(1, 2), fmap2.view(batch, dim, ht * wd))
    c = c.view(batch * ht * wd, 1, ht, wd) / torch.sqrt(torch.tensor(dim).float())
    pyramid = [c]
    for _ in range(num_levels - 1):
        c = F.avg_pool2d(c, 2, stride=2)
        pyramid.append(c)
    r = radius
    coords = coords.permute(0, 2, 3, 1)
    out = []
    for i in range(num_levels):
        dx = torch.linspace(-r, r, 2 * r + 1)
        dy = torch.linspace(-r, r, 2 * r + 1)
        delta = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), axis=-1)
        coords_lvl = coords.reshape(batch * ht * wd, 1, 1, 2) / 2**i + delta.view(1, 2 * r + 1, 2 * r + 1, 2)
        out.append(bilinear_sampler(pyramid[i], coords_lvl).view(batch, ht, wd, -1))
    return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()


# ----------------------------------------------------------------------------- helpers


def make_inputs(seed, b=2, h=11, w=13, d=8, flow_scale=3.0, dtype=np.float64):
    """Features (B, H, W, D) x2 and coords (B, H, W, 2) = grid + random flow reaching past the borders."""
    rng = np.random.default_rng(seed)
    f1 = rng.standard_normal((b, h, w, d)).astype(dtype)
    f2 = rng.standard_normal((b, h, w, d)).astype(dtype)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = np.stack([xs, ys], -1).astype(dtype)
    coords = grid[None] + flow_scale * rng.standard_normal((b, h, w, 2)).astype(dtype)
    return f1, f2, coords


def nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def jax_lookup(f1, f2, coords, num_levels, radius, kernel="auto"):
    pyramid = corr.correlation_pyramid(jnp.asarray(f1), jnp.asarray(f2), num_levels)
    return np.asarray(corr.lookup(pyramid, coords, radius, kernel=kernel))


def skip_without_native():
    """The C++ kernels are skipped only where no C++ compiler works (``jaxdiff._native`` warns why)."""
    if corr._resolve_kernel("auto") != "native":
        pytest.skip("the C++ correlation kernels did not build here")


@pytest.fixture(params=["xla", "native"])
def kernel(request):
    """Each lookup formulation: XLA, and the C++ kernels (CPU)."""
    if request.param == "native":
        skip_without_native()
    return request.param


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("h,w,num_levels,radius", [(11, 13, 3, 4), (8, 10, 2, 2), (9, 7, 1, 0)])
def test_lookup_matches_numpy_raft_float64(x64, kernel, h, w, num_levels, radius):
    f1, f2, coords = make_inputs(0, h=h, w=w)
    ref = NumpyCorrBlock(nchw(f1), nchw(f2), num_levels, radius)(nchw(coords)).transpose(0, 2, 3, 1)
    out = jax_lookup(f1, f2, coords, num_levels, radius, kernel)
    chex.assert_shape(out, (2, h, w, num_levels * (2 * radius + 1) ** 2))
    assert np.abs(ref).max() > 0.5  # windows are not all padding
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def test_lookup_far_outside_is_zero_and_matches_numpy(x64, kernel):
    f1, f2, coords = make_inputs(1, h=11, w=13)
    coords[0, :3] += 40.0  # far right/below: every tap outside
    coords[1, :, :4] -= np.array([13.0, 9.0])  # windows straddling the top-left corner
    ref = NumpyCorrBlock(nchw(f1), nchw(f2), 3, 3)(nchw(coords)).transpose(0, 2, 3, 1)
    out = jax_lookup(f1, f2, coords, 3, 3, kernel)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    assert np.all(out[0, :3] == 0)
    otf = corr.lookup_on_the_fly(jnp.asarray(f1), jnp.asarray(f2), coords, 3, 3, kernel=kernel)
    np.testing.assert_allclose(np.asarray(otf), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("on_the_fly", [False, True])
def test_tiny_coarse_level_with_large_flow_matches_numpy(x64, kernel, on_the_fly):
    """Level 2 of 11x13 is 2x3, fewer entries than a (2r+2)-long row segment: far taps stay masked."""
    for seed in range(4):
        f1, f2, coords = make_inputs(seed, h=11, w=13, flow_scale=30.0)
        ref = NumpyCorrBlock(nchw(f1), nchw(f2), 3, 4)(nchw(coords)).transpose(0, 2, 3, 1)
        if on_the_fly:
            f1, f2 = jnp.asarray(f1), jnp.asarray(f2)
            out = np.asarray(corr.lookup_on_the_fly(f1, f2, coords, 4, 3, tile=3, chunk=9, kernel=kernel))
        else:
            out = jax_lookup(f1, f2, coords, 3, 4, kernel)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("on_the_fly", [False, True])
def test_infinite_coords_are_outside(kernel, on_the_fly):
    """±inf lies outside like a far coordinate: zero windows, no NaN, other queries unchanged."""
    f1, f2, coords = make_inputs(4, b=1, h=8, w=9, dtype=np.float32)
    bad = coords.copy()
    bad[0, 2, 3, 0], bad[0, 5, 1, 1], bad[0, 7, 8] = np.inf, -np.inf, (-np.inf, np.inf)
    far = np.where(np.isinf(bad), np.sign(bad) * 1e4, bad)

    def run(c):
        if on_the_fly:
            return np.asarray(corr.lookup_on_the_fly(jnp.asarray(f1), jnp.asarray(f2), c, 2, 2, tile=2, kernel=kernel))
        return jax_lookup(f1, f2, c, 2, 2, kernel)

    out = run(bad)
    assert np.all(out[0, 2, 3] == 0) and np.all(out[0, 5, 1] == 0) and np.all(out[0, 7, 8] == 0)
    np.testing.assert_allclose(out, run(far), rtol=0, atol=1e-5)
    sampled = np.asarray(corr.bilinear_sample(jnp.asarray(f2), bad))
    assert np.all(sampled[0, 2, 3] == 0)
    chex.assert_tree_all_finite(sampled)


@pytest.mark.parametrize("flow_scale,tile,chunk", [(0.5, 2, 64), (30.0, 3, 8), (3.0, 16, 256)])
def test_on_the_fly_matches_numpy_raft_float64(x64, flow_scale, tile, chunk):
    """Tiles that do not divide the image (shifted last row and column), one tile a step, and one larger than it."""
    f1, f2, coords = make_inputs(2, h=11, w=13, flow_scale=flow_scale)
    ref = NumpyCorrBlock(nchw(f1), nchw(f2), 3, 4)(nchw(coords)).transpose(0, 2, 3, 1)
    out = corr.lookup_on_the_fly(jnp.asarray(f1), jnp.asarray(f2), coords, 4, 3, tile=tile, chunk=chunk, kernel="xla")
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("b,h,w,levels,radius,flow_scale", [(3, 7, 9, 2, 1, 0.2), (1, 13, 10, 3, 5, 0.6), (2, 17, 18, 4, 3, 9.0)])
def test_native_kernels_match_numpy_raft_float64(x64, b, h, w, levels, radius, flow_scale):
    """Odd H and W (edge blocks of one and two queries), smooth flow (neighbours share taps), wild flow."""
    skip_without_native()
    f1, f2, coords = make_inputs(10, b=b, h=h, w=w, d=19, flow_scale=flow_scale)
    ref = NumpyCorrBlock(nchw(f1), nchw(f2), levels, radius)(nchw(coords)).transpose(0, 2, 3, 1)
    out = corr.lookup_on_the_fly(jnp.asarray(f1), jnp.asarray(f2), coords, radius, levels, kernel="native")
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(jax_lookup(f1, f2, coords, levels, radius, "native"), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("radius,d", [(2, 48), (2, 35), (8, 48)])
def test_native_kernels_match_numpy_raft_float32(radius, d):
    """float32: the vectorised window blend (2r+2 <= 16 taps a column) and the scalar one beyond; D a
    multiple of 16 and not (the last D mod 16 channels added to the dot products after the reductions)."""
    skip_without_native()
    f1, f2, coords = make_inputs(11, h=19, w=21, d=d, flow_scale=0.5)
    ref = NumpyCorrBlock(nchw(f1), nchw(f2), 3, radius)(nchw(coords)).transpose(0, 2, 3, 1)
    f1, f2, coords = (a.astype(np.float32) for a in (f1, f2, coords))
    out = corr.lookup_on_the_fly(jnp.asarray(f1), jnp.asarray(f2), coords, radius, 3, kernel="native")
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax_lookup(f1, f2, coords, 3, radius, "native"), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("radius", [2, 8])
def test_native_gradients_and_vmap_equal_xla(radius):
    """float32: the vectorised (un)blend for 2r+2 <= 16 taps a column, the scalar one beyond."""
    skip_without_native()
    f1, f2, coords = make_inputs(11, b=1, h=8, w=9, d=5, flow_scale=2.0, dtype=np.float32)
    f1, f2, coords = jnp.asarray(f1), jnp.asarray(f2), jnp.asarray(coords)

    def loss(a, b, kernel):
        out = corr.lookup_on_the_fly(a, b, coords, radius, 2, kernel=kernel)
        pyramid = corr.correlation_pyramid(a, b, 2)
        return jnp.sum(jnp.sin(out) * out) + jnp.sum(corr.lookup(pyramid, coords, radius, kernel=kernel) ** 2)

    grads = {k: jax.grad(loss, argnums=(0, 1))(f1, f2, k) for k in ("xla", "native")}
    chex.assert_trees_all_close(grads["native"], grads["xla"], rtol=1e-5, atol=1e-5)
    shifts = jnp.arange(3.0)[:, None, None, None, None]
    batched = {
        k: jax.vmap(lambda s, k=k: corr.lookup_on_the_fly(f1, f2, coords + s, radius, 2, kernel=k))(shifts)
        for k in ("xla", "native")
    }
    chex.assert_trees_all_close(batched["native"], batched["xla"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flow_scale", [0.3, 6.0])
def test_native_gradients_equal_xla_float64(x64, flow_scale):
    """Both images of B=2, windows leaving the map, every level: the C++ backward kernels against XLA's."""
    skip_without_native()
    f1, f2, coords = make_inputs(13, b=2, h=7, w=9, d=5, flow_scale=flow_scale)
    f1, f2 = jnp.asarray(f1), jnp.asarray(f2)
    weights = jnp.asarray(np.random.default_rng(14).standard_normal((2, 7, 9, 3 * 25)))

    def grads(kernel):
        def loss(a, b):
            otf = corr.lookup_on_the_fly(a, b, coords, 2, 3, kernel=kernel)
            all_pairs = corr.lookup(corr.correlation_pyramid(a, b, 3), coords, 2, kernel=kernel)
            return jnp.sum(weights * otf) + jnp.sum(weights * all_pairs**2)

        return jax.grad(loss, argnums=(0, 1))(f1, f2)

    chex.assert_trees_all_close(grads("native"), grads("xla"), rtol=1e-10, atol=1e-10)


def test_kernel_choice(monkeypatch):
    f1, f2, coords = make_inputs(12, b=1, h=6, w=6, d=4, dtype=np.float32)
    pyramid = corr.correlation_pyramid(f1, f2, 2)
    with pytest.raises(ValueError, match="kernel must be one of"):
        corr.lookup(pyramid, coords, 2, kernel="cuda")
    monkeypatch.setattr(_native, "load", lambda *args: False)  # as where no C++ compiler works
    with pytest.raises(RuntimeError, match="kernel='native'"):
        corr.lookup_on_the_fly(f1, f2, coords, 2, 2, kernel="native")
    assert corr._resolve_kernel("auto") == "xla"
    np.testing.assert_allclose(jax_lookup(f1, f2, coords, 2, 2), jax_lookup(f1, f2, coords, 2, 2, "xla"))


def _dot_precisions(jaxpr) -> list:
    """The ``precision`` of every dot_general in a jaxpr and the jaxprs nested in it."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append(eqn.params["precision"])
        for value in eqn.params.values():  # cond branches, loop bodies, remat and pjit bodies
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    out += _dot_precisions(sub)
    return out


def test_every_product_is_float32_on_accelerators():
    """XLA's default precision rounds matmul inputs to TF32 on recent GPUs (errors ~1e-3 against
    RAFT) and to bfloat16 on TPUs: every dot_general of the XLA paths, forward and backward, asks
    for HIGHEST (a no-op on the CPU, so this checks the request, not the numbers)."""
    from jaxdiff.flow import raft

    f1, f2, coords = make_inputs(5, b=1, h=10, w=12, d=8, flow_scale=20.0, dtype=np.float32)
    flow, mask = jnp.ones((1, 3, 4, 2)), jnp.zeros((1, 3, 4, 9 * 64))
    def loss(a, b):
        all_pairs = corr.lookup(corr.correlation_pyramid(a, b, 2), coords, 2, kernel="xla")
        on_the_fly = corr.lookup_on_the_fly(a, b, coords, 2, 2, tile=4, chunk=16, spill=2, kernel="xla")
        return (all_pairs**2).sum() + (on_the_fly**2).sum()

    for fn, args in [(jax.grad(loss, argnums=(0, 1)), (jnp.asarray(f1), jnp.asarray(f2))),
                     (lambda: raft.upsample_convex(flow, mask) + raft.upsample_bilinear(flow), ())]:
        precisions = _dot_precisions(jax.make_jaxpr(fn)(*args).jaxpr)
        assert precisions and all(p == (jax.lax.Precision.HIGHEST,) * 2 for p in precisions), precisions


def test_accelerator_path_on_the_cpu(monkeypatch):
    """What GPUs and TPUs run (batched gathers, chunk=1024, spill=256 by default), run here: the same
    windows as the all-pairs lookup and the same gradients as the CPU's unrolled slices."""
    f1, f2, coords = make_inputs(6, h=20, w=22, d=16, flow_scale=0.3, dtype=np.float32)
    coords[:, 9:, 10:] += np.array([9.0, -7.0], np.float32)  # a discontinuity: spilled queries
    f1, f2 = jnp.asarray(f1), jnp.asarray(f2)
    all_pairs = jax_lookup(f1, f2, coords, 3, 3, "xla")

    def loss(a, b):
        return (corr.lookup_on_the_fly(a, b, coords, 3, 3, kernel="xla") ** 3).sum()

    grads = jax.grad(loss, argnums=(0, 1))(f1, f2)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    out = corr.lookup_on_the_fly(f1, f2, coords, 3, 3, kernel="xla")
    np.testing.assert_allclose(np.asarray(out), all_pairs, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(jax.grad(loss, argnums=(0, 1))(f1, f2), grads, rtol=1e-5, atol=1e-5)


def test_on_the_fly_equals_all_pairs_float32(kernel):
    """Smooth flow (block path), a discontinuity (per-query fallback), a step spanning both images of B=2."""
    f1, f2, coords = make_inputs(3, h=20, w=22, d=16, flow_scale=0.3, dtype=np.float32)
    coords[:, 9:, 10:] += np.array([9.0, -7.0], np.float32)
    f1, f2 = jnp.asarray(f1), jnp.asarray(f2)
    all_pairs = corr.correlation_lookup(f1, f2, 3, 3, mode="auto", kernel=kernel)(coords)
    on_the_fly = corr.correlation_lookup(f1, f2, 3, 3, mode="auto", memory_budget=10**5, kernel=kernel)(coords)
    np.testing.assert_allclose(np.asarray(on_the_fly), np.asarray(all_pairs), rtol=1e-5, atol=1e-5)


def test_lookup_matches_torch_grid_sample_float32(kernel):
    torch = pytest.importorskip("torch")
    f1, f2, coords = make_inputs(4, h=11, w=13, d=16, flow_scale=3.0, dtype=np.float32)
    t = [torch.from_numpy(nchw(a)) for a in (f1, f2, coords)]
    ref = torch_corr_block(*t, num_levels=3, radius=4).numpy().transpose(0, 2, 3, 1)
    out = jax_lookup(f1, f2, coords, 3, 4, kernel)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    otf = corr.lookup_on_the_fly(jnp.asarray(f1), jnp.asarray(f2), coords, 4, 3, kernel=kernel)
    np.testing.assert_allclose(np.asarray(otf), ref, rtol=1e-5, atol=1e-5)


def test_bilinear_sample_matches_grid_sample(x64):
    rng = np.random.default_rng(5)
    image = rng.standard_normal((2, 7, 9, 3))
    coords = rng.uniform(-2, 11, (2, 5, 4, 2))
    ref = np_bilinear_sampler(nchw(image), coords).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(corr.bilinear_sample(jnp.asarray(image), coords)), ref, atol=1e-12)


# ----------------------------------------------------------------------------- properties


def identity_coords(b, h, w):
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.broadcast_to(np.stack([xs, ys], -1), (b, h, w, 2)).astype(np.float32)


@pytest.mark.parametrize("sx,sy", [(3, -2), (-1, 4)])
def test_integer_shift_peaks_at_expected_channel(kernel, sx, sy):
    """f2(y, x) = f1(y - sy, x - sx): level 0 peaks at x-offset sx, y-offset sy (x slow, as RAFT)."""
    r, (b, h, w, d) = 4, (1, 16, 20, 64)
    f1 = np.random.default_rng(6).standard_normal((b, h, w, d)).astype(np.float32)
    f2 = np.roll(f1, (sy, sx), axis=(1, 2))
    out = np.asarray(jax_lookup(f1, f2, identity_coords(b, h, w), 1, r, kernel))
    inner = out[:, 5:-5, 5:-5].reshape(-1, (2 * r + 1) ** 2)
    assert np.all(inner.argmax(-1) == (sx + r) * (2 * r + 1) + (sy + r))


def test_translation_equivariance_away_from_borders():
    r, levels, s = 2, 3, 4  # a shift by a multiple of 2**(levels-1) keeps pooling aligned
    f1, f2, coords = make_inputs(7, b=1, h=24, w=28, d=8, flow_scale=1.0, dtype=np.float32)
    shift = lambda a: np.roll(a, (s, s), axis=(1, 2))  # noqa: E731
    out = np.asarray(jax_lookup(f1, f2, coords, levels, r))
    out_shifted = np.asarray(jax_lookup(shift(f1), shift(f2), shift(coords) + s, levels, r))
    m = 12  # margin: window radius at the coarsest level plus the roll's wrap-around
    expected = out[:, m : -m - s, m : -m - s]
    np.testing.assert_allclose(out_shifted[:, m + s : -m, m + s : -m], expected, atol=1e-5)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("on_the_fly", [False, True])
def test_gradients_match_finite_differences(x64, kernel, on_the_fly):
    f1, f2, coords = make_inputs(8, b=1, h=8, w=9, d=3, flow_scale=2.0)
    coords[0, 5:, 6:] += 6.0  # a discontinuity: some tiles take the per-query path

    def loss(a, b, c):
        if on_the_fly:
            out = corr.lookup_on_the_fly(a, b, c, 2, 2, tile=3, kernel=kernel)
        else:
            out = corr.lookup(corr.correlation_pyramid(a, b, 2), c, 2, kernel=kernel)
        return jnp.sum(jnp.sin(out))

    a, b = jnp.asarray(f1), jnp.asarray(f2)
    check_grads(lambda a, b: loss(a, b, coords), (a, b), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
    assert np.all(np.asarray(jax.grad(loss, argnums=2)(a, b, jnp.asarray(coords))) == 0)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_naming_the_argument():
    f1, f2, coords = make_inputs(9, b=1, h=8, w=8, d=4, dtype=np.float32)
    pyramid = corr.correlation_pyramid(f1, f2, 2)
    with pytest.raises(ValueError, match="f1 and f2"):
        corr.correlation_pyramid(f1, f2[..., :3])
    with pytest.raises(ValueError, match="f1 and f2"):
        corr.correlation_volume(f1, f2[:, :7])
    with pytest.raises(ValueError, match="f2 must"):
        corr.lookup_on_the_fly(f1, f2[0], coords)
    with pytest.raises(ValueError, match="coords"):
        corr.lookup(pyramid, coords[..., :1])
    with pytest.raises(ValueError, match="coords"):
        corr.lookup_on_the_fly(f1, f2, coords[:, :4], num_levels=2)
    with pytest.raises(ValueError, match="tile"):
        corr.lookup_on_the_fly(f1, f2, coords, num_levels=2, tile=0)
    with pytest.raises(ValueError, match="chunk"):
        corr.lookup_on_the_fly(f1, f2, coords, num_levels=2, chunk=0)
    bad = coords.copy()
    bad[0, 1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="coords contain NaN"):
        corr.lookup(pyramid, bad)
    with pytest.raises(ValueError, match="radius"):
        corr.lookup(pyramid, coords, radius=-1)
    with pytest.raises(ValueError, match="num_levels"):
        corr.correlation_pyramid(f1, f2, 0)
    with pytest.raises(ValueError, match="num_levels"):
        corr.correlation_lookup(f1, f2, num_levels=5)
    with pytest.raises(ValueError, match="mode"):
        corr.correlation_lookup(f1, f2, mode="fast")
    with pytest.raises(ValueError, match="coords"):
        corr.bilinear_sample(f1, coords[0])
