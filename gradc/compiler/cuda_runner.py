"""Run a lowered graph on an NVIDIA GPU: NVRTC-compiled kernels and cupy extern steps.

`CudaModule` is the GPU twin of `runner.Module`, with the same contract (`execute`,
`sizes_of`, `graph`), so inference entries and training programs use either. The
translation unit (`render_cuda.cuda_program`) is compiled once by a *toolchain*: on a
GPU, `Nvrtc` (cupy's `RawModule`; cupy caches the binary on disk keyed by source,
options, GPU architecture and NVRTC version). A call binds every buffer to an array of
the toolchain's array module (inputs in place, temporaries from the planned shared
blocks), then walks the launch sequence: kernels with the grid their launch names,
extern steps through the op's eager kernel on that array module (on cupy, matmul is
cuBLAS). The toolchain is a seam so the same host logic and kernels can run elsewhere:
the tests run them on the CPU through a C++ emulation of the CUDA execution model.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..counter_rng import draw_seed
from ..tensor import Tensor
from .errors import BuildError
from .extern import run_extern
from .render import resource_dir
from .render_cuda import THREADS, Launch, blocks
from .symbolic import evaluate


def nvrtc_options() -> tuple:
    runtime = resource_dir("gradc.runtime", "runtime")
    return (f"-I{runtime}", "--std=c++17")


class Toolchain(Protocol):
    """Compiles a CUDA translation unit and launches its kernels on `xp`'s arrays.

    `compile` returns, per kernel name, a callable taking (grid, block, args) as cupy's
    RawKernel does: grid and block are 1-tuples, args the kernel's arrays in parameter
    order (then the int64 size table, for kernels that take one). `context` makes the
    toolchain's device current while a call runs."""

    xp: Any

    def compile(self, source: str, names: list[str]) -> dict[str, Callable]: ...

    def context(self) -> contextlib.AbstractContextManager: ...


class Nvrtc:
    """The GPU toolchain: NVRTC through cupy's RawModule, on CUDA device `index`."""

    def __init__(self, index: int):
        import cupy

        self.xp, self.index = cupy, index

    def compile(self, source: str, names: list[str]) -> dict[str, Callable]:
        module = self.xp.RawModule(code=source, options=nvrtc_options())
        return {name: module.get_function(name) for name in names}

    def context(self) -> contextlib.AbstractContextManager:
        return self.xp.cuda.Device(self.index)


@dataclass
class CudaModule:
    """A graph, its schedule, its CUDA source and launch sequence, compiled for `device`
    (by `toolchain`; NVRTC on that device unless given)."""

    graph: Any
    plan: Any
    source: str
    launches: list
    device: Any
    toolchain: Any = None
    kernels: dict = field(init=False)  # kernel name -> launchable kernel
    symbols: list = field(init=False)
    by_slot: dict = field(init=False)  # buffer slot -> node
    externs: set = field(init=False)

    def __post_init__(self) -> None:
        if self.toolchain is None:
            self.toolchain = Nvrtc(self.device.index or 0)
        self.xp = self.toolchain.xp
        names = list(dict.fromkeys(s.kernel for s in self.launches if not s.extern))
        try:
            self.kernels = self.toolchain.compile(self.source, names)
        except Exception as e:  # NVRTC's message (cupy's CompileException) names the line
            raise BuildError(f"CUDA compile failed: {e}") from e
        self.symbols = list(self.graph.graph["symbols"])
        self.by_slot = {b.slot: node for node, b in self.plan.buffers.items()}
        self.externs = {s.extern.roots[0] for s in self.launches if s.extern}  # their arrays come from the step
        self.constants = {n: self.xp.asarray(b_value) for n, b_value in
                          ((n, self.graph.nodes[n]["value"]) for n in self.graph.graph["constants"])}

    def sizes_of(self, inputs: dict[int, Tensor]) -> tuple:
        return tuple(int(inputs[node]._shape[dim]) for node, dim in self.symbols)

    def execute(self, inputs: dict[int, Tensor], sizes: tuple | None = None) -> tuple:
        """The graph's outputs for input tensors by node id, as `runner.Module.execute`."""
        xp, graph, buffers = self.xp, self.graph, self.plan.buffers
        if sizes is None:
            sizes = self.sizes_of(inputs) if self.symbols else ()
        with self.toolchain.context():
            arrays: dict[int, Any] = {}
            shared: dict[int, Any] = {}
            for node, b in buffers.items():
                if b.role in ("arg", "external"):
                    arrays[node] = inputs[node]._array()
                elif b.role == "constant":
                    arrays[node] = self.constants[node]
                elif b.role == "seed":
                    arrays[node] = inputs[node]._array() if node in inputs else xp.asarray(draw_seed(), xp.int64)
            for node, b in buffers.items():
                if node in arrays or node in self.externs:
                    continue
                arr = shared.get(b.storage) if b.storage >= 0 else None
                if arr is None:
                    arr = xp.empty(evaluate(b.shape, sizes), b.dtype.np)
                    if b.storage >= 0:
                        shared[b.storage] = arr
                arrays[node] = arr
            size_table = xp.asarray(sizes, xp.int64) if sizes else None
            for step in self.launches:
                self._step(step, arrays, sizes, size_table)
            for target, value in graph.graph["mutations"]:
                inputs[target]._array()[...] = arrays[value]
                inputs[target]._bump_version()
        outs = {n: Tensor._from_array(xp, arrays[n], buffers[n].dtype, self.device)
                for n in dict.fromkeys(graph.graph["outputs"])}
        return tuple(outs[n] for n in graph.graph["outputs"])

    def _step(self, step: Launch, arrays: dict, sizes: tuple, size_table) -> None:
        if step.extern is not None:
            node = step.extern.roots[0]
            arrays[node] = run_extern(self.graph, step.extern, arrays, sizes, self.xp)
            return
        args = [arrays[self.by_slot[slot]] for slot in step.slots] + ([size_table] if step.sizes else [])
        work, per_block = step.grid
        grid = blocks(int(evaluate(work, sizes)), per_block)
        self.kernels[step.kernel]((grid,), (THREADS,), tuple(args))
