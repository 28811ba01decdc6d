"""Run one built C module: bind its buffers to tensors and fresh arrays, call it once.

A `Module` is one lowered graph (forward-only, a training forward, or a backward). Inputs
are bound by graph node id, so the caller never depends on the order buffers got slots.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..device import CPU
from ..tensor import Tensor


@dataclass
class Module:
    """A graph, its schedule, its C source and the loaded library built from it."""

    graph: Any
    plan: Any
    source: str
    library: Any

    def execute(self, inputs: dict[int, Tensor]) -> tuple:
        """The graph's outputs (in `graph.graph["outputs"]` order) for the input tensors
        given by node id; each call writes into newly allocated output arrays."""
        addresses, outs, keep = [], {}, []  # keep: temporaries live until the kernels ran
        for node, buf in sorted(self.plan.buffers.items(), key=lambda kv: kv[1].slot):
            if buf.role in ("arg", "external"):
                addresses.append(inputs[node]._array().ctypes.data)
            else:
                arr = np.empty(buf.shape, dtype=buf.dtype.np)
                keep.append(arr)
                addresses.append(arr.ctypes.data)
                if buf.role == "output":
                    outs[node] = Tensor._from_array(np, arr, buf.dtype, CPU)
        self.library.run(addresses)
        return tuple(outs[n] for n in self.graph.graph["outputs"])
