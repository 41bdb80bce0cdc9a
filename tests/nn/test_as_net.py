"""``as_net``: dropout from ``key`` (train mode), deterministic without it, conditioning passed through."""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.nn import MLP, as_net


def test_key_switches_dropout_on_and_labels_pass_through():
    module = MLP(width=16, depth=1, dropout=0.5, num_classes=3)
    x, c = jnp.ones((4, 2)), jnp.zeros((4,))
    params = module.init(jax.random.key(0), x, c)["params"]
    params = jax.tree.map(lambda p: p + 0.1, params)  # the zero-initialised output layer would hide dropout
    net = as_net(module)
    np.testing.assert_array_equal(net(params, x, c), module.apply({"params": params}, x, c))
    a, b = net(params, x, c, key=jax.random.key(1)), net(params, x, c, key=jax.random.key(2))
    assert not np.array_equal(a, b)  # dropout draws from the key
    labels = jnp.array([0, 1, 2, 0])
    np.testing.assert_array_equal(net(params, x, c, labels=labels),
                                  module.apply({"params": params}, x, c, labels))


def test_module_without_train_argument():
    class Plain(fnn.Module):
        @fnn.compact
        def __call__(self, x, c_noise, *, scale=1.0):
            return fnn.Dense(x.shape[-1])(x) * scale + c_noise[:, None]

    module = Plain()
    x, c = jnp.ones((2, 3)), jnp.ones((2,))
    params = module.init(jax.random.key(0), x, c)["params"]
    net = as_net(module)
    np.testing.assert_array_equal(net(params, x, c, key=jax.random.key(1), scale=2.0),
                                  module.apply({"params": params}, x, c, scale=2.0))
