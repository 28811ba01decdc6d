"""`gradc.explain`: what the compiler would make of one call, without compiling it.

Contract: one eager run of the function under the tracer (the same capture, backward
derivation, graph, schedule and render steps `gradc.compile` uses), nothing built or
executed beyond that, and no compiled function's cache or counters touched. The report
lists the forward (and backward) graph, every step of the schedule (C kernels with their
source, extern steps with a one-line note) and every graph-break reason with the user's
file:line where it is known.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx

from .api import CompiledFunction, lower, trace_call
from .errors import GraphBreak
from .graph import build_graph
from .joint import split
from .render import kernel_source
from .render_cuda import cuda_kernel_source


@dataclass
class KernelReport:
    """One step of a schedule: `backend` is "c" or "cuda" (a generated kernel) or "extern" (the
    op's eager kernel run between C segments)."""

    name: str
    backend: str
    source: str
    graph: str  # "forward" or "backward"
    nodes: list  # graph node ids it implements, in order


@dataclass
class Explanation:
    name: str
    graph: nx.DiGraph
    backward_graph: nx.DiGraph | None = None
    kernels: list[KernelReport] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"gradc.explain: {self.name}", f"forward graph: {_count(self.graph)}"]
        if self.backward_graph is not None:
            lines.append(f"backward graph: {_count(self.backward_graph)}")
        lines.append(f"kernels: {len(self.kernels)}")
        for k in self.kernels:
            g = self.graph if k.graph == "forward" else self.backward_graph
            nodes = ", ".join(f"{n} ({g.nodes[n]['op']})" for n in k.nodes)
            lines.append(f"  [{k.graph}] {k.name} ({k.backend}): {nodes}")
        lines.append(f"graph breaks: {len(self.breaks)}")
        lines.extend(f"  - {b}" for b in self.breaks)
        return "\n".join(lines)


def _count(g: nx.DiGraph) -> str:
    kinds = [d["kind"] for _, d in g.nodes(data=True)]
    return (f"{g.number_of_nodes()} nodes ({kinds.count('input')} inputs, {kinds.count('view')} views, "
            f"{kinds.count('op')} C ops, {kinds.count('extern')} extern ops), "
            f"{len(g.graph['outputs'])} outputs")


def _steps(graph: nx.DiGraph, plan, which: str, backend: str) -> list[KernelReport]:
    source = cuda_kernel_source if backend == "cuda" else kernel_source
    return [KernelReport(k.name, "extern" if k.kind == "extern" else backend, source(graph, plan, k), which,
                         list(k.nodes)) for k in plan.kernels]


def explain(fn: Callable, *args, **kwargs) -> Explanation:
    """Capture `fn(*args, **kwargs)` (fn plain, compiled, or a compiled module) and report
    its graphs, kernels and graph breaks."""
    forward = getattr(fn, "forward", fn) if not isinstance(fn, CompiledFunction) else fn
    target = forward.fn if isinstance(forward, CompiledFunction) else forward
    backend = "cuda" if isinstance(forward, CompiledFunction) and forward.backend == "cuda" else "c"
    name = getattr(target, "__qualname__", "function")
    trace, derivation = trace_call(target, args, kwargs)
    if trace.breaks:
        return Explanation(name, build_graph(trace), breaks=[trace.located(r) for r in trace.breaks])
    parts = split(trace, derivation) if derivation.placeholders else None
    result = Explanation(name, build_graph(trace if parts is None else parts.forward))
    try:
        graph, plan, _ = lower(trace if parts is None else parts.forward, name, backend)
        result.graph = graph
        result.kernels += _steps(graph, plan, "forward", backend)
        if parts is not None:
            graph, plan, _ = lower(parts.backward, f"{name} (backward)", backend)
            result.backward_graph = graph
            result.kernels += _steps(graph, plan, "backward", backend)
    except GraphBreak as e:
        result.breaks.append(str(e))
    return result
