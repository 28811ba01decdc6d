"""Run one built program: bind its buffers to tensors and fresh arrays, run its steps.

A `Module` is one lowered graph (forward-only, a training forward, or a backward). Its
steps run in order: C segments through the built library, extern steps through the op's
eager kernel (see `extern`). Inputs are bound by graph node id, so the caller never
depends on the order buffers got slots.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..device import CPU
from ..tensor import Tensor
from .extern import run_extern
from .schedule import Kernel


@dataclass
class Module:
    """A graph, its schedule, its C source and the loaded library built from it."""

    graph: Any
    plan: Any
    source: str
    library: Any
    steps: list = field(init=False)  # C segment index (int) or extern Kernel, in run order
    externs: set = field(init=False)  # nodes whose buffer is an extern step's result

    def __post_init__(self) -> None:
        segment = iter(range(len(self.plan.kernels)))
        self.steps = [s if isinstance(s, Kernel) else next(segment) for s in self.plan.steps()]
        self.externs = {s.roots[0] for s in self.steps if isinstance(s, Kernel)}

    def execute(self, inputs: dict[int, Tensor]) -> tuple:
        """The graph's outputs (in `graph.graph["outputs"]` order) for the input tensors
        given by node id; each call writes into newly allocated output arrays."""
        buffers = self.plan.buffers
        table = self.library.pointers(len(buffers))
        arrays: dict[int, np.ndarray] = {}  # buffer node -> array; alive until the steps ran
        for node, buf in buffers.items():
            if buf.role in ("arg", "external"):
                arrays[node] = inputs[node]._array()
            elif node in self.externs:
                continue  # the extern step's result becomes this buffer
            else:
                arrays[node] = np.empty(buf.shape, dtype=buf.dtype.np)
            table[buf.slot] = self.library.address(arrays[node].ctypes.data)
        for step in self.steps:
            if isinstance(step, Kernel):
                node = step.roots[0]
                arrays[node] = run_extern(self.graph, step, arrays)
                table[buffers[node].slot] = self.library.address(arrays[node].ctypes.data)
            else:
                self.library.run(step, table)
        outputs = self.graph.graph["outputs"]
        outs = {n: Tensor._from_array(np, arrays[n], buffers[n].dtype, CPU) for n in dict.fromkeys(outputs)}
        return tuple(outs[n] for n in outputs)
