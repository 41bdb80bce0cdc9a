"""The digits bridge task: degradations, sampler budgets and table, and a tiny run that restores."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import run
from experiments.tasks.bridge import degrade, make_sampler, markdown
from jaxdiff.bridges import VPBridge


def test_degradations():
    x = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
    pooled = degrade(x, "pool2")
    assert pooled.shape == x.shape
    np.testing.assert_allclose(pooled[:, ::2, ::2], x.reshape(3, 4, 2, 4, 2, 1).mean(axis=(2, 4)), rtol=1e-6)
    np.testing.assert_array_equal(pooled[:, ::2], pooled[:, 1::2])
    masked = degrade(x, "mask")
    np.testing.assert_array_equal(masked[:, :4], x[:, :4])
    assert np.all(masked[:, 4:] == -1)
    with pytest.raises(ValueError, match="config.bridge.degrade"):
        degrade(x, "blur")


def test_sampler_budgets():
    bridge = VPBridge()
    assert [make_sampler("ddbm_heun", bridge, n)[1] for n in (5, 10, 20, 50, 100)] == [5, 11, 20, 50, 101]
    assert make_sampler("dbim", bridge, 10)[1] == 10 and make_sampler("dbim_o3_cosine", bridge, 10)[1] == 10
    with pytest.raises(ValueError, match="config.eval.samplers"):
        make_sampler("euler", bridge, 10)
    row = dict(sampler="dbim", nfe=10, fd=1.0, label_consistency=0.9, mse=0.01)
    assert "| dbim | 10 | 1.00 | 0.900 | 0.0100 |" in markdown([row])


def test_train_then_eval_restores(tmp_path):
    """Two training steps of a tiny bridge, then ``eval`` restores the checkpoint and reproduces the table."""
    from experiments.configs import digits_bridge

    c = digits_bridge.get_config()
    c.model.unet.update(dict(channels=8, num_groups=4, attn_resolutions=()))
    c.train.update(dict(batch_size=16, num_steps=2, log_every=1, checkpoint_every=2))
    c.eval.update(dict(num_examples=16, nfes=(5,), samplers=("dbim",), png_nfe=5))
    trained = run.run(c, str(tmp_path), "train", progress=False)
    restored = run.run(c, str(tmp_path), "eval", progress=False)
    for name in ("translations.png", "metrics.json", "metrics.md"):
        assert (tmp_path / name).exists(), name
    assert trained["step"] == restored["step"] == 2
    a, b = (next(r for r in m["rows"] if r["sampler"] == "dbim") for m in (trained, restored))
    assert a["nfe"] == b["nfe"] == 5
    assert b["mse"] == pytest.approx(a["mse"], rel=1e-5)
