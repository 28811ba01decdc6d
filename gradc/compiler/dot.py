"""A lowered graph as Graphviz DOT text, the nodes of each kernel drawn in one box.

Contract: deterministic text (nodes in id order, kernels in schedule order), readable
without Graphviz and renderable with it (`dot -Tsvg`). Node labels carry the id the
generated code's comments cite, the op, shape and dtype; the user's source line is the
tooltip.
"""
from __future__ import annotations

import networkx as nx

from .schedule import Plan

_FILL = {"input": "#dbeafe", "view": "#f1f5f9", "op": "#dcfce7", "template": "#fef9c3", "extern": "#fee2e2"}


def node_label(g: nx.DiGraph, n: int) -> str:
    """`12 add` over `[64, 10] float32`: what a picture of node n shows."""
    d = g.nodes[n]
    what = d.get("role", "input") if d["kind"] == "input" else d["op"]
    shape = "[" + ", ".join(str(s) for s in d["shape"]) + "]"
    return f"{n} {what}\n{shape} {d['dtype'].name}"


def node_source(g: nx.DiGraph, n: int) -> str:
    """`file.py:12: y = x.relu()`, or "" where the node's source line is unknown."""
    source = g.nodes[n].get("source")
    if not source:
        return ""
    file, line, code = source
    return f"{file.rsplit('/', 1)[-1]}:{line}: {code}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: nx.DiGraph, plan: Plan | None = None, title: str = "graph") -> str:
    """DOT text of `g`; with `plan`, each kernel's nodes (and its stored results) are a cluster."""
    lines = [f"digraph {_quote(title)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];']
    outputs = set(g.graph.get("outputs", ()))
    clustered = set()
    for i, k in enumerate(plan.kernels if plan is not None else ()):
        members = [n for n in dict.fromkeys([*k.nodes, *k.roots]) if n in g and n not in clustered]
        clustered.update(members)
        if members:
            lines.append(f"  subgraph cluster_{i} {{ label={_quote(k.name)}; style=dashed; "
                         + " ".join(str(n) + ";" for n in members) + " }")
    for n in sorted(g.nodes):
        d = g.nodes[n]
        extra = ", penwidth=2" if n in outputs else ""
        lines.append(f"  {n} [label={_quote(node_label(g, n))}, fillcolor={_quote(_FILL[d['kind']])}, "
                     f"tooltip={_quote(node_source(g, n) or d['op'])}{extra}];")
    for a, b in sorted(g.edges):
        lines.append(f"  {a} -> {b};")
    lines.append("}")
    return "\n".join(lines) + "\n"
