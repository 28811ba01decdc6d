"""A CUDA toolchain for `cuda_runner.CudaModule` that runs the generated kernels on the CPU.

Why: most development and CI machines have no GPU, and a kernel that nvcc compiles can
still index wrongly, race between stages or miss a grid-stride step. `Emulated` compiles
the CUDA translation unit as C++ with `cuda_emulator.h` force-included (threads as
fibers, real barriers and warp shuffles), so the GPU host logic (`CudaModule`: buffer
binding, launch sequence, extern steps) and every kernel run on numpy arrays, and the
tests compare them with the C backend and eager. Grids are capped at `max_blocks` blocks
and blocks at `threads` threads (the kernels read blockDim, and 64 keeps two warps):
kernels loop over the rest, and small caps check that they do.

It says nothing about NVRTC specifics, timing, memory coalescing or real concurrency
inside a warp; the `cuda`-marked tests on a GPU cover those.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gradc.compiler.render import resource_dir

HEADER = Path(__file__).resolve().parent / "cuda_emulator.h"
CXX = shutil.which("g++") or shutil.which("c++")
_KERNEL = re.compile(r'extern "C" __global__ void __launch_bounds__\(GRADC_THREADS\) (\w+)\((.*)\)')


def _entry(name: str, params: str) -> str:
    """A C++ function calling kernel `name` with its arguments cast from a void * array."""
    types = [re.sub(r"\s*\w+$", "", p.replace("__restrict__", "")).strip() for p in params.split(", ")]
    args = ", ".join(f"({t})a[{i}]" for i, t in enumerate(types))
    return f'extern "C" void gradc_emu_entry_{name}(void **a) {{ {name}({args}); }}'


class _Kernel:
    def __init__(self, library: ctypes.CDLL, name: str, max_blocks: int, threads: int):
        self.entry = ctypes.cast(getattr(library, f"gradc_emu_entry_{name}"), ctypes.c_void_p)
        self.launch = library.gradc_emu_launch
        self.launch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint, ctypes.c_uint]
        self.name, self.max_blocks, self.threads = name, max_blocks, threads

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        pointers = (ctypes.c_void_p * max(1, len(args)))(*[a.ctypes.data for a in args])
        if self.launch(self.entry, pointers, min(grid[0], self.max_blocks), min(block[0], self.threads)):
            raise RuntimeError(f"{self.name}: a block waits on a barrier its other threads never reach")


class Emulated:
    """The `cuda_runner.Toolchain` of the CPU emulation (numpy arrays, g++)."""

    xp = np

    def __init__(self, folder: Path, max_blocks: int = 3, threads: int = 64):
        self.folder, self.max_blocks, self.threads = Path(folder), max_blocks, threads

    def compile(self, source: str, names: list[str]) -> dict[str, Callable]:
        entries = "\n".join(_entry(name, params) for name, params in _KERNEL.findall(source))
        text = source + "\n" + entries + "\n"
        stem = self.folder / hashlib.sha256(text.encode()).hexdigest()[:16]
        library = stem.with_suffix(".so")
        if not library.exists():
            stem.with_suffix(".cpp").write_text(text)
            runtime = resource_dir("gradc.runtime", "runtime")
            done = subprocess.run([CXX, "-std=c++17", "-O1", "-U_FORTIFY_SOURCE", "-shared", "-fPIC",
                                   "-include", str(HEADER), f"-I{runtime}", "-o", str(library),
                                   str(stem.with_suffix(".cpp"))],
                                  capture_output=True, text=True, timeout=300)
            if done.returncode:
                raise RuntimeError(done.stderr[-4000:])
        loaded = ctypes.CDLL(str(library))
        return {name: _Kernel(loaded, name, self.max_blocks, self.threads) for name in names}

    def context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()
