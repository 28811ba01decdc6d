"""`mode="check"`: compare a compiled call with eager and name the first node that differs.

Contract: the compiled results (and, for a training entry, the gradients of the inputs
and parameters that require grad, for a fixed cotangent) must match the eager function's
within `tolerance(dtype)`, else `CompileCheckError`. Gradients are taken with
`autograd.grad` (retaining both graphs, hooks suspended), so neither run touches the
user's `.grad` nor fires user hooks, and the caller can still backward through the result.

To localize a mismatch, the graph that produced it is rebuilt with every op node as an
output (a throwaway debug build through the same schedule/render/cache path, counters
untouched), run on the same inputs, and compared node by node, in topological order, with
an eager evaluation of each node through the op table (`dispatch.apply`). The first node
whose values differ is named with its op and the user's source line.
"""
from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

from ..autograd import grad as autograd_grad
from ..autograd.grad_mode import no_grad
from ..device import CPU
from ..ops import OPS, dispatch
from ..tensor import Tensor
from . import cache
from .constants import GENERATED, generated_value
from .errors import CompileCheckError
from .extern import operand_array
from .joint import _hooks_suspended
from .render import entry_points, render
from .runner import Module
from .schedule import schedule


def tolerance(dtype: np.dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing values of `dtype`; exact for integers and bool."""
    if dtype == np.float32:
        return 1e-4, 1e-5
    if dtype == np.float64:
        return 1e-7, 1e-9
    return 0.0, 0.0


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    rtol, atol = tolerance(a.dtype)
    return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def describe(g: nx.DiGraph, n: int) -> str:
    """`node N (op) at file:line: code`, as far as the node's source is known."""
    d = g.nodes[n]
    text = f"node {n} ({d['op']})"
    if d.get("source"):
        file, line, code = d["source"]
        text += f" at {file}:{line}: {code}"
    return text


def _eager_values(g: nx.DiGraph, inputs: dict[int, Tensor]) -> dict[int, np.ndarray]:
    """Every node's value computed eagerly, node by node, through the op table."""
    arrays: dict[int, np.ndarray] = {}
    with no_grad():
        for n in nx.topological_sort(g):
            d = g.nodes[n]
            if d["kind"] == "input":
                arrays[n] = d["value"] if d["role"] == "constant" else inputs[n]._array()
            elif d["kind"] == "view":
                arrays[n] = operand_array(g, n, arrays)
            elif d["op"] in GENERATED:
                arrays[n] = generated_value(d, [arrays[ref] for tag, ref in d["args"] if tag == "value"])
            else:
                args = [Tensor._from_array(np, arrays[ref], g.nodes[ref]["dtype"], CPU) if tag == "value"
                        else ref for tag, ref in d["args"]]
                out = dispatch.apply(OPS[d["op"]], *args, **d["attrs"])
                arrays[n] = np.ascontiguousarray(out._array())
    return arrays


def _compiled_values(g: nx.DiGraph, inputs: dict[int, Tensor]) -> dict[int, np.ndarray]:
    """Every op node's value from a debug build of `g` that stores all of them."""
    debug = g.copy()
    order = [n for n in nx.topological_sort(g) if g.nodes[n]["kind"] in ("op", "extern", "template")]
    debug.graph["outputs"] = order
    debug.graph["mutations"] = []  # the checked call already wrote its inputs
    plan = schedule(debug)
    source = render(debug, plan, "gradc check (all nodes stored)")
    library, _ = cache.build_or_load(source, entry_points(plan))
    outs = Module(debug, plan, source, library).execute(inputs)
    return {n: t.numpy() for n, t in zip(order, outs)}


def first_difference(g: nx.DiGraph, inputs: dict[int, Tensor]) -> int | None:
    """The first op node (topological order) whose compiled value differs from eager."""
    eager = _eager_values(g, inputs)
    compiled = _compiled_values(g, inputs)
    return next((n for n in compiled if not _close(compiled[n], eager[n])), None)


def _fail(g: nx.DiGraph, inputs: dict[int, Tensor], fallback: int, what: str) -> None:
    node = first_difference(g, inputs)
    where = describe(g, fallback if node is None else node)
    raise CompileCheckError(f"gradc.compile(mode='check'): compiled and eager {what} differ; "
                            f"first differing graph node: {where}")


def _as_tuple(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _cotangent(t: Tensor) -> Tensor:
    """A fixed, non-constant cotangent (a constant one hides transposition bugs)."""
    values = 1.0 + 0.5 * np.sin(np.arange(t.numel(), dtype=np.float64)).reshape(t.shape)
    return Tensor._from_array(np, values.astype(t.dtype.np), t.dtype, CPU)


def check_call(entry: Any, fn: Any, tensors: list, args: tuple, kwargs: dict, compiled: tuple,
               written: list) -> None:
    """Compare `compiled` (the entry's raw output tuple for this call; `tensors` are the
    call's tensors then the entry's externals) with eager `fn(*args, **kwargs)`, and the
    values the compiled call wrote into inputs (`written`: (tensor, array) pairs, the
    tensors since rewound) with what eager writes."""
    eager = _as_tuple(fn(*args, **kwargs))
    for t, arr in written:
        if not _close(arr, np.asarray(t._array())):
            raise CompileCheckError("gradc.compile(mode='check'): compiled and eager differ in a value "
                                    f"written in place into a {t.dtype.name} tensor of shape {list(t.shape)}")
    program = entry.program
    module = entry.module if program is None else program.forward
    ids = entry.inputs + [v for v, _, _ in entry.externals]
    inputs = dict(zip(ids, tensors))
    g = module.graph
    for node, c, e in zip(g.graph["outputs"], compiled, eager):
        if not _close(c.detach().numpy(), e.detach().numpy()):
            _fail(g, inputs, node, "outputs")
    if program is not None:
        _check_gradients(program, inputs, tensors, compiled[: program.n_outputs], eager)


def _check_gradients(program: Any, inputs: dict[int, Tensor], tensors: list, compiled: tuple,
                     eager: tuple) -> None:
    targets = list({id(t): t for t in tensors if t.requires_grad}.values())
    pairs = [(c, e) for c, e in zip(compiled, eager) if c.requires_grad and e.requires_grad]
    if not targets or not pairs:
        return
    cotangents = [_cotangent(c) for c, _ in pairs]
    with _hooks_suspended(targets):
        got = autograd_grad([c for c, _ in pairs], targets, grad_outputs=cotangents,
                            retain_graph=True, allow_unused=True)
        want = autograd_grad([e for _, e in pairs], targets, grad_outputs=cotangents,
                             retain_graph=True, allow_unused=True)
    for a, b in zip(got, want):
        a = None if a is None else a.numpy()
        b = None if b is None else b.numpy()
        if (a is None) != (b is None) or (a is not None and not _close(a, b)):
            _fail_backward(program, inputs, cotangents)


def _fail_backward(program: Any, inputs: dict[int, Tensor], cotangents: list) -> None:
    """Rebuild the backward's inputs (cotangents, then the forward's saved values) and
    localize the mismatch in the backward graph."""
    values = dict(inputs)
    forward = program.forward
    values.update(zip(forward.graph.graph["outputs"], forward.execute(inputs)))
    backward_inputs = {p: c for p, c in zip(program.placeholders, cotangents)}
    backward_inputs.update((v, values[v]) for v in program.saved)
    g = program.backward.graph
    _fail(g, backward_inputs, g.graph["outputs"][0], "gradients")
