"""Training capture: the forward as traced, and a backward derived from the op table.

While the tracer is still on after the function returned, `derive` calls
`autograd.grad(outputs, targets, grad_outputs=<placeholders>)`: the engine runs the same
backward formulas eager autograd uses, and since they are gradc ops the tracer records
them. Nothing about derivatives is written twice. `split` then cuts the joint trace in
two graphs:
- forward: the function's outputs, then the computed values the backward reads ("saved");
- backward: inputs are one gradient per differentiable output, then the saved values
  (computed ones, and inputs/parameters the formulas read); outputs are one gradient per
  target that receives one.
Targets are the inputs and externals (parameters) that require grad. Tensor hooks on the
targets are suspended during the traced `grad` so the capture never fires user hooks; the
compiled function's autograd node lets the engine fire them at the real backward.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

from ..autograd import grad as autograd_grad
from ..autograd.node import gradient_edge
from ..factories import zeros
from ..size import contiguous_strides
from .capture import EXTERNS, TEMPLATES, Record, Trace, _geometry
from .constants import op_of


@dataclass
class Derivation:
    """What `derive` learned about the joint trace (value ids of the capture)."""

    boundary: int = 0  # value ids >= boundary belong to the backward
    placeholders: list = field(default_factory=list)  # one per differentiable output
    differentiable: list = field(default_factory=list)  # per output: did it require grad
    targets: list = field(default_factory=list)  # value ids of inputs/externals that require grad
    grads: list = field(default_factory=list)  # per target: value id of its gradient, or None


@dataclass
class Split:
    """The two traces and how to connect them at run time."""

    forward: Trace  # outputs: the function's outputs, then saved computed values
    backward: Trace  # inputs: placeholders, then `saved`; outputs: the non-None grads
    saved: list  # value ids the backward reads from the forward, in backward input order
    derivation: Derivation


@contextlib.contextmanager
def _hooks_suspended(tensors: list):
    """Hide the tensor hooks of the targets' gradient nodes (restored afterwards)."""
    stash = []
    for t in tensors:
        node, _ = gradient_edge(t)
        stash.append((node, node._tensor_hooks))
        node._tensor_hooks = None
    try:
        yield
    finally:
        for node, hooks in stash:
            node._tensor_hooks = hooks


def derive(trace: Trace, tracer, out: Derivation) -> None:
    """`capture`'s `then`: trace the backward of the outputs w.r.t. the grad-requiring
    inputs and externals into the same trace; problems become break reasons."""
    outputs = [tracer.keep[v] for v in trace.outputs]
    known = [(v, tracer.keep[v]) for v in trace.inputs] + list(trace.externals)
    targets = [(vid, t) for vid, t in known if t.requires_grad]
    out.differentiable = [o.requires_grad for o in outputs]
    diff = [o for o in outputs if o.requires_grad]
    if not targets or not diff:
        return
    out.boundary = len(trace.values)
    tracer.factories = False  # placeholders are graph inputs, not fills
    placeholders = [zeros(o.shape, dtype=o.dtype) for o in diff]
    tracer.factories = True
    out.placeholders = [tracer.value(p, "placeholder") for p in placeholders]
    out.targets = [vid for vid, _ in targets]
    n_externals, n_breaks, mutations = len(trace.externals), len(trace.breaks), dict(trace.mutations)
    try:
        with _hooks_suspended([t for _, t in targets]):
            grads = autograd_grad(diff, [t for _, t in targets], grad_outputs=placeholders,
                                  retain_graph=True, allow_unused=True)
    except RuntimeError as e:  # eager autograd will say the same when it is asked
        tracer.brk(f"backward: {e}")
        return
    if len(trace.externals) > n_externals:
        tracer.brk("the backward reads a tensor made outside the traced ops")
    if trace.mutations != mutations:
        tracer.brk("the backward writes into an input in place")
    if len(trace.breaks) > n_breaks:
        trace.breaks[n_breaks:] = [f"backward: {r}" for r in trace.breaks[n_breaks:]]
        return
    for g in grads:
        vid = None if g is None else tracer.ids.get(id(g), tracer.aliases.get(_geometry(g)))
        if g is not None and vid is None:
            tracer.brk("a gradient is not computed by traced ops")
        out.grads.append(vid)


def split(trace: Trace, d: Derivation) -> Split:
    """Cut the joint trace at `d.boundary` into forward and backward traces."""
    b = d.boundary
    fwd_records = [r for r in trace.records if r.out < b]
    bwd_records = [r for r in trace.records if r.out >= b]
    bwd_views = {v: spec for v, spec in trace.views.items() if v >= b}
    read = {ref for r in bwd_records for tag, ref in r.args if tag == "value" and ref < b}
    read |= {spec[0] for spec in bwd_views.values() if spec[0] < b}
    saved = set()
    for v in read:
        if v in trace.views:  # a view of a forward value: keep the view, save its root
            bwd_views[v] = trace.views[v]
            saved.add(trace.views[v][0])
        else:
            saved.add(v)
    values = dict(trace.values)
    computed = {r.out for r in bwd_records}
    copies: dict[int, int] = {}
    for vid in dict.fromkeys(g for g in d.grads if g is not None and g not in computed):
        # a gradient that is a placeholder, a view or a forward value: the graph copies it
        if vid < b:
            saved.add(trace.views[vid][0] if vid in trace.views else vid)
            if vid in trace.views:
                bwd_views[vid] = trace.views[vid]
        shape, dtype, _ = values[vid]
        copies[vid] = len(values)
        values[copies[vid]] = (shape, dtype, contiguous_strides(shape))
        bwd_records.append(Record("clone", {}, [("value", vid)], copies[vid], None, ("<backward>", 0, "")))
    d = replace(d, grads=[copies.get(g, g) for g in d.grads])  # the capture's own stays as traced
    bwd_records = _recompute(trace, fwd_records, saved, bwd_views) + bwd_records
    # constants the backward reads are its own (made during the backward, or before it)
    constants = {v: a for v, a in trace.constants.items() if v >= b or v in saved}
    saved_list = sorted(saved - set(constants))
    produced = {r.out for r in fwd_records}
    stored = [v for v in saved_list if v in produced]
    forward = replace(trace, records=fwd_records, views={v: s for v, s in trace.views.items() if v < b},
                      constants={v: a for v, a in trace.constants.items() if v < b},
                      outputs=list(trace.outputs) + stored, n_saved=len(stored))
    backward = Trace(inputs=list(d.placeholders) + saved_list, n_grad_inputs=len(d.placeholders), externals=[],
                     constants=constants, values=values, names=dict(trace.names),
                     views=bwd_views, records=bwd_records,
                     outputs=list(dict.fromkeys(g for g in d.grads if g is not None)), single=False)
    return Split(forward, backward, saved_list, d)


def _recompute(trace: Trace, fwd_records: list, saved: set, bwd_views: dict) -> list:
    """Choose which saved values the backward recomputes instead of receiving: pointwise
    values (fills included; not random draws) whose operands the backward has anyway
    (inputs, parameters, values the forward stores regardless: extern, template and
    reduction results, and the values still saved). Such a value then costs the forward
    no store and the backward no load: its kernels compute it inline. Updates `saved`
    (and `bwd_views` for views it reads); returns the records to prepend to the backward."""
    stored = {r.out for r in fwd_records if r.op in EXTERNS or r.op in TEMPLATES or op_of(r.op).kind == "reduction"}
    known = set(trace.inputs) | {v for v, _ in trace.externals} | set(trace.constants) | stored
    by_out = {r.out: r for r in fwd_records}
    chosen: dict[int, Record] = {}
    for v in sorted(saved):
        r = by_out.get(v)
        if (r is None or v in trace.outputs or r.op == "rand" or r.op in EXTERNS or r.op in TEMPLATES
                or op_of(r.op).kind != "pointwise"):
            continue
        roots = [trace.views[ref][0] if ref in trace.views else ref for tag, ref in r.args if tag == "value"]
        if all(root in known or root in chosen or (root in saved and root not in chosen) for root in roots):
            chosen[v] = r
    for v, r in chosen.items():
        saved.discard(v)
        for tag, ref in r.args:
            if tag != "value":
                continue
            if ref in trace.views:
                bwd_views[ref] = trace.views[ref]
                ref = trace.views[ref][0]
            if ref not in chosen:
                saved.add(ref)
    return list(chosen.values())
