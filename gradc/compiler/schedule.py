"""Fusion: group the graph's nodes into kernels and give every materialized value a buffer.

Rules of this first slice:
- Every reduction is its own kernel; the pointwise nodes it reads are fused into it as a
  prologue (recomputed there, never stored).
- Graph outputs computed by pointwise ops are grouped by shape: one loop nest per shape
  computes all of them, inlining every pointwise node they depend on.
- Inputs and views of inputs are read in place through their real strides; reduction
  results that are not outputs get temporary buffers.
Pointwise values are recomputed by each kernel that needs them rather than stored: always
correct, and cheap for the memory-bound chains this slice targets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..ops import OPS


@dataclass
class Buffer:
    node: int
    role: str  # "arg", "external", "temp" or "output"
    slot: int  # index into the entry function's buffer array
    shape: tuple
    dtype: object


@dataclass
class Kernel:
    name: str
    kind: str  # "pointwise" or "reduction"
    roots: list  # nodes this kernel stores
    space: tuple  # the iteration shape
    reduce_dims: tuple = ()
    nodes: list = field(default_factory=list)  # inlined op nodes, in topological order
    loads: list = field(default_factory=list)  # input, view and reduction nodes read


@dataclass
class Plan:
    buffers: dict  # node -> Buffer (views are not in it: they read their root's buffer)
    kernels: list
    outputs: list


def _is_pointwise(g: nx.DiGraph, n: int) -> bool:
    d = g.nodes[n]
    return d["kind"] == "op" and OPS[d["op"]].kind == "pointwise"


def _inline(g: nx.DiGraph, roots: list, order: dict) -> tuple[list, list]:
    """The pointwise nodes `roots` need (in order) and the materialized nodes they read."""
    nodes, loads, stack = set(), set(), list(roots)
    while stack:
        n = stack.pop()
        if _is_pointwise(g, n):
            if n not in nodes:
                nodes.add(n)
                stack.extend(g.predecessors(n))
        else:
            loads.add(n)
    return sorted(nodes, key=order.get), sorted(loads, key=order.get)


def _kernel_name(index: int, kind: str, g: nx.DiGraph, nodes: list) -> str:
    ops = []
    for n in nodes:
        op = g.nodes[n]["op"]
        if op not in ops:
            ops.append(op)
    return f"k{index}_{kind}_" + "_".join(ops[:4]) + ("_etc" if len(ops) > 4 else "")


def schedule(g: nx.DiGraph) -> Plan:
    order = {n: i for i, n in enumerate(nx.topological_sort(g))}
    buffers: dict[int, Buffer] = {}

    def add(n: int, role: str) -> None:
        d = g.nodes[n]
        buffers[n] = Buffer(n, role, len(buffers), tuple(d["shape"]), d["dtype"])

    for n in g.graph["inputs"]:
        add(n, "arg")
    for n in g.graph["externals"]:
        add(n, "external")
    outputs = list(dict.fromkeys(g.graph["outputs"]))
    reductions = [n for n in sorted(g.nodes, key=order.get)
                  if g.nodes[n]["kind"] == "op" and OPS[g.nodes[n]["op"]].kind == "reduction"]
    for n in reductions:
        if n not in outputs:
            add(n, "temp")
    for n in outputs:
        add(n, "output")
    kernels = []
    for r in reductions:
        operand = g.nodes[r]["args"][0][1]
        nodes, loads = _inline(g, [operand], order)
        kernels.append(Kernel("", "reduction", [r], tuple(g.nodes[operand]["shape"]),
                              tuple(g.nodes[r]["attrs"]["dim"]), nodes + [r], loads))
    groups: dict[tuple, list] = {}
    for n in outputs:
        if _is_pointwise(g, n):
            groups.setdefault(tuple(g.nodes[n]["shape"]), []).append(n)
    for shape, roots in groups.items():
        nodes, loads = _inline(g, roots, order)
        kernels.append(Kernel("", "pointwise", roots, shape, (), nodes, loads))
    for i, k in enumerate(kernels):
        k.name = _kernel_name(i, k.kind, g, k.nodes)
    return Plan(buffers, kernels, outputs)
