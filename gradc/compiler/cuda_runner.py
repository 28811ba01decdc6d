"""Run a lowered graph on an NVIDIA GPU: NVRTC-compiled kernels and cupy extern steps.

`CudaModule` is the GPU twin of `runner.Module`, with the same contract (`execute`,
`sizes_of`, `graph`), so inference entries and training programs use either. The
translation unit (`render_cuda.cuda_program`) is compiled once by cupy's `RawModule`
(NVRTC; cupy caches the binary on disk keyed by source, options, GPU architecture and
NVRTC version). A call binds every buffer to a cupy array (inputs in place, temporaries
from the planned shared blocks), then walks the launch sequence: kernels with the grid
their launch names, extern steps through the op's eager kernel on cupy (matmul: cuBLAS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class CudaModule:
    """A graph, its schedule, its CUDA source and launch sequence, compiled for `device`."""

    graph: Any
    plan: Any
    source: str
    launches: list
    device: Any
    kernels: dict = field(init=False)  # kernel name -> cupy RawKernel
    symbols: list = field(init=False)
    by_slot: dict = field(init=False)  # buffer slot -> node
    externs: set = field(init=False)

    def __post_init__(self) -> None:
        from ..device import array_module

        self.xp = array_module(self.device)
        try:
            module = self.xp.RawModule(code=self.source, options=nvrtc_options())
            self.kernels = {s.kernel: module.get_function(s.kernel) for s in self.launches if not s.extern}
        except Exception as e:  # NVRTC's message (cupy's CompileException) names the line
            raise BuildError(f"NVRTC failed: {e}") from e
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
        with xp.cuda.Device(self.device.index or 0):
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
