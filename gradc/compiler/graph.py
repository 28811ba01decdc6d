"""The captured trace as a `networkx.DiGraph`, and dead-code elimination.

Node ids are the trace's value ids. Node attributes:
- every node: `kind` ("input", "view", "op", "extern": an op without a C lowering whose
  eager kernel runs between C segments, or "template": an op with a hand-written C kernel),
  `op` (op name; "input"/"view" for those),
  `shape` (tuple), `dtype` (gradc dtype), `source` ((file, line, code) or None);
- inputs: `role` ("arg", "external", "seed": a per-call random seed the program draws
  itself, or "constant": a tensor made from known data inside the function, its array in
  `value`), `strides` (elements, as captured and guarded);
- views (of an input, never copied): `root` (the input node), `strides`, `offset` (element
  offset from the root's first element);
- ops: `attrs`, `args` (list of ("value", node) / ("const", scalar), in argument order),
  `compute` (dtype operands are cast to, or None).
Edges go from an operand to its consumer with `pos`: the tuple of argument positions
where it is used (x * x uses x at (0, 1)).
Graph attributes: `inputs` (arg node ids in call order), `externals`, `seeds`, `constants`,
`outputs` (the function's outputs, then, in a training forward, the values the backward
reads, then the values written into mutated inputs), `n_results` (how many leading outputs
are the function's), `n_grad_inputs` (a training backward: how many leading inputs are the
gradients of the forward's outputs; 0 otherwise), `mutations` ((input node, node whose
value is copied into it after each call) pairs), `symbols` (size symbol k is dim
symbols[k][1] of input node symbols[k][0]; shapes, strides and offsets may then hold
`symbolic.Sym`s), `names` (input node -> the argument's or parameter's Python name, where
known; for comments only).
"""
from __future__ import annotations

import networkx as nx

from .capture import EXTERNS, TEMPLATES, Trace


def build_graph(trace: Trace) -> nx.DiGraph:
    mutations = list(trace.mutations.items())
    g = nx.DiGraph(inputs=list(trace.inputs), externals=[vid for vid, _ in trace.externals],
                   seeds=list(trace.seeds), constants=list(trace.constants),
                   outputs=list(trace.outputs) + [v for _, v in mutations],
                   n_results=len(trace.outputs) - trace.n_saved, n_grad_inputs=trace.n_grad_inputs,
                   mutations=mutations, symbols=list(trace.symbols), names=dict(trace.names))
    for role, vids in (("arg", trace.inputs), ("external", [vid for vid, _ in trace.externals]),
                       ("seed", trace.seeds)):
        for vid in vids:
            shape, dtype, strides = trace.values[vid]
            g.add_node(vid, kind="input", op="input", role=role, shape=shape, dtype=dtype, strides=strides,
                       source=None)
    for vid, array in trace.constants.items():
        shape, dtype, strides = trace.values[vid]
        g.add_node(vid, kind="input", op="input", role="constant", value=array, shape=shape, dtype=dtype,
                   strides=strides, source=None)
    for vid, (root, shape, strides, offset, source) in trace.views.items():
        g.add_node(vid, kind="view", op="view", root=root, shape=shape, strides=strides, offset=offset,
                   dtype=trace.values[vid][1], source=source)
        g.add_edge(root, vid, pos=(0,))
    for rec in trace.records:
        shape, dtype, _ = trace.values[rec.out]
        kind = "extern" if rec.op in EXTERNS else "template" if rec.op in TEMPLATES else "op"
        g.add_node(rec.out, kind=kind, op=rec.op, attrs=rec.attrs, args=rec.args, compute=rec.compute,
                   shape=shape, dtype=dtype, source=rec.source)
        for pos, (tag, ref) in enumerate(rec.args):
            if tag == "value":
                if g.has_edge(ref, rec.out):
                    g.edges[ref, rec.out]["pos"] += (pos,)
                else:
                    g.add_edge(ref, rec.out, pos=(pos,))
    return g


def eliminate_dead_code(g: nx.DiGraph) -> nx.DiGraph:
    """Drop op and view nodes no output depends on, and externals nothing reads.
    Arg inputs stay: they fix the call signature; so do seeds: every call draws them, so
    the global generator advances exactly as in eager."""
    live = set(g.graph["outputs"])
    for out in g.graph["outputs"]:
        live |= nx.ancestors(g, out)
    dead = [n for n, d in g.nodes(data=True) if n not in live and d.get("role") not in ("arg", "seed")]
    g.remove_nodes_from(dead)
    g.graph["externals"] = [n for n in g.graph["externals"] if n in g]
    g.graph["constants"] = [n for n in g.graph["constants"] if n in g]
    return g
