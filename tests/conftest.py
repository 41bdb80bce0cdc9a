"""Test-wide setup: two host devices for the data-parallel tests, a shared compile cache."""

from __future__ import annotations

import os

# Must happen before JAX initialises its backend. XLA:CPU aborts the process when the devices of a
# collective do not all arrive within 40 s, which a loaded 2-core machine can exceed: allow 10 minutes.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2 "
                                   "--xla_cpu_collective_call_terminate_timeout_seconds=600")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/jaxdiff/xla-tests"))

import jax  # noqa: E402  (after the environment above)
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test in float64 without leaking the setting to other tests."""
    with jax.enable_x64(True):
        yield
