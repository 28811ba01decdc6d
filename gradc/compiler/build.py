"""Compile generated C into a shared library and load it with cffi (ABI mode).

`$CC` (default `cc`) builds with `-O2 -shared -fPIC -fwrapv -fopenmp -fno-trapping-math
-fno-math-errno` (and the host and gcc flags below) plus `$GRADC_CFLAGS`; -fwrapv makes signed overflow wrap as numpy's
integers do, -fno-trapping-math (results unchanged: it only gives up floating-point
exception flags, which nothing reads) lets gcc turn the runtime's selects into vector
blends, so `#pragma omp simd` loops calling them vectorise, and -fno-math-errno (errno is
never read either) makes sqrt one instruction instead of a call with a branch (a layer
norm's last pass went 3.6x faster). Any toolchain failure raises
`BuildError` (the caller warns once and runs eagerly).

On x86-64 the code is built for the host CPU (`-march=native`: AVX2 doubles the width of
every vector loop, and the machine-dependent part is in the cache key, see
`host_identity`); `-ffp-contract=off` keeps a*b+c two rounded operations as numpy
computes them, never a fused multiply-add.

With gcc, loops of up to 1000 instructions are unrolled twice and scheduled before
register allocation (`GCC_FLAGS`): a long pointwise chain (exp, tanh, tanh, exp of each
8-float vector) is one chain of dependent instructions longer than what the CPU keeps in
flight, so consecutive vectors barely overlap; two interleaved vectors per iteration do
(the 1024-float small-call kernel: 8.5 -> 5.7 us; softmax, layer norm and GELU over 4M
floats unchanged within noise). gcc takes up to half as long again (0.44 -> 0.68 s on the
transformer block's backward, +0.02 s on a small function); other compilers, which may
not know these flags, do without.

Before the first library loads (and with it libgomp), OMP_WAIT_POLICY defaults to
PASSIVE: with gomp's default, its worker threads spin for a while after each parallel
loop, and on a machine with few cores they starve the BLAS threads of the very next
extern matmul (measured: a transformer training step 15x slower). A user's own setting
wins.
"""
from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import cffi

from .errors import BuildError
from .render import resource_dir

BASE_FLAGS = ("-O2", "-shared", "-fPIC", "-fwrapv", "-fopenmp", "-fno-trapping-math", "-fno-math-errno",
              "-ffp-contract=off", "-std=gnu11")
HOST_FLAGS = ("-march=native",) if platform.machine() in ("x86_64", "AMD64") else ()
GCC_FLAGS = ("-funroll-loops", "--param=max-unroll-times=2", "--param=max-unrolled-insns=1000",
             "--param=max-average-unrolled-insns=1000", "-fschedule-insns", "-fsched-pressure")
_identities: dict[tuple, str] = {}


def compiler() -> list[str]:
    return shlex.split(os.environ.get("CC", "")) or ["cc"]


def flags() -> list[str]:
    return [*BASE_FLAGS, *HOST_FLAGS, *(GCC_FLAGS if _is_gcc() else ()),
            *shlex.split(os.environ.get("GRADC_CFLAGS", ""))]


def _is_gcc() -> bool:
    """Whether `$CC` is gcc (its --version names the FSF); False when it cannot run,
    which the build then reports."""
    try:
        return "Free Software Foundation" in compiler_identity()
    except BuildError:
        return False


def host_identity() -> str:
    """The CPU a `-march=native` build is for (its model and instruction-set flags), so a
    cache shared between machines never hands one a library the other built."""
    if not HOST_FLAGS:
        return platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + " " + platform.processor()
    wanted = [line for line in info.splitlines() if line.startswith(("model name", "flags"))][:2]
    return "\n".join(wanted) or platform.machine()


def _binary_stamp(program: str) -> tuple:
    """What `program` resolves to on PATH now (real path, inode, size, mtime), so a changed
    PATH or an upgraded compiler is probed again; () when it cannot be resolved."""
    found = shutil.which(program)
    if found is None:
        return ()
    try:
        real = os.path.realpath(found)
        st = os.stat(real)
    except OSError:
        return (found,)
    return real, st.st_ino, st.st_size, st.st_mtime_ns


def compiler_identity() -> str:
    """`$CC --version`'s output (stripped), part of the cache key; probed once per compiler
    command and binary per process."""
    cmd = compiler()
    token = (" ".join(cmd), *_binary_stamp(cmd[0]))
    if token not in _identities:
        cc = token[0]
        try:
            out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            raise BuildError(f"C compiler {cc!r} is not usable: {e}") from e
        _identities[token] = out.stdout.strip() or f"{cc} (no version)"
    return _identities[token]


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
    """A loaded kernel library with entry points `entries` (each `void f(void **buf, const
    int64_t *sz)`): `pointers(n)` makes the buffer table the caller fills (with
    `address(array)`), `sizes(values)` the table of dynamic sizes, `run(i, table, sizes)`
    calls entry i."""

    def __init__(self, path: Path, entries: list[str]):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.ffi = cffi.FFI()
        self.ffi.cdef("".join(f"void {name}(void **buf, const int64_t *sz);\n" for name in entries))
        try:
            self.lib = self.ffi.dlopen(str(path))
            self._entries = [getattr(self.lib, name) for name in entries]
        except (OSError, AttributeError) as e:
            raise BuildError(f"cannot load {path}: {e}") from e

    def pointers(self, n: int):
        return self.ffi.new("void *[]", n)

    def address(self, array):
        """`array`'s data pointer, for a buffer table slot. `from_buffer` costs a fraction of
        `cast(array.ctypes.data)` (which dominates small calls), but needs one contiguous
        block starting at the first element, so other views go through their address."""
        if array.flags.c_contiguous:
            return self.ffi.from_buffer(array)
        return self.ffi.cast("void *", array.ctypes.data)

    def sizes(self, values: tuple):
        return self.ffi.new("int64_t[]", list(values)) if values else self.ffi.NULL

    def run(self, index: int, table, sizes) -> None:
        self._entries[index](table, sizes)

    def entry(self, index: int):
        """Entry point `index` itself, for a caller that calls it directly (one attribute
        lookup less per call); its table may be a list of what `address` returns."""
        return self._entries[index]
