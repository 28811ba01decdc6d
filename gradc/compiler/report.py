"""`gradc dump --html`: one self-contained page showing what the compiler made of a script.

Contract: `write_html(records, path)` writes a single HTML file that loads nothing (inline
CSS and SVG, no script, no font or image fetched): a table of the dumped graphs, then per
graph a picture of it, laid out here so that Graphviz is not needed, and per kernel its
kind, the graph nodes it implements, the user's source lines those nodes came from and its
generated source with syntax highlighting. The page is a function of the records alone (no
time stamp; only the compile timings vary between two dumps of one script), and every text
taken from the records, the user's code and function names included, is HTML-escaped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import networkx as nx
from markupsafe import Markup, escape

from .dot import node_label, node_source
from .dump import GraphRecord
from .render import kernel_source, resource_dir
from .render_cuda import cuda_kernel_source
from .schedule import Kernel, Plan

# Kernel colours, cycled in schedule order: distinct hues dark enough for white badge text.
_PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#db2777", "#65a30d",
            "#a16207", "#4338ca", "#0f766e", "#78350f")
_EDGE = "#94a3b8"  # an edge between two kernels (or from an input)
_ROW = 8  # nodes per row of the picture: a wider layer wraps onto further rows
_BOX_H, _GAP_X, _GAP_Y, _MARGIN, _CHAR_W = 34, 22, 26, 14, 6.8

# ---------------------------------------------------------------------------- highlighting

_KEYWORDS = frozenset("""
    auto break case const continue default do else enum extern for goto if inline register restrict return sizeof
    static struct switch typedef union volatile while __global__ __device__ __host__ __shared__ __constant__
    __restrict__ __forceinline__ __launch_bounds__ template typename
""".split())
_TYPES = frozenset("""
    void char short int long float double bool signed unsigned size_t ptrdiff_t int8_t int16_t int32_t int64_t
    uint8_t uint16_t uint32_t uint64_t half __half __nv_bfloat16 dim3 float2 float4 int2 int4
""".split())
_BUILTINS = frozenset("threadIdx blockIdx blockDim gridDim warpSize __syncthreads __shfl_down_sync".split())
_TOKEN = re.compile("|".join((
    r"(?P<com>/\*.*?\*/|//[^\n]*)",
    r"(?P<pre>^[ \t]*#[^\n]*)",
    r"""(?P<str>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')""",
    r"(?P<num>(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)[uUlLfF]*)",
    r"(?P<word>[A-Za-z_]\w*)(?P<call>\s*\()?",
)), re.S | re.M)
_CLASS = {"com": "c-com", "pre": "c-pre", "str": "c-str", "num": "c-num"}


def _span(cls: str, text: str) -> str:
    return f'<span class="{cls}">{escape(text)}</span>'


def highlight(code: str) -> Markup:
    """C or CUDA source as HTML: every character of `code` escaped, in order, with comments,
    preprocessor lines, strings, numbers, keywords, types, builtins and called functions
    wrapped in `<span class="c-...">` (the page's stylesheet colours them). Put it in a <pre>."""
    out, at = [], 0
    for m in _TOKEN.finditer(code):
        out.append(str(escape(code[at:m.start()])))
        at = m.end()
        kind = m.lastgroup if m.lastgroup != "call" else "word"
        if kind != "word":
            out.append(_span(_CLASS[kind], m.group()))
            continue
        word = m.group("word")
        cls = ("c-kw" if word in _KEYWORDS else "c-ty" if word in _TYPES else "c-bi" if word in _BUILTINS
               else "c-fn" if m.group("call") else "")
        out.append(_span(cls, word) if cls else str(escape(word)))
        out.append(str(escape(m.group("call") or "")))
    out.append(str(escape(code[at:])))
    return Markup("".join(out))


# ---------------------------------------------------------------------------- graph picture


def short_name(kernel: Kernel) -> str:
    """`k3` for `k3_add_relu`: the badge a node of that kernel carries in the picture."""
    head = kernel.name.split("_", 1)[0]
    return head if re.fullmatch(r"k\d+", head) else kernel.name


def kernel_colors(plan: Plan) -> dict[str, str]:
    """Kernel name -> its colour in the picture and the kernel list (schedule order, cycled)."""
    return {k.name: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(plan.kernels)}


def _owners(g: nx.DiGraph, plan: Plan) -> dict[int, list[Kernel]]:
    """Node -> the kernels computing it: the one storing it first, then those recomputing it."""
    owners: dict[int, list[Kernel]] = {}
    for k in plan.kernels:
        for n in k.roots:
            owners.setdefault(n, []).append(k)
    for k in plan.kernels:
        for n in k.nodes:
            if k not in owners.setdefault(n, []):
                owners[n].append(k)
    return {n: ks for n, ks in owners.items() if n in g}


def _layers(g: nx.DiGraph) -> list[list[int]]:
    """Nodes by layer: each node just above its first consumer, as late as the longest path
    from the inputs allows (so a weight sits next to the matmul reading it, not at the top,
    and a mask is drawn where it is used); a node nothing reads stays one layer below its
    deepest operand."""
    layer = {n: depth for depth, gen in enumerate(nx.topological_generations(g)) for n in gen}
    for n in reversed(list(nx.topological_sort(g))):
        if g.out_degree(n):
            layer[n] = min(layer[s] for s in g.successors(n)) - 1
    layers: list[list[int]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in sorted(g.nodes):
        layers[layer[n]].append(n)
    return [nodes for nodes in layers if nodes]


def _order(h: nx.DiGraph, rows: list[list]) -> None:
    """Reorder each row by the mean position of its neighbours (a few sweeps down and up),
    which keeps most edges short and uncrossed."""
    for sweep in range(4):
        down = sweep % 2 == 0
        near = h.predecessors if down else h.successors
        for nodes in rows[1:] if down else rows[-2::-1]:
            pos = {n: i - (len(row) - 1) / 2 for row in rows for i, n in enumerate(row)}

            def key(n, pos: dict = pos, near=near) -> float:
                others = [pos[m] for m in near(n)]
                return sum(others) / len(others) if others else pos[n]

            nodes.sort(key=key)


def _place(row: list, width: dict, want: dict) -> dict:
    """Centres for one row's nodes as close to `want` as the boxes allow without overlap: the
    mean of the tightest packing pushed right and the one pushed left (both keep the gaps)."""
    sep = [(width[a] + width[b]) / 2 + _GAP_X for a, b in zip(row, row[1:])]
    right = [want[row[0]]]
    for n, s in zip(row[1:], sep):
        right.append(max(want[n], right[-1] + s))
    left = [want[row[-1]]]
    for n, s in zip(reversed(row[:-1]), reversed(sep)):
        left.append(min(want[n], left[-1] - s))
    return {n: (a + b) / 2 for n, a, b in zip(row, right, reversed(left))}


@dataclass
class _Layout:
    x: dict  # node (or bend point) -> centre
    y: dict  # node (or bend point) -> top of its row
    width: dict
    route: dict  # edge (a, b) -> the bend points it passes, one per row it crosses
    size: tuple[float, float]


def _layout(g: nx.DiGraph) -> _Layout:
    """Rows of boxes (wide layers wrapped at `_ROW` nodes), and a narrow bend point in every
    row an edge crosses, so that long edges are routed around boxes rather than through them."""
    rows = [nodes[i:i + _ROW] for nodes in _layers(g) for i in range(0, len(nodes), _ROW)]
    row_of = {n: r for r, row in enumerate(rows) for n in row}
    h, route = nx.DiGraph(), {}
    h.add_nodes_from(g.nodes)
    for a, b in sorted(g.edges):
        path = [a, *((a, b, r) for r in range(row_of[a] + 1, row_of[b])), b]
        for r, bend in enumerate(path[1:-1], row_of[a] + 1):
            rows[r].append(bend)
        nx.add_path(h, path)
        route[a, b] = path[1:-1]
    _order(h, rows)
    width = {n: max(len(line) for line in node_label(g, n).split("\n")) * _CHAR_W + 24 if n in g else 6.0
             for n in h.nodes}
    x = {}
    for row in rows:  # packed and centred on 0, then pulled towards neighbours row by row
        x.update(_place(row, width, dict.fromkeys(row, 0.0)))
    for sweep in range(6):
        near = h.predecessors if sweep % 2 == 0 else h.successors
        for row in rows if sweep % 2 == 0 else rows[::-1]:
            want = {}
            for n in row:
                others = [x[m] for m in near(n)]
                want[n] = sum(others) / len(others) if others else x[n]
            x.update(_place(row, width, want))
    left = min((x[n] - width[n] / 2 for n in h.nodes), default=0.0)
    x = {n: v - left + _MARGIN for n, v in x.items()}
    y = {n: _MARGIN + 6 + r * (_BOX_H + _GAP_Y) for r, row in enumerate(rows) for n in row}
    right = max((x[n] + width[n] / 2 for n in h.nodes), default=0.0) + _MARGIN
    return _Layout(x, y, width, route, (right, _MARGIN * 2 + 6 + len(rows) * (_BOX_H + _GAP_Y) - _GAP_Y))


def _curve(points: list[tuple[float, float]]) -> str:
    """SVG path data of an edge through `points` (its start, the top and bottom of each bend
    point's row, its end): a smooth S, vertical at both ends, from row to row, and a straight
    run down each bend point's row."""
    (x0, y0), *rest = points
    d = [f"M{x0:.1f},{y0:.1f}"]
    for i, (x1, y1) in enumerate(rest):
        if i % 2 == 1:  # down through the row of a bend point
            d.append(f"L{x1:.1f},{y1:.1f}")
            continue
        px, py = points[i]
        bend = max(12.0, (y1 - py) / 2)
        d.append(f"C{px:.1f},{py + bend:.1f} {x1:.1f},{y1 - bend:.1f} {x1:.1f},{y1:.1f}")
    return " ".join(d)


def graph_svg(g: nx.DiGraph, plan: Plan, anchor: str) -> Markup:
    """An inline SVG picture of a lowered graph, top (inputs) to bottom (outputs). Boxes are
    filled by node kind (CSS classes `n-input`, `n-view`, ...), outlined in the colour of the
    kernel computing them, with that kernel's badge linking to `#{anchor}-{kernel name}`;
    outputs have a double outline; an edge inside one kernel takes its colour. The node's
    Python source line is its tooltip. `anchor` also prefixes the SVG's own ids, so several
    pictures can share a page."""
    lay = _layout(g)
    colors, owners = kernel_colors(plan), _owners(g, plan)
    outputs = set(g.graph.get("outputs", ()))
    w, h = lay.size
    edges, arrows = [], {}  # arrows: colour -> its marker's id (one arrowhead per edge colour)
    for a, b in sorted(g.edges):
        shared = [k for k in owners.get(a, ()) if k in owners.get(b, ())]
        color = colors[shared[0].name] if shared else _EDGE
        marker = arrows.setdefault(color, f"{escape(anchor)}-arrow{len(arrows)}")
        points = [(lay.x[a], lay.y[a] + _BOX_H)]
        for bend in lay.route[a, b]:
            points += [(lay.x[bend], lay.y[bend]), (lay.x[bend], lay.y[bend] + _BOX_H)]
        points.append((lay.x[b], lay.y[b] - 2))
        edges.append(f'<path d="{_curve(points)}" stroke="{color}" marker-end="url(#{marker})"/>')
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{w:.0f}" height="{h:.0f}" '
             f'viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="graph {escape(anchor)}"><defs>']
    parts += [f'<marker id="{marker}" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
              f'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{color}"/></marker>' for color, marker in arrows.items()]
    parts += ['</defs><g class="edges">', *edges, '</g><g class="nodes">']
    for n in sorted(g.nodes):
        d, ks = g.nodes[n], owners.get(n, [])
        x, y, bw = lay.x[n] - lay.width[n] / 2, lay.y[n], lay.width[n]
        stroke = colors[ks[0].name] if ks else "#64748b"
        tip = node_source(g, n) or d["op"]
        parts.append(f'<g class="node n-{escape(d["kind"])}"><title>{escape(tip)}</title>')
        if n in outputs:
            parts.append(f'<rect class="out" x="{x - 3:.1f}" y="{y - 3:.1f}" width="{bw + 6:.1f}" '
                         f'height="{_BOX_H + 6}" rx="9" stroke="{stroke}"/>')
        parts.append(f'<rect class="box" x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{_BOX_H}" rx="6" '
                     f'stroke="{stroke}"/>')
        head, shape = node_label(g, n).split("\n")
        parts.append(f'<text x="{lay.x[n]:.1f}" y="{y + 14:.1f}" class="head">{escape(head)}</text>'
                     f'<text x="{lay.x[n]:.1f}" y="{y + 27:.1f}" class="shape">{escape(shape)}</text>')
        bx = x + bw - 4
        for k in reversed(ks):  # badges right to left, the storing kernel's rightmost
            label = short_name(k)
            lw = len(label) * 6.2 + 8
            bx -= lw
            parts.append(f'<a href="#{escape(anchor)}-{escape(k.name)}"><rect class="badge" x="{bx:.1f}" '
                         f'y="{y - 10:.1f}" width="{lw:.1f}" height="13" rx="4" fill="{colors[k.name]}"/>'
                         f'<text class="badge" x="{bx + lw / 2:.1f}" y="{y - 0.5:.1f}">{escape(label)}</text></a>')
            bx -= 3
        parts.append("</g>")
    parts.append("</g></svg>")
    return Markup("".join(parts))


# ---------------------------------------------------------------------------- page


def _shape(shape: tuple) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _python_lines(g: nx.DiGraph, nodes: list) -> list[str]:
    """`file.py:12: code` of the nodes' source lines, each once, in first-use order; lines
    without code (made by the backward derivation) are left out."""
    seen: dict[str, None] = {}
    for n in nodes:
        source = g.nodes[n].get("source") if n in g else None
        if source and source[2]:
            seen.setdefault(node_source(g, n))
    return list(seen)


def _kernel_view(r: GraphRecord, k: Kernel, color: str, cuda: bool) -> dict:
    members = [n for n in dict.fromkeys([*k.nodes, *k.roots]) if n in r.graph]
    text = (cuda_kernel_source if cuda else kernel_source)(r.graph, r.plan, k)
    return {
        "name": k.name, "kind": k.kind, "color": color, "extern": k.kind == "extern",
        "nodes": [{"id": n, "op": r.graph.nodes[n]["op"], "shape": _shape(r.graph.nodes[n]["shape"]),
                   "dtype": r.graph.nodes[n]["dtype"].name, "stored": n in k.roots} for n in members],
        "reads": [node_label(r.graph, n).split("\n")[0] for n in k.loads if n in r.graph],
        "python": _python_lines(r.graph, members),
        "language": "CUDA" if cuda else "C",
        "code": escape(text) if k.kind == "extern" else highlight(text),
    }


def _graph_view(r: GraphRecord) -> dict:
    cuda = r.backend.startswith("cuda") or bool(r.cuda_source)
    anchor = f"g{r.index}"
    colors = kernel_colors(r.plan)
    kinds = [d["kind"] for _, d in r.graph.nodes(data=True)]
    sources = [(("CUDA" if r.backend.startswith("cuda") else "C"), highlight(r.source))]
    if r.cuda_source:
        sources.append(("CUDA", highlight(r.cuda_source)))
    return {
        "anchor": anchor, "index": r.index, "function": r.function, "part": r.part, "backend": r.backend,
        "stem": r.stem, "nodes": r.graph.number_of_nodes(), "kernels_total": len(r.plan.kernels),
        "generated": sum(k.kind != "extern" for k in r.plan.kernels),
        "inputs": kinds.count("input"), "outputs": len(r.graph.graph.get("outputs", ())),
        "lower_ms": f"{r.lower_ms:.1f}", "build_ms": f"{r.build_ms:.1f}", "cache": r.cache,
        "saved": ", ".join(str(n) for n in r.saved), "svg": graph_svg(r.graph, r.plan, anchor),
        "kernels": [_kernel_view(r, k, colors[k.name], cuda) for k in r.plan.kernels], "sources": sources,
    }


def _files(records: list[GraphRecord]) -> list[str]:
    """The user's Python files the graphs were traced from (base names, first-seen order)."""
    files: dict[str, None] = {}
    for r in records:
        for n in sorted(r.graph.nodes):
            source = r.graph.nodes[n].get("source")
            if source and source[2]:
                files.setdefault(str(source[0]).rsplit("/", 1)[-1])
    return list(files)


def _environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resource_dir("gradc.templates", "templates")))
    return jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


def render_html(records: list[GraphRecord]) -> str:
    """The report page's HTML text (see the module docstring); `write_html` writes it."""
    functions = list(dict.fromkeys(r.function for r in records))
    return _environment().get_template("report.html.j2").render(
        title="gradc report: " + (", ".join(functions) or "no graphs"), functions=functions,
        files=_files(records), graphs=[_graph_view(r) for r in records])


def write_html(records: list[GraphRecord], path: str | Path) -> None:
    """Write the report of `records` (`gradc.compiler.dump.records` after a dumped run) to `path`."""
    Path(path).write_text(render_html(records), encoding="utf-8")
