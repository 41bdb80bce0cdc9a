"""Test-wide setup: two host devices for the data-parallel tests, a shared compile cache."""

from __future__ import annotations

import os

# Must happen before JAX initialises its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/jaxdiff/xla-tests"))

import jax  # noqa: E402  (after the environment above)
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test in float64 without leaking the setting to other tests."""
    with jax.enable_x64(True):
        yield
