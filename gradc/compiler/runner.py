"""Run one built program: bind its buffers to tensors and fresh arrays, run its steps.

A `Module` is one lowered graph (forward-only, a training forward, or a backward). Its
steps run in order: C segments through the built library, extern steps through the op's
eager kernel (see `extern`). Inputs are bound by graph node id, so the caller never
depends on the order buffers got slots. Seed inputs (dropout) are drawn from gradc's
global generator on every call, in capture order, so the generator advances as in
eager; after the steps, values written in place into inputs (batch-norm running
statistics) are copied into those tensors.

A module that is one C segment and nothing else (no extern steps, seeds, dynamic sizes
or writes into its inputs), the common case of a small function, also offers `runner`:
a closure over everything `execute` re-derives per call, which a compiled function's
fast path calls with the call's tensors (see api.CompiledFunction).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..counter_rng import draw_seed
from ..device import CPU
from ..size import Size
from ..storage import Storage
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

    def runner(self, inputs: list, count: int) -> Callable[[list], tuple] | None:
        """For a one-segment module: a function from the tensors of the value ids `inputs`
        (in that order) to the first `count` graph outputs, as `execute` computes them.
        None when the module needs more than that path does (then `execute` runs it)."""
        g = self.graph.graph
        fresh = {node: (slot, shape, dtype, storage) for node, slot, shape, dtype, storage in self.fresh}
        positions = {v: i for i, v in enumerate(inputs)}
        if (self.steps != [0] or self.seeds or self.symbols or g["mutations"]
                or any(node not in positions for node, _ in self.bound)
                or any(n not in fresh for n in g["outputs"][:count])):
            return None
        library = self.library
        address, from_buffer, entry, null = library.address, library.ffi.from_buffer, library.entry(0), library.ffi.NULL
        template = [null] * len(self.plan.buffers)
        constants = [(slot, arr) for _, slot, arr in self.constants]
        bound = [(positions[node], slot) for node, slot in self.bound]
        blocks: dict[int, int] = {}  # planned memory block -> index of the array allocated for it
        allocations, reuses, order = [], [], {}
        for node, (slot, shape, dtype, storage) in fresh.items():
            if storage >= 0 and storage in blocks:
                reuses.append((slot, blocks[storage]))
                order[node] = blocks[storage]
                continue
            order[node] = len(allocations)
            if storage >= 0:
                blocks[storage] = len(allocations)
            allocations.append((slot, shape, dtype))
        wanted = list(dict.fromkeys(g["outputs"][:count]))  # an output twice is one tensor twice, as in execute
        results = [(order[n], self.plan.buffers[n].dtype, Size(self.plan.buffers[n].shape)) for n in wanted]
        picks = None if len(wanted) == count else [wanted.index(n) for n in g["outputs"][:count]]
        empty, new, of_array = np.empty, Tensor._new, Storage.of_array

        def run(tensors: list) -> tuple:
            table = template.copy()
            for position, slot in bound:
                table[slot] = address(tensors[position]._array())
            for slot, arr in constants:
                table[slot] = address(arr)
            arrays = []
            for slot, shape, dtype in allocations:
                arr = empty(shape, dtype)
                table[slot] = from_buffer(arr)
                arrays.append(arr)
            for slot, index in reuses:
                table[slot] = table[allocations[index][0]]
            entry(table, null)
            outs = []
            for index, dtype, size in results:
                t = new(of_array(arrays[index], CPU, dtype), 0, size, None)
                t._arr = arrays[index]
                outs.append(t)
            return tuple(outs) if picks is None else tuple(outs[k] for k in picks)

        return run
