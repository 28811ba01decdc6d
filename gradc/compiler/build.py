"""Compile generated C into a shared library and load it with cffi (ABI mode).

`$CC` (default `cc`) builds with `-O2 -shared -fPIC -fwrapv -fopenmp` plus `$GRADC_CFLAGS`;
-fwrapv makes signed overflow wrap as numpy's integers do. Any toolchain failure raises
`BuildError` (the caller warns once and runs eagerly).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import cffi

from .errors import BuildError
from .render import resource_dir

BASE_FLAGS = ("-O2", "-shared", "-fPIC", "-fwrapv", "-fopenmp", "-std=gnu11")
_identities: dict[str, str] = {}


def compiler() -> list[str]:
    return shlex.split(os.environ.get("CC", "") or "cc")


def flags() -> list[str]:
    return [*BASE_FLAGS, *shlex.split(os.environ.get("GRADC_CFLAGS", ""))]


def compiler_identity() -> str:
    """`$CC --version`'s first line, cached per process (part of the cache key)."""
    cc = " ".join(compiler())
    if cc not in _identities:
        try:
            out = subprocess.run([*compiler(), "--version"], capture_output=True, text=True, timeout=30)
            _identities[cc] = (out.stdout.splitlines() or [f"{cc} (no version)"])[0]
        except (OSError, subprocess.SubprocessError) as e:
            raise BuildError(f"C compiler {cc!r} is not usable: {e}") from e
    return _identities[cc]


def compile_source(source: str, target: Path) -> None:
    """Build `source` into the shared library `target` (written by the compiler itself)."""
    runtime = resource_dir("gradc.runtime", "runtime")
    with tempfile.TemporaryDirectory(prefix="gradc-build-") as tmp:
        c_file = Path(tmp) / "kernel.c"
        c_file.write_text(source)
        cmd = [*compiler(), *flags(), f"-I{runtime}", str(c_file), "-o", str(target), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as e:
            raise BuildError(f"C compiler failed to run: {e}") from e
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-2000:]
            raise BuildError(f"C compiler exited with {done.returncode}: {tail}")


class Library:
    """A loaded kernel library; `run(pointers)` calls its `gradc_entry` once."""

    def __init__(self, path: Path):
        self.ffi = cffi.FFI()
        self.ffi.cdef("void gradc_entry(void **buf);")
        try:
            self.lib = self.ffi.dlopen(str(path))
        except OSError as e:
            raise BuildError(f"cannot load {path}: {e}") from e
        self._entry = self.lib.gradc_entry
        self._new = self.ffi.new
        self._cast = self.ffi.cast

    def run(self, addresses: list[int]) -> None:
        self._entry(self._new("void *[]", [self._cast("void *", a) for a in addresses]))
