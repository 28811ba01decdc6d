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

After the run, `write_files` adds what `gradc dump` shows beside the sources: each
graph as DOT (and SVG where Graphviz is installed), the nodes a training forward saves
for its backward, and `summary.txt`. Everything written there is deterministic (no
timings, no cache states: a second dump hits the cache the first one filled), so two
dumps of one script diff cleanly; `table(..., timings=True)` is the printed variant.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from .dot import node_label, node_source, to_dot
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
        """The file-name stem of this record's files: `03_train_step_backward`; the function's
        name keeps only word characters, `.`, `-`, `<` and `>`, so no name reaches a path
        separator or a quote (`__qualname__` is any text)."""
        name = re.sub(r"[^\w.<>-]", "_", sanitize(self.function, 60))
        return f"{self.index:02d}_{name}_{self.part}"

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


_DUMP_FILE = re.compile(r"\d{2,}_.+\.(c|cu|dot|svg|txt)")


def is_dump_file(name: str) -> bool:
    """Whether a file name is one a dump writes (`03_step_backward.c`, `summary.txt`): the
    only files an earlier dump's leftovers may be cleared by."""
    return name == "summary.txt" or bool(_DUMP_FILE.fullmatch(name))


def clear_folder(folder: str | Path) -> int:
    """Remove an earlier dump's files from `folder`, and nothing else; returns how many."""
    removed = 0
    root = Path(folder)
    if root.is_dir():
        for path in root.iterdir():
            if path.is_file() and not path.is_symlink() and is_dump_file(path.name):
                path.unlink()
                removed += 1
    return removed


def kernel_counts(r: GraphRecord) -> tuple[int, int]:
    """(generated kernels, extern steps) of a record's schedule."""
    extern = sum(k.kind == "extern" for k in r.plan.kernels)
    return len(r.plan.kernels) - extern, extern


def table(rows: list[GraphRecord], timings: bool = False) -> str:
    """One line per record: graph (the file stem), nodes, kernels, extern steps and, with
    `timings`, compile ms (lower + build) and cache state."""
    header = ["graph", "nodes", "kernels", "extern"] + (["compile ms", "cache"] if timings else [])
    lines = [header]
    for r in rows:
        line = [r.stem, str(r.graph.number_of_nodes()), *map(str, kernel_counts(r))]
        if timings:
            line += [f"{r.lower_ms + r.build_ms:.1f}", r.cache]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "".join(_aligned(line, widths) + "\n" for line in lines)


def _aligned(cells: list[str], widths: list[int]) -> str:
    """The first column left-aligned (names), the others right-aligned (numbers)."""
    padded = [cells[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:])]
    return "  ".join(padded).rstrip()


def summary(rows: list[GraphRecord]) -> str:
    """`summary.txt`: the table without timings, then every record's kernels in order."""
    parts = [table(rows)]
    for r in rows:
        parts.append(f"\n{r.stem} ({r.part}, {r.backend})\n")
        width = max((len(k.name) for k in r.plan.kernels), default=0)
        for k in r.plan.kernels:
            parts.append(f"  {k.name.ljust(width)}  {k.kind.ljust(9)}  nodes {' '.join(map(str, k.nodes))}\n")
    return "".join(parts)


def saved_text(r: GraphRecord) -> str:
    """One line per node a training forward saves for its backward: id, op, shape, dtype
    and the user's source line where known."""
    lines = []
    for n in r.saved:
        if n in r.graph:
            where = node_source(r.graph, n)
            lines.append(node_label(r.graph, n).replace("\n", " ") + (f"  {where}" if where else ""))
    return "".join(line + "\n" for line in lines)


def write_files(rows: list[GraphRecord], folder: str | Path) -> None:
    """Write, per record, `<stem>.dot`, `<stem>.svg` (only when Graphviz's `dot` is on
    PATH; skipped silently if it fails) and, for a training forward, `<stem>.saved.txt`;
    then `summary.txt`."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    graphviz = shutil.which("dot")
    for r in rows:
        dot_path = root / f"{r.stem}.dot"
        dot_path.write_text(to_dot(r.graph, r.plan, r.stem))
        if graphviz:
            _render_svg(graphviz, dot_path, root / f"{r.stem}.svg")
        if r.part == "forward" and r.saved:
            (root / f"{r.stem}.saved.txt").write_text(saved_text(r))
    (root / "summary.txt").write_text(summary(rows))


def _render_svg(graphviz: str, source: Path, target: Path) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([graphviz, "-Tsvg", str(source), "-o", str(target)], capture_output=True, timeout=60,
                       check=False)
