"""Fusion: group the graph's nodes into kernels and give every materialized value a buffer.

Rules of this first slice:
- Every reduction is its own kernel; the pointwise nodes it reads are fused into it as a
  prologue (recomputed there), except values an earlier kernel already stored (a
  training forward stores what its backward reads), which it loads.
- Materialized pointwise values (outputs, roots of views) are grouped by shape: one loop
  nest per shape computes them, inlining every pointwise node they depend on, unless a
  value reads a buffer written later (then it starts a new group).
- Inputs and views are read in place through their real strides; reduction results
  and roots of views of computed values that are not outputs get temporary buffers.
Otherwise pointwise values are recomputed by each kernel that needs them rather than
stored: always correct, and cheap for the memory-bound chains this slice targets.

Extern nodes (ops without a C lowering, e.g. matmul) are steps of their own, in the same
ordered list as the kernels: their operands and results are materialized, and the C
kernels between two extern steps form one *segment* (one C entry point, see `steps`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx

from .constants import op_of
from .symbolic import Sym, same_shape


@dataclass
class Buffer:
    node: int
    role: str  # "arg", "external", "seed", "constant", "temp" or "output"
    slot: int  # index into the entry function's buffer array
    shape: tuple
    dtype: object
    storage: int = -1  # temporaries: the memory block they share with others whose lifetimes do not overlap


@dataclass
class Kernel:
    name: str
    kind: str  # "pointwise", "reduction", "rows" (stages fused per row), "template" (hand-written C)
    # or "extern" (the op's eager kernel, not C)
    roots: list  # nodes this kernel stores
    space: tuple  # the iteration shape
    reduce_dims: tuple = ()
    nodes: list = field(default_factory=list)  # inlined op nodes, in topological order
    loads: list = field(default_factory=list)  # input, view and reduction nodes read
    stages: list = field(default_factory=list)  # a "rows" kernel: its pointwise/reduction kernels, in order


@dataclass
class Plan:
    buffers: dict  # node -> Buffer (views are not in it: they read their root's buffer)
    kernels: list  # C kernels and extern steps, in execution order
    outputs: list

    def steps(self) -> list:
        """The execution order: lists of consecutive C kernels (one segment each, in
        segment order) and, between them, extern step kernels."""
        out: list = []
        for k in self.kernels:
            if k.kind == "extern":
                out.append(k)
            elif out and isinstance(out[-1], list):
                out[-1].append(k)
            else:
                out.append([k])
        return out


_STEPS = ("extern", "template")  # node kinds that are a kernel of their own, reading materialized operands


def _is_pointwise(g: nx.DiGraph, n: int) -> bool:
    d = g.nodes[n]
    return d["kind"] == "op" and op_of(d["op"]).kind == "pointwise"


def _inline(g: nx.DiGraph, roots: list, order: dict, stored: frozenset = frozenset()) -> tuple[list, list]:
    """The pointwise nodes `roots` need (in order) and the materialized nodes they read;
    values in `stored` (written by earlier kernels) are loaded rather than recomputed."""
    nodes, loads, stack = set(), set(), list(roots)
    while stack:
        n = stack.pop()
        if _is_pointwise(g, n) and n not in stored:
            if n not in nodes:
                nodes.add(n)
                stack.extend(g.predecessors(n))
        else:
            loads.add(n)
    return sorted(nodes, key=order.get), sorted(loads, key=order.get)


_NOISE_OPS = frozenset({"cast", "clone", "bitwise_not", "logical_not", "fill"})  # say little of what a kernel computes
_NAME_OPS = 3  # at most this many ops in a kernel's name
_NAME_CHARS = 40


def _distinct_ops(g: nx.DiGraph, nodes: list) -> list:
    """The ops of `nodes` once each, in order, without the noise ops unless only those remain."""
    ops = list(dict.fromkeys(g.nodes[n]["op"] for n in nodes))
    return [op for op in ops if op not in _NOISE_OPS] or ops


def _row_summary(g: nx.DiGraph, k: Kernel) -> str:
    """What a fused "rows" kernel computes: a recognised row function (softmax, log_softmax,
    a normalisation), else its reductions then the ops its last stage stores (softmax's
    forward in training, whose division the next kernel does, is `amax_sum`)."""
    ops = {g.nodes[n]["op"] for n in k.nodes}
    reductions = list(dict.fromkeys(g.nodes[s.roots[0]]["op"] for s in k.stages if s.kind == "reduction"))
    if {"amax", "sum"} <= set(reductions) and "exp" in ops and ops & {"log", "div", "reciprocal"}:
        return "log_softmax" if "log" in ops else "softmax"
    if "sum" in reductions and ops & {"rsqrt", "sqrt"}:
        return "norm"
    last = k.stages[-1]
    tail = [] if last.kind == "reduction" else _distinct_ops(g, [last.roots[-1]])
    return "_".join(list(dict.fromkeys(reductions + tail))[:_NAME_OPS])


def _kernel_name(index: int, g: nx.DiGraph, k: Kernel) -> str:
    """A C identifier saying what kernel `index` computes: `k{index}_` (unique per plan),
    then its op(s) and, where it helps, its loop: `k1_matmul` (extern step), `k5_add_relu`
    (pointwise: up to three ops, noise such as casts dropped), `k8_sum` / `k8_sum_dim0`
    (a reduction over all dims / over dim 0), `k3_softmax_row` (one pass per row: a fused
    rows kernel or a row-wise template). Depends only on the plan, so it is deterministic."""
    if k.kind in _STEPS:
        op = g.nodes[k.roots[0]]["op"]
        what = op + ("_row" if op in ("softmax", "log_softmax") else "")
    elif k.kind == "rows":
        what = _row_summary(g, k) + "_row"
    elif k.kind == "reduction":
        d = g.nodes[k.roots[0]]
        dims = sorted(k.reduce_dims)
        partial = len(dims) < len(k.space)
        what = d["op"] + ("_dim" + "_".join(map(str, dims)) if partial else "")
    else:
        what = "_".join(_distinct_ops(g, k.nodes)[-_NAME_OPS:])
    prefix = f"k{index}_"
    return prefix + re.sub(r"\W", "_", what)[: _NAME_CHARS - len(prefix)].rstrip("_")


def _materialized(g: nx.DiGraph, outputs: list) -> set:
    """Op nodes that get a buffer: outputs, reductions, extern results and the computed
    values extern steps read, and roots of views of computed values (a view reads its
    root's memory, so the root must exist in memory)."""
    keep = set(outputs)
    for n, d in g.nodes(data=True):
        if d["kind"] in _STEPS or (d["kind"] == "op" and op_of(d["op"]).kind == "reduction"):
            keep.add(n)
        if d["kind"] in _STEPS:
            keep.update(p for p in g.predecessors(n) if g.nodes[p]["kind"] == "op")
        elif d["kind"] == "view" and g.nodes[d["root"]]["kind"] in ("op", *_STEPS):
            keep.add(d["root"])
    return keep


def _producers(g: nx.DiGraph, loads: list) -> list:
    """The computed nodes whose buffers `loads` read (a view reads its root)."""
    out = []
    for n in loads:
        d = g.nodes[n]
        src = d["root"] if d["kind"] == "view" else n
        if g.nodes[src]["kind"] in ("op", *_STEPS):
            out.append(src)
    return out


def schedule(g: nx.DiGraph) -> Plan:
    """Kernels in an order where every buffer is written before it is read. A pointwise
    root joins the first same-shape pointwise kernel that runs after everything it reads."""
    order = {n: i for i, n in enumerate(nx.topological_sort(g))}
    buffers: dict[int, Buffer] = {}

    def add(n: int, role: str) -> None:
        d = g.nodes[n]
        buffers[n] = Buffer(n, role, len(buffers), tuple(d["shape"]), d["dtype"])

    for n in g.graph["inputs"]:
        add(n, "arg")
    for n in g.graph["externals"]:
        add(n, "external")
    for n in g.graph["seeds"]:
        add(n, "seed")
    for n in g.graph["constants"]:
        add(n, "constant")
    outputs = list(dict.fromkeys(g.graph["outputs"]))
    computed = sorted(_materialized(g, outputs), key=order.get)
    for n in computed:
        if n not in outputs:
            add(n, "temp")
    for n in outputs:
        add(n, "output")
    kernels: list[Kernel] = []
    written: dict[int, int] = {}  # node -> index of the kernel that stores it
    for n in computed:
        d = g.nodes[n]
        if d["kind"] in _STEPS:
            operands = list(g.predecessors(n))
            kernels.append(Kernel("", d["kind"], [n], tuple(d["shape"]), nodes=[n],
                                  loads=sorted(operands, key=order.get)))
            written[n] = len(kernels) - 1
            continue
        if op_of(d["op"]).kind == "reduction":
            operand = d["args"][0][1]
            nodes, loads = _inline(g, [operand], order, frozenset(written))
            kernels.append(Kernel("", "reduction", [n], tuple(g.nodes[operand]["shape"]),
                                  tuple(d["attrs"]["dim"]), nodes + [n], loads))
            written[n] = len(kernels) - 1
            continue
        _, loads = _inline(g, [n], order)
        after = max((written[p] for p in _producers(g, loads)), default=-1)
        shape = tuple(d["shape"])
        home = next((i for i, k in enumerate(kernels) if i > after and k.kind == "pointwise"
                     and same_shape(k.space, shape)), None)
        if home is None:
            kernels.append(Kernel("", "pointwise", [], shape))
            home = len(kernels) - 1
        kernels[home].roots.append(n)
        written[n] = home
    for k in kernels:
        if k.kind == "pointwise":
            k.nodes, k.loads = _inline(g, k.roots, order)
    kernels = _fuse_rows(g, kernels)
    for i, k in enumerate(kernels):
        k.name = _kernel_name(i, g, k)
    plan = Plan(buffers, kernels, outputs)
    _share_temporaries(g, plan)
    return plan


def _last_dim_reduction(k: Kernel, space: tuple) -> bool:
    return (k.kind == "reduction" and same_shape(k.space, space) and k.reduce_dims == (len(space) - 1,)
            and not (not isinstance(space[-1], Sym) and space[-1] == 1))


def _row_stage(g: nx.DiGraph, k: Kernel, space: tuple, written: set) -> bool:
    """Whether `k` can run row by row inside a fused kernel over `space`: a reduction over
    the last dim, a pointwise kernel over the whole space or over one value per row; and it
    reads what earlier stages wrote only element for element (never through a view, which
    could reach another row)."""
    if not space or k.kind not in ("pointwise", "reduction"):
        return False
    per_row = (k.kind == "pointwise" and len(k.space) == len(space) and same_shape(k.space[:-1], space[:-1])
               and not isinstance(k.space[-1], Sym) and k.space[-1] == 1)
    fits = _last_dim_reduction(k, space) or (k.kind == "pointwise" and same_shape(k.space, space)) or per_row
    return fits and not any(g.nodes[n]["kind"] == "view" and g.nodes[n]["root"] in written for n in k.loads)


def _fuse_rows(g: nx.DiGraph, kernels: list) -> list:
    """Fuse runs of kernels over the same rows (layer norm: mean, centred values, variance,
    normalisation) into one "rows" kernel: one loop over rows, the stages in order inside,
    so each row is read from cache by every stage instead of from memory by every kernel."""
    out: list = []
    i = 0
    while i < len(kernels):
        k = kernels[i]
        space = k.space
        group: list = []
        if k.kind in ("pointwise", "reduction") and (k.kind == "pointwise" or _last_dim_reduction(k, space)):
            written: set = set()
            for nxt in kernels[i:]:
                if not _row_stage(g, nxt, space, written):
                    break
                group.append(nxt)
                written.update(nxt.roots)
        if len(group) >= 2 and any(s.kind == "reduction" for s in group):
            out.append(Kernel("", "rows", [r for s in group for r in s.roots], space,
                              nodes=list(dict.fromkeys(n for s in group for n in s.nodes)),
                              loads=list(dict.fromkeys(n for s in group for n in s.loads)), stages=group))
            i += len(group)
        else:
            out.append(k)
            i += 1
    return out


def _share_temporaries(g: nx.DiGraph, plan: Plan) -> None:
    """Plan the temporaries' memory: a temporary takes the block of an earlier one of the
    same shape and dtype whose last reader ran before it is first written (greedy, in
    kernel order), so a long chain of kernels cycles through a few warm blocks instead of
    touching fresh memory at every step. Extern results keep their own arrays."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, k in enumerate(plan.kernels):
        for r in k.roots:
            first.setdefault(r, i)
        for n in _producers(g, k.loads):
            last[n] = i
    blocks: list[list] = []  # [shape, dtype, index of the last kernel using it]
    temps = [b for b in plan.buffers.values() if b.role == "temp" and b.node in first
             and plan.kernels[first[b.node]].kind != "extern"]
    for b in sorted(temps, key=lambda b: first[b.node]):
        start, end = first[b.node], max(last.get(b.node, first[b.node]), first[b.node])
        free = next((i for i, (shape, dtype, busy) in enumerate(blocks)
                     if busy < start and dtype is b.dtype and same_shape(shape, b.shape)), None)
        if free is None:
            blocks.append([b.shape, b.dtype, end])
            free = len(blocks) - 1
        blocks[free][2] = end
        b.storage = free
