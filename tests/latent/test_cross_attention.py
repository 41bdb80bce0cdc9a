"""Cross-attention: a single key returns its value; weights are a softmax; label context; bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nn.cross_attention import CrossAttention, LabelContext, attention, attention_weights

KEY = jax.random.key(0)


def test_single_key_returns_its_value():
    q = jax.random.normal(KEY, (2, 5, 3, 4))
    k = jax.random.normal(jax.random.key(1), (2, 1, 3, 4))
    v = jax.random.normal(jax.random.key(2), (2, 1, 3, 4))
    np.testing.assert_allclose(attention(q, k, v), jnp.broadcast_to(v, q.shape), rtol=1e-6)


def test_weights_are_scaled_dot_product_softmax():
    q = jax.random.normal(KEY, (1, 2, 1, 4))
    k = jax.random.normal(jax.random.key(1), (1, 3, 1, 4))
    logits = q[0, :, 0] @ k[0, :, 0].T / 2.0
    expect = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(attention_weights(q, k)[0, 0], expect, rtol=1e-5)


def test_module_with_one_context_token_is_out_of_value():
    block = CrossAttention(context_dim=6, num_heads=2, head_dim=4)
    x = jax.random.normal(KEY, (2, 4, 4, 5))
    ctx = jax.random.normal(jax.random.key(1), (2, 1, 6))
    params = jax.jit(block.init)(KEY, x, ctx)["params"]
    out = jax.jit(block.apply)({"params": params}, x, ctx)
    assert out.shape == x.shape
    v = jnp.einsum("bmc,chd->bmhd", ctx, params["value"]["kernel"]) + params["value"]["bias"]
    value_out = jnp.einsum("bmhd,hdc->bmc", v, params["out"]["kernel"]) + params["out"]["bias"]  # (B, 1, C)
    # The module is a network: its products run at the device's default precision (the precision
    # policy, docs/design/precision.md), TF32 on recent NVIDIA GPUs (inputs rounded to 11 significant
    # bits, relative error 2^-11 = 4.9e-4), one bfloat16 pass on TPUs (2^-9). Where XLA runs the
    # module at that precision and the reference einsums above in float32 (or the reverse), the
    # outputs (|out| < 2) differ by 4.7e-4 (on an H100, and on the CPU with TF32-rounded product
    # inputs) or 4.5e-3 (bfloat16-rounded inputs): 1e-2 covers both, and a wrong path through the
    # block is an O(1) error. The CPU computes float32 products whatever the precision: 1e-5 there.
    tol = 1e-5 if jax.default_backend() == "cpu" else 1e-2
    np.testing.assert_allclose(out, jnp.broadcast_to(value_out[:, :, None, :], x.shape), rtol=tol, atol=tol)


def test_residual_block_is_identity_at_init_and_label_context():
    embed = LabelContext(num_classes=10, context_dim=6, num_tokens=2)
    ctx, variables = jax.jit(embed.init_with_output)(KEY, jnp.array([3, 7]))
    assert ctx.shape == (2, 2, 6)
    null = jax.jit(lambda v: embed.apply(v, None, batch=3))(variables)
    np.testing.assert_allclose(null[0], null[2])
    block = CrossAttention(context_dim=6, residual=True)
    x = jax.random.normal(KEY, (2, 7, 5))
    out, _ = jax.jit(block.init_with_output)(KEY, x, ctx)
    np.testing.assert_allclose(out, x)


def test_bad_input():
    block = CrossAttention(context_dim=6)
    with pytest.raises(ValueError, match="context must have shape .*context_dim"):
        jax.eval_shape(block.init, KEY, jnp.zeros((2, 4, 5)), jnp.zeros((2, 1, 7)))
    with pytest.raises(ValueError, match="x must"):
        jax.eval_shape(block.init, KEY, jnp.zeros((2, 5)), jnp.zeros((2, 1, 6)))
    with pytest.raises(ValueError, match="labels"):
        jax.eval_shape(LabelContext(10, 6).init, KEY, jnp.zeros((2,), jnp.float32))
    with pytest.raises(ValueError, match="batch"):
        jax.eval_shape(LabelContext(10, 6).init, KEY, None)
