"""What the compiler made, graph by graph: the records `gradc dump` and its report read.

Contract: under `GRADC_DUMP_DIR=DIR`, every graph the compiler lowers (a forward, a
backward, or an inference graph) is appended to `records` in the order it was lowered,
as a `GraphRecord` holding the lowered graph, its schedule, the generated source, how
long lowering and building took and whether the build came from the disk cache; its
source is written to DIR as it is compiled. Names are deterministic (the record's
position and the function's name, never a hash or a time), so two dumps of the same
script diff cleanly.

`GRADC_DUMP_BACKEND=cuda` makes each record carry the CUDA rendering of its graph (the
same graph and schedule) in `cuda_source`, whatever backend runs it: the script runs on
the CPU as written while the dump shows the GPU code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from .render import sanitize
from .schedule import Plan

records: list[GraphRecord] = []


@dataclass
class GraphRecord:
    """One lowered graph. `part` is "forward", "backward" or "inference" (a graph with no
    backward); `backend` is what runs it ("c", or "cuda" on CUDA tensors; "cuda-render"
    for a `backend="cuda"` function on CPU inputs, rendered and not run). `cache` is
    "hit" (built code loaded from disk), "miss" (compiled now) or "none" (not built).
    `saved`: for a training forward, the graph nodes the backward reads."""

    index: int
    function: str
    part: str
    backend: str
    graph: nx.DiGraph
    plan: Plan
    source: str
    lower_ms: float = 0.0
    build_ms: float = 0.0
    cache: str = "none"
    saved: list = field(default_factory=list)
    cuda_source: str = ""

    @property
    def stem(self) -> str:
        """The file-name stem of this record's files: `03_train_step_backward`."""
        return f"{self.index:02d}_{sanitize(self.function, 60).replace(' ', '_')}_{self.part}"

    @property
    def suffix(self) -> str:
        return ".cu" if self.backend.startswith("cuda") else ".c"


def record(function: str, part: str, backend: str, graph: nx.DiGraph, plan: Plan, source: str,
           lower_ms: float = 0.0, saved: list | None = None) -> GraphRecord | None:
    """Under GRADC_DUMP_DIR, append a record for a graph just lowered and write its source
    (None otherwise: outside a dump nothing is kept, so long runs hold no graphs)."""
    folder = os.environ.get("GRADC_DUMP_DIR")
    if not folder:
        return None
    r = GraphRecord(len(records), function, part, backend, graph, plan, source, lower_ms,
                    saved=list(saved or ()))
    if dump_backend() == "cuda" and not backend.startswith("cuda"):
        from .render_cuda import render_cuda

        r.cuda_source = render_cuda(graph, plan, function)
    records.append(r)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / (r.stem + r.suffix)).write_text(source)
    if r.cuda_source:
        (Path(folder) / (r.stem + ".cu")).write_text(r.cuda_source)
    return r


def dump_backend() -> str:
    """The backend whose source `gradc dump` shows: "c" (what runs) or "cuda"."""
    return os.environ.get("GRADC_DUMP_BACKEND", "c") or "c"


def clear() -> None:
    records.clear()
