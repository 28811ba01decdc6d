"""Run one built program: bind its buffers to tensors and fresh arrays, run its steps.

A `Module` is one lowered graph (forward-only, a training forward, or a backward). Its
steps run in order: C segments through the built library, extern steps through the op's
eager kernel (see `extern`). Inputs are bound by graph node id, so the caller never
depends on the order buffers got slots. Seed inputs (dropout) are drawn from gradc's
global generator on every call, in capture order, so the generator advances as in
eager; after the steps, values written in place into inputs (batch-norm running
statistics) are copied into those tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..counter_rng import draw_seed
from ..device import CPU
from ..tensor import Tensor
from .extern import run_extern
from .schedule import Kernel
from .symbolic import evaluate


@dataclass
class Module:
    """A graph, its schedule, its C source and the loaded library built from it."""

    graph: Any
    plan: Any
    source: str
    library: Any
    steps: list = field(init=False)  # C segment index (int) or extern Kernel, in run order
    externs: set = field(init=False)  # nodes whose buffer is an extern step's result
    bound: list = field(init=False)  # (node, slot) of buffers bound to input tensors
    seeds: list = field(init=False)  # (node, slot) of per-call random seeds
    constants: list = field(init=False)  # (node, slot, array) of constant tensors
    fresh: list = field(init=False)  # (node, slot, shape, numpy dtype, shared block or -1) allocated per call
    outputs: list = field(init=False)  # (node, dtype) of each distinct graph output
    symbols: list = field(init=False)  # (input node, dim) giving each dynamic size

    def __post_init__(self) -> None:
        """Precompute what `execute` does per buffer, so a call walks flat lists instead
        of re-deciding roles (per-call overhead dominates small inputs)."""
        segment = iter(range(len(self.plan.kernels)))
        self.steps = [s if isinstance(s, Kernel) else next(segment) for s in self.plan.steps()]
        self.externs = {s.roots[0] for s in self.steps if isinstance(s, Kernel)}
        buffers = self.plan.buffers
        self.bound = [(n, b.slot) for n, b in buffers.items() if b.role in ("arg", "external")]
        self.seeds = [(n, b.slot) for n, b in buffers.items() if b.role == "seed"]
        self.constants = [(n, b.slot, self.graph.nodes[n]["value"]) for n, b in buffers.items()
                          if b.role == "constant"]
        self.fresh = [(n, b.slot, b.shape, b.dtype.np, b.storage) for n, b in buffers.items()
                      if b.role not in ("arg", "external", "seed", "constant") and n not in self.externs]
        self.outputs = [(n, buffers[n].dtype) for n in dict.fromkeys(self.graph.graph["outputs"])]
        self.symbols = list(self.graph.graph["symbols"])

    def sizes_of(self, inputs: dict[int, Tensor]) -> tuple:
        """This call's dynamic sizes (s0, s1, ...), read from the input tensors."""
        return tuple(int(inputs[node]._shape[dim]) for node, dim in self.symbols)

    def execute(self, inputs: dict[int, Tensor], sizes: tuple | None = None) -> tuple:
        """The graph's outputs (in `graph.graph["outputs"]` order) for the input tensors
        given by node id (seeds too, optionally: absent ones are drawn) and the dynamic
        sizes (read from the inputs when not given); each call writes into newly allocated
        output arrays, then into the inputs the graph mutates."""
        library = self.library
        if sizes is None:
            sizes = self.sizes_of(inputs) if self.symbols else ()
        table = library.pointers(len(self.plan.buffers))
        arrays: dict[int, np.ndarray] = {}  # buffer node -> array; alive until the steps ran
        size_table = library.sizes(sizes)
        for node, slot in self.bound:
            arr = arrays[node] = inputs[node]._array()
            table[slot] = library.address(arr)
        for node, slot, arr in self.constants:
            arrays[node] = arr
            table[slot] = library.address(arr)
        for node, slot in self.seeds:
            arr = arrays[node] = inputs[node]._array() if node in inputs else np.array(draw_seed(), np.int64)
            table[slot] = library.address(arr)
        shared: dict[int, np.ndarray] = {}  # planned memory blocks of temporaries (see schedule)
        for node, slot, shape, dtype, storage in self.fresh:
            arr = shared.get(storage) if storage >= 0 else None
            if arr is None:
                arr = np.empty(evaluate(shape, sizes), dtype)
                if storage >= 0:
                    shared[storage] = arr
            arrays[node] = arr
            table[slot] = library.address(arr)
        for step in self.steps:
            if isinstance(step, Kernel):
                node = step.roots[0]
                arr = arrays[node] = run_extern(self.graph, step, arrays, sizes)
                table[self.plan.buffers[node].slot] = library.address(arr)
            else:
                library.run(step, table, size_table)
        for target, value in self.graph.graph["mutations"]:
            inputs[target]._array()[...] = arrays[value]
            inputs[target]._bump_version()
        outs = {n: Tensor._from_array(np, arrays[n], dtype, CPU) for n, dtype in self.outputs}
        return tuple(outs[n] for n in self.graph.graph["outputs"])
