"""CPU kernels in C++ (``jaxdiff/csrc``), compiled on first use and registered as XLA FFI targets.

A library is built once per source, compiler flags, jaxlib headers and CPU model with the
system C++ compiler (``$CXX``, else ``c++``) into ``$JAXDIFF_CACHE`` (default
``~/.cache/jaxdiff``)/native, and reused from there. Where no compiler works, or with
``JAXDIFF_NATIVE=0``, ``load`` returns False after one warning and callers keep their XLA path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax

SOURCES = Path(__file__).parent / "csrc"
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _library_path(source: Path, compiler: str) -> Path:
    key = hashlib.sha256()
    for part in (source.read_bytes(), " ".join(FLAGS).encode(), compiler.encode(), jax.ffi.include_dir().encode(),
                 jax.__version__.encode(), _cpu_model().encode()):
        key.update(part)
    cache = Path(os.environ.get("JAXDIFF_CACHE") or Path.home() / ".cache" / "jaxdiff") / "native"
    return cache / f"{source.stem}-{key.hexdigest()[:16]}.so"


def _compile(source: Path, target: Path, compiler: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", str(source), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        os.replace(out, target)  # atomic: concurrent builders each write a whole library


@functools.cache
def load(name: str, targets: tuple[tuple[str, str], ...]) -> bool:
    """Build ``csrc/<name>.cc`` if needed and register its ``(ffi_target, symbol)`` pairs on the CPU.

    Returns whether the targets are registered.
    """
    if os.environ.get("JAXDIFF_NATIVE", "1") == "0":
        return False
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++"
    source = SOURCES / f"{name}.cc"
    try:
        library = _library_path(source, compiler)
        if not library.exists():
            logging.getLogger(__name__).info("jaxdiff: compiling %s into %s (once)", source.name, library)
            _compile(source, library, compiler)
        lib = ctypes.cdll.LoadLibrary(str(library))
        for target, symbol in targets:
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    except (OSError, RuntimeError, AttributeError) as err:
        warnings.warn(f"jaxdiff: native kernels {name!r} unavailable, using XLA ({err})", RuntimeWarning, stacklevel=2)
        return False
    return True
