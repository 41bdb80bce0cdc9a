"""Cross-attention latent denoiser: label wiring, null label, CFG, sampling, label-dropout loss, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import losses, nn, precond, samplers
from jaxdiff.latent import CrossAttentionDiT, sample_cfg
from jaxdiff.nn.cross_attention import LabelContext

KEY = jax.random.key(0)
MODEL = CrossAttentionDiT(num_classes=10, hidden_size=16, depth=1, num_heads=2, context_dim=8, context_tokens=2)
X = jax.random.normal(KEY, (4, 4, 4, 3))
LABELS = jnp.array([0, 3, 7, 9])
INIT = jax.jit(MODEL.init)(KEY, X, jnp.ones((4,)), LABELS)["params"]
# zero-initialised output layers make the net exactly 0 at init: perturb every weight to test the wiring
_leaves, _tree = jax.tree.flatten(INIT)
PARAMS = jax.tree.unflatten(_tree, [a + 0.3 * jax.random.normal(jax.random.fold_in(KEY, i), a.shape)
                                    for i, a in enumerate(_leaves)])
PRE = precond.EDMPrecond(sigma_data=0.5)
net = nn.as_net(MODEL)


@jax.jit
def denoise(params, x, sigma, labels):
    return precond.denoiser(net, params, PRE)(x, sigma, labels=labels)


def test_shapes_zero_at_init_and_labels_change_output():
    assert np.all(jax.jit(net)(INIT, X, jnp.ones((4,)), labels=LABELS) == 0)
    out = jax.jit(net)(PARAMS, X, jnp.ones((4,)), labels=LABELS)
    assert out.shape == X.shape and np.all(np.isfinite(out))
    other = jax.jit(net)(PARAMS, X, jnp.ones((4,)), labels=(LABELS + 1) % 10)
    assert np.all(np.abs(out - other).reshape(4, -1).max(-1) > 1e-3)  # every row depends on its label
    assert PARAMS["tau"]["table"]["embedding"].shape == (11, 16)  # 10 classes + null, 2 tokens of width 8


def test_null_label_and_context_paths():
    null = jax.jit(net)(PARAMS, X, jnp.ones((4,)))
    np.testing.assert_allclose(null, jax.jit(net)(PARAMS, X, jnp.ones((4,)), labels=jnp.full((4,), 10)), atol=1e-6)
    ctx = LabelContext(10, 8, 2).apply({"params": PARAMS["tau"]}, LABELS)
    np.testing.assert_allclose(jax.jit(net)(PARAMS, X, jnp.ones((4,)), context=ctx),
                               jax.jit(net)(PARAMS, X, jnp.ones((4,)), labels=LABELS), atol=1e-6)


def test_cfg_scale_one_is_conditional_and_zero_is_null():
    def den(x, sigma, labels):
        return denoise(PARAMS, x, sigma, labels)

    cond = den(X, 1.5, LABELS)
    np.testing.assert_allclose(samplers.cfg_denoiser(den, 1.0, {"labels": 10})(X, 1.5, labels=LABELS), cond,
                               atol=1e-5)
    np.testing.assert_allclose(samplers.cfg_denoiser(den, 0.0, {"labels": 10})(X, 1.5, labels=LABELS),
                               den(X, 1.5, jnp.full((4,), 10)), atol=1e-5)
    guided = samplers.cfg_denoiser(den, 3.0, {"labels": 10})(X, 1.5, labels=LABELS)
    np.testing.assert_allclose(guided, den(X, 1.5, jnp.full((4,), 10)) + 3.0 * (cond - den(X, 1.5, jnp.full((4,), 10))),
                               atol=1e-4)
    z = sample_cfg(den, LABELS, (4, 4, 3), KEY, cfg_scale=2.0, null_label=10, num_steps=2)
    assert z.shape == X.shape and np.all(np.isfinite(z))


def test_label_dropout_loss_trains_the_label_table():
    loss_fn = losses.denoising_loss(net, PRE, losses.EDMNoise(0.5), label_dropout=0.5, num_classes=10)
    batch = {"image": X, "label": LABELS}
    (loss, _), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(PARAMS, batch, KEY)
    assert np.isfinite(loss)
    rows = np.abs(np.asarray(grads["tau"]["table"]["embedding"])).sum(-1) > 0
    assert not rows[[1, 2, 4, 5, 6, 8]].any()  # labels absent from the batch get no gradient
    assert rows[[0, 3, 7, 9, 10]].sum() >= 2  # present labels (those not dropped) and / or the null row do


def test_bad_input():
    with pytest.raises(ValueError, match="context must have shape .*context_dim"):
        jax.eval_shape(lambda p: net(p, X, jnp.ones((4,)), context=jnp.zeros((4, 2, 5))), PARAMS)
    with pytest.raises(ValueError, match="labels or context"):
        jax.eval_shape(lambda p: net(p, X, jnp.ones((4,)), labels=LABELS, context=jnp.zeros((4, 2, 8))), PARAMS)
    with pytest.raises(ValueError, match="labels must be an integer"):
        jax.eval_shape(lambda p: net(p, X, jnp.ones((4,)), labels=jnp.zeros((4,))), PARAMS)
    with pytest.raises(ValueError, match="num_classes"):
        jax.eval_shape(CrossAttentionDiT(num_classes=0).init, KEY, X, jnp.ones((4,)))
    with pytest.raises(ValueError, match="hidden_size=18"):
        jax.eval_shape(CrossAttentionDiT(10, hidden_size=18).init, KEY, X, jnp.ones((4,)))
    with pytest.raises(ValueError, match="cfg_scale"):
        sample_cfg(None, LABELS, (4, 4, 3), KEY, cfg_scale=-1.0, null_label=10)
    with pytest.raises(ValueError, match="labels must have shape"):
        sample_cfg(None, LABELS[:, None], (4, 4, 3), KEY, cfg_scale=1.0, null_label=10)
