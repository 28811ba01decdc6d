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
whose values differ is named with its op, the user's source line, its shape and dtype, and
the largest absolute difference (where, and both values there).

For that node the error also names a standalone reproducer, written to a new directory
`$GRADC_CHECK_DIR/<function>_<n>` (default `./gradc_check_failures/...`; `n` is the first
unused number, so earlier failures stay): `operands.safetensors` holds the node's operand
values as eager computed them (`gradc.save`, no pickle; for a backward node these are
backward-graph values) and `repro.py` runs the node's op alone, eagerly and through
`gradc.compile` (fullgraph) on a one-op function, prints both and the difference, and
exits 1 while they differ (`main()` returns that status, so a test can run it under a
planted bug). Nothing is written when the check passes. A graph-only node (fill, arange,
rand) or an attribute with no Python literal gets no reproducer; the error says why.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, NoReturn

import networkx as nx
import numpy as np

from ..autograd import grad as autograd_grad
from ..autograd.grad_mode import no_grad
from ..device import CPU, device
from ..dtypes import dtype
from ..ops import OPS, dispatch
from ..serialization import save
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


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether compiled `a` and eager `b` agree: same shape, values within `tolerance`, NaN
    where the other has NaN."""
    if a.shape != b.shape:
        return False
    rtol, atol = tolerance(a.dtype)
    return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def difference(compiled: np.ndarray, eager: np.ndarray) -> str:
    """How far `compiled` is from `eager`: the largest absolute difference, its index and
    both values there (a NaN against a number counts as infinitely far), or the shapes."""
    if compiled.shape != eager.shape:
        return f"shapes differ: compiled {list(compiled.shape)}, eager {list(eager.shape)}"
    a, b = compiled.astype(np.float64), eager.astype(np.float64)
    with np.errstate(invalid="ignore"):
        gap = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))
    gap = np.where(np.isnan(gap), np.inf, gap)
    if gap.size == 0:
        return "max abs difference 0 (no elements)"
    at = tuple(int(i) for i in np.unravel_index(int(np.argmax(gap)), gap.shape))
    rtol, atol = tolerance(compiled.dtype)
    return (f"max abs difference {gap[at]:.6g} at index {list(at)}: compiled {compiled[at]!s}, "
            f"eager {eager[at]!s} (rtol {rtol:g}, atol {atol:g})")


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
    debug.graph["n_results"] = len(order)
    debug.graph["mutations"] = []  # the checked call already wrote its inputs
    plan = schedule(debug)
    source = render(debug, plan, "gradc check (all nodes stored)")
    library, _ = cache.build_or_load(source, entry_points(plan))
    outs = Module(debug, plan, source, library).execute(inputs)
    return {n: t.numpy() for n, t in zip(order, outs)}


def _fail(g: nx.DiGraph, inputs: dict[int, Tensor], fallback: int, what: str, fn: Any) -> NoReturn:
    """Raise the CompileCheckError for graph `g` run on `inputs`: the first differing node
    (else the differing output `fallback`), how it differs, and its reproducer."""
    eager = _eager_values(g, inputs)
    compiled = _compiled_values(g, inputs)
    head = f"gradc.compile(mode='check'): compiled and eager {what} differ; "
    part = "backward graph" if what == "gradients" else "graph"
    node = next((n for n in compiled if not close(compiled[n], eager[n])), None)
    if node is None:
        raise CompileCheckError(head + f"no node of the {part} differs when every node is stored; "
                                f"the differing output: {describe(g, fallback)}")
    d = g.nodes[node]
    found = difference(compiled[node], eager[node])
    raise CompileCheckError(f"{head}first differing graph node: {describe(g, node)}\n"
                            f"  in the {part} of {_name(fn)}: {d['dtype'].name} of shape {list(d['shape'])}; "
                            f"{found}\n  {_reproduce(g, node, eager, _name(fn), part, found)}")


def _name(fn: Any) -> str:
    """`fn`'s qualified name as a directory name (`<locals>` dropped, `<lambda>` -> lambda)."""
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    return re.sub(r"[^\w.-]+", "_", qualname.replace("<locals>.", "")).strip("_.") or "function"


def _literal(value: Any) -> str:
    """`value` (an op argument or attribute) as Python source; ValueError where it has none."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"float({str(value)!r})"
    if isinstance(value, (tuple, list)):
        items = ", ".join(_literal(v) for v in value)
        return f"[{items}]" if isinstance(value, list) else f"({items}{',' if len(value) == 1 else ''})"
    if isinstance(value, dtype):
        return repr(value)  # gradc.float32, ...
    if isinstance(value, device):
        return f"gradc.device({str(value)!r})"
    raise ValueError(f"an argument of type {type(value).__name__} has no Python literal")


_SCRIPT_BODY = '''

def main() -> int:
    """Run the node eagerly and compiled on the saved operands; 1 when they differ."""
    operands = gradc.load(Path(__file__).with_name("operands.safetensors"))
    eager = node(*operands).numpy()
    compiled = gradc.compile(node, fullgraph=True)(*operands).numpy()
    print("eager:", eager, "compiled:", compiled, sep="\\n")
    print(difference(compiled, eager))
    same = close(compiled, eager)
    print("compiled and eager agree" if same else "compiled and eager DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
'''


def _script(g: nx.DiGraph, n: int, name: str, part: str, found: str) -> str:
    """repro.py for node `n` of `g`: the node as a one-op function of its tensor operands."""
    d = g.nodes[n]
    params = [f"a{i}" for i, (tag, _) in enumerate(d["args"]) if tag == "value"]
    names = iter(params)
    call = [next(names) if tag == "value" else _literal(ref) for tag, ref in d["args"]]
    call += [f"{key}={_literal(value)}" for key, value in d["attrs"].items()]
    where = describe(g, n).replace("\n", " ")
    return (f"# Reproducer written by gradc.compile(mode='check') for {name}, {part} {where}\n"
            f"# {d['dtype'].name} of shape {list(d['shape'])}; there: {found}\n"
            "# Runs that op alone on its saved operand values; exits 1 while compiled and eager differ.\n"
            "import sys\nfrom pathlib import Path\n\nimport gradc\n"
            "from gradc.compiler.check import close, difference\nfrom gradc.ops import OPS, dispatch\n\n\n"
            f"def node({', '.join(params)}):\n"
            f"    return dispatch.apply(OPS[{d['op']!r}], {', '.join(call)})\n" + _SCRIPT_BODY)


def _new_directory(root: Path, name: str) -> Path:
    """Create and return `root/<name>_<n>` for the first `n` not taken (mkdir decides, so
    concurrent failures never share one)."""
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    while True:
        try:
            (root / f"{name}_{k}").mkdir()
            return root / f"{name}_{k}"
        except FileExistsError:
            k += 1


def _reproduce(g: nx.DiGraph, n: int, eager: dict[int, np.ndarray], name: str, part: str, found: str) -> str:
    """Write node `n`'s reproducer (see the module docstring); the line saying where, or why not."""
    d = g.nodes[n]
    if d["op"] in GENERATED:
        return f"no reproducer: {d['op']!r} is a graph-only node, not an op of the table"
    try:
        script = _script(g, n, name, part, found)
    except ValueError as e:
        return f"no reproducer: {e}"
    operands = [Tensor._from_array(np, np.ascontiguousarray(eager[ref]), g.nodes[ref]["dtype"], CPU)
                for tag, ref in d["args"] if tag == "value"]
    root = Path(os.environ.get("GRADC_CHECK_DIR") or "gradc_check_failures")
    try:
        directory = _new_directory(root.resolve(), name)
        save(operands, directory / "operands.safetensors")
        (directory / "repro.py").write_text(script)
    except OSError as e:
        return f"no reproducer: cannot write under {root}: {e}"
    return f"reproducer: {directory / 'repro.py'} (python repro.py exits 1 while compiled and eager differ)"


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
        if not close(arr, np.asarray(t._array())):
            raise CompileCheckError("gradc.compile(mode='check'): compiled and eager differ in a value "
                                    f"written in place into a {t.dtype.name} tensor of shape {list(t.shape)}")
    program = entry.program
    module = entry.module if program is None else program.forward
    ids = entry.inputs + [v for v, _, _ in entry.externals]
    inputs = dict(zip(ids, tensors))
    g = module.graph
    for node, c, e in zip(g.graph["outputs"], compiled, eager):
        if not close(c.detach().numpy(), e.detach().numpy()):
            _fail(g, inputs, node, "outputs", fn)
    if program is not None:
        _check_gradients(program, inputs, tensors, compiled[: program.n_outputs], eager, fn)


def _check_gradients(program: Any, inputs: dict[int, Tensor], tensors: list, compiled: tuple,
                     eager: tuple, fn: Any) -> None:
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
        if (a is None) != (b is None) or (a is not None and not close(a, b)):
            _fail_backward(program, inputs, cotangents, fn)


def _fail_backward(program: Any, inputs: dict[int, Tensor], cotangents: list, fn: Any) -> NoReturn:
    """Rebuild the backward's inputs (cotangents, then the forward's saved values) and
    localize the mismatch in the backward graph."""
    values = dict(inputs)
    forward = program.forward
    values.update(zip(forward.graph.graph["outputs"], forward.execute(inputs)))
    backward_inputs = {p: c for p, c in zip(program.placeholders, cotangents)}
    backward_inputs.update((v, values[v]) for v in program.saved)
    g = program.backward.graph
    _fail(g, backward_inputs, g.graph["outputs"][0], "gradients", fn)
