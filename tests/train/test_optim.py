"""EMA half-life and optimizer configuration."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdiff.train import OptimConfig, ema_decay


def test_ema_halflife_in_images():
    # After halflife/batch steps with decay β, the old average's weight is β^(h/b) = 1/2.
    beta = float(ema_decay(10_000, batch_size=64, halflife_nimg=6400.0, rampup_ratio=None))
    np.testing.assert_allclose(beta ** (6400 / 64), 0.5, rtol=1e-5)


def test_ema_rampup_caps_halflife():
    early = float(ema_decay(0, batch_size=64, halflife_nimg=1e6, rampup_ratio=0.05))
    np.testing.assert_allclose(early, 0.5 ** (64 / (64 * 0.05)), rtol=1e-5)


@pytest.mark.parametrize("field,value", [("learning_rate", -0.1), ("learning_rate", 0.0), ("warmup_steps", -1),
                                         ("grad_clip", 0.0), ("b2", 1.0)])
def test_bad_optim_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"optim.{field}"):
        OptimConfig(**{field: value})
