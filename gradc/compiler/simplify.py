"""Graph passes run before dead-code elimination: constant folding, exact algebraic
simplification and common-subexpression elimination.

Contract: the simplified graph computes, for every output, bitwise what eager computes
(dtype, shape, NaN/inf and signed zero included), and stays valid for `schedule` and
`render` (the node attribute contract of `graph`). Only rewrites that are exact for every
input value are made; anything doubtful is left alone. Nodes that lose their consumers
are left for `eliminate_dead_code`.

Output ids never change: the runner returns outputs by node id and a training program
looks up its saved values and gradients by the ids of the capture (see `training`), so
when an output is the node to replace, the replacement's computation moves to the
output's id instead ("absorbing" it). An output is only ever replaced by a computed node
that is not itself an output: an input or a view cannot be an output, and two outputs
cannot share one id. Graph inputs are never merged or replaced.

Node `args` lists and `attrs` dicts are shared with the trace's records (and so with
every graph built from that trace), so they are replaced, never mutated in place.
"""
from __future__ import annotations

import math
from collections import defaultdict

import networkx as nx
import numpy as np

from ..dtypes import dtype as DType
from .constants import fill_value, op_of
from .extern import kernel_arguments
from .symbolic import Sym, is_symbolic, same_shape
from .symbolic import same as same_size

_COMPUTED = ("op", "extern", "template")
_FOLD_WIDTH = 4  # elements per operand when folding: a vector, not a lone scalar, as in eager
_INVOLUTIONS = ("neg", "bitwise_not")
_IDEMPOTENT = ("maximum", "minimum", "bitwise_and", "bitwise_or")
_COPIES = ("clone", "cast")


def simplify(g: nx.DiGraph) -> nx.DiGraph:
    """Fold, simplify and merge until nothing changes; mutates and returns `g`.

    Each sweep walks the graph in topological order, so a node is rewritten after its
    operands reached their final form within that sweep; sweeps repeat while any rewrite
    happened. Every rewrite removes a node, or turns an op into a fill or an output into a
    copy of another output (each at most once per node), so this ends."""
    while _sweep(g):
        pass
    return g


def _sweep(g: nx.DiGraph) -> bool:
    outputs = set(g.graph["outputs"])
    seen: dict[tuple, list] = defaultdict(list)  # CSE bucket key -> representative nodes
    changed = False
    for n in list(nx.topological_sort(g)):
        if n not in g or g.nodes[n]["kind"] == "input":
            continue
        d = g.nodes[n]
        if d["kind"] == "op" and not is_symbolic(d["args"]) and not is_symbolic(d["attrs"]):
            # a symbolic size as an operand is a constant at one size only: never fold or rewrite it
            changed |= fold(g, n)
            r = algebraic(g, n)
            if r is not None and replace(g, n, r, outputs):
                changed = True
                if n not in g:
                    continue
        key = _bucket(g.nodes[n])
        r = next((m for m in seen[key] if m in g and equivalent(g.nodes[m], g.nodes[n])), None)
        if r is not None and replace(g, n, r, outputs, copy=True):
            changed = True
            if n not in g:
                continue
        seen[_bucket(g.nodes[n])].append(n)
    return changed


# ------------------------------------------------------------------ rewiring

def replace(g: nx.DiGraph, n, r, outputs: set, copy: bool = False) -> bool:
    """Make every use of node `n` a use of `r` (a node computing the same value, with the
    same shape and dtype); False where that would break the contract, leaving `g` as is.
    When both are outputs, `copy` makes `n` a copy of `r` instead (worth it for a CSE
    duplicate, whose computation the copy saves; not for an algebraic identity).

    A view of a computed `n` addresses it as C-contiguous memory, so its root can only
    move to another computed node (inputs have arbitrary strides)."""
    if n in outputs:
        if g.nodes[r]["kind"] not in _COMPUTED:
            return False
        if r in outputs:
            return copy and _copy_of(g, n, r)
        _absorb(g, n, r)
        return True
    if g.nodes[r]["kind"] not in _COMPUTED and any(g.nodes[c]["kind"] == "view" for c in g.successors(n)):
        return False
    _rewire(g, n, r)
    g.remove_node(n)
    return True


def _absorb(g: nx.DiGraph, n, r) -> None:
    """Output `n` takes over the computation of `r`, which disappears. No cycle can form:
    `n`'s new operands are ancestors of `r`, none of which consumes `r`."""
    g.remove_edges_from(list(g.in_edges(n)))
    d = g.nodes[n]
    for attr in ("kind", "op", "attrs", "args", "compute", "shape", "dtype", "source"):
        d[attr] = g.nodes[r][attr]
    for p in g.predecessors(r):
        g.add_edge(p, n, pos=g.edges[p, r]["pos"])
    _rewire(g, r, n)
    g.remove_node(r)


def _copy_of(g: nx.DiGraph, n, r) -> bool:
    """Output `n` becomes a cast of output `r` to their common dtype (an exact copy that
    every dtype lowers; clone has no integer lowering), and its consumers read `r`; False
    if it already is such a copy."""
    d = g.nodes[n]
    if d["kind"] == "op" and d["op"] in _COPIES and d["args"] == [("value", r)]:
        return False
    g.remove_edges_from(list(g.in_edges(n)))
    _rewire(g, n, r)
    d.update(kind="op", op="cast", attrs={"dtype": d["dtype"]}, args=[("value", r)], compute=None)
    g.add_edge(r, n, pos=(0,))
    return True


def _rewire(g: nx.DiGraph, old, new) -> None:
    for c in list(g.successors(old)):
        pos = g.edges[old, c]["pos"]
        d = g.nodes[c]
        if d["kind"] == "view":
            d["root"] = new
        else:
            d["args"] = [("value", new) if tag == "value" and ref == old else (tag, ref) for tag, ref in d["args"]]
        if g.has_edge(new, c):
            g.edges[new, c]["pos"] = tuple(sorted(g.edges[new, c]["pos"] + pos))
        else:
            g.add_edge(new, c, pos=pos)
        g.remove_edge(old, c)


# ------------------------------------------------------------------ common subexpressions

def _bucket(d: dict) -> tuple:
    """A hashable summary of what `equivalent` compares (equal nodes share a bucket)."""
    if d["kind"] == "view":
        return ("view", d["root"], tuple(d["shape"]), tuple(d["strides"]), d["offset"])
    refs = tuple(ref if tag == "value" else None for tag, ref in d["args"])
    return (d["kind"], d["op"], refs, tuple(d["shape"]), _name(d["dtype"]), _name(d["compute"]))


def _name(dt) -> str | None:
    return None if dt is None else dt.name


def equivalent(a: dict, b: dict) -> bool:
    """Whether two view/op/extern nodes (attribute dicts) compute the same value: same op,
    attrs, operands, compute dtype, dtype and shape (views: same root and geometry)."""
    if a["kind"] != b["kind"] or a["op"] != b["op"] or not same_shape(a["shape"], b["shape"]):
        return False
    if not same(a["dtype"], b["dtype"]):
        return False
    if a["kind"] == "view":
        return (a["root"] == b["root"] and same_shape(a["strides"], b["strides"])
                and same_size(a["offset"], b["offset"]))
    if a["op"] == "fill":
        return _fill_array(a, 1).tobytes() == _fill_array(b, 1).tobytes()
    return (same(a["compute"], b["compute"]) and same(a["attrs"], b["attrs"])
            and len(a["args"]) == len(b["args"])
            and all(ta == tb and (ra == rb if ta == "value" else same(ra, rb))
                    for (ta, ra), (tb, rb) in zip(a["args"], b["args"])))


def same(a, b) -> bool:
    """Equality of captured attrs and constants that never over-merges: types must match
    (True, 1 and 1.0 are different constants), floats compare by value and sign (0.0 is
    not -0.0; NaN is NaN), containers and slices elementwise, dtypes by ==, and any other
    object (opaque markers) only by identity."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, Sym):
        return same_size(a, b)
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, (bool, int, str, bytes)):
        return a == b
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, slice):
        return same(a.start, b.start) and same(a.stop, b.stop) and same(a.step, b.step)
    if isinstance(a, DType):
        return a == b
    return False


# ------------------------------------------------------------------ constant folding

def _fill_array(d: dict, width: int) -> np.ndarray:
    return np.full((width,), d["attrs"]["value"], dtype=d["dtype"].np)


def fold(g: nx.DiGraph, n) -> bool:
    """Turn pointwise op `n` into a fill node when every tensor operand is a fill and the
    eager kernel, run as `dispatch.apply` runs it (operands cast to the compute dtype,
    result converted to the node dtype), gives a finite value a fill renders exactly."""
    d = g.nodes[n]
    op = op_of(d["op"])
    if d["op"] == "fill" or op.kind != "pointwise" or op.kernel is None:
        return False
    refs = [ref for tag, ref in d["args"] if tag == "value"]
    if not refs or any(g.nodes[ref]["op"] != "fill" for ref in refs):
        return False
    outputs = g.graph["outputs"]
    if d["op"] in _COPIES and n in outputs and refs[0] in outputs:
        return False  # `_copy_of` made this output a copy of an equal one: folding it back would loop
    value = _eager_scalar(g, d, op)
    if value is None:
        return False
    g.remove_edges_from(list(g.in_edges(n)))
    d.update(op="fill", attrs={"value": value}, args=[], compute=None)
    return True


def _eager_scalar(g: nx.DiGraph, d: dict, op):
    arrays = kernel_arguments(d, lambda ref: _fill_array(g.nodes[ref], _FOLD_WIDTH))
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(op.kernel(np, *arrays, **d["attrs"]))
            result = result.astype(d["dtype"].np, copy=False)
    except Exception:  # eager ran this op during capture; anything unexpected means: do not fold
        return None
    if result.shape != (_FOLD_WIDTH,) or np.any(result != result[0]):
        return None
    value = result[0].item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value == -(2 ** 63):
        return None  # no C literal spells INT64_MIN
    number = fill_value(value, d["dtype"].is_floating_point)
    if number is None or np.full((1,), number, dtype=d["dtype"].np).tobytes() != result[:1].tobytes():
        return None
    return number


# ------------------------------------------------------------------ algebraic simplification

def algebraic(g: nx.DiGraph, n):
    """The node `n` can be replaced by, under a rule exact for every value, or None.

    Rules (each only when the replacement has exactly `n`'s shape and dtype, and `n`'s
    compute dtype is its dtype, so neither broadcasting nor promotion is skipped):
    x * 1, 1 * x, x / 1, x ** 1 (a scalar exponent), x - (+0), and x + (-0) / (-0) + x
    (x + 0.0 is not exact: -0.0 + 0.0 is +0.0; integers: any zero) -> x; neg(neg(x)),
    ~~x -> x; max/min/and/or(x, x) -> x; where(c, x, x) and where on a constant
    condition -> the chosen branch; clone(x) and cast of x to its own dtype -> x."""
    d = g.nodes[n]
    op, args = d["op"], d["args"]
    if d["compute"] is not None and not same(d["compute"], d["dtype"]):
        return None

    def fits(tag, ref) -> bool:
        if tag != "value":
            return False
        x = g.nodes[ref]
        return same_shape(x["shape"], d["shape"]) and same(x["dtype"], d["dtype"])

    if op in _COPIES and fits(*args[0]):
        return args[0][1] if op == "clone" or same(d["attrs"]["dtype"], d["dtype"]) else None
    if op in _INVOLUTIONS and fits(*args[0]):
        inner = g.nodes[args[0][1]]
        if inner["kind"] == "op" and inner["op"] == op and fits(*inner["args"][0]):
            return inner["args"][0][1]
        return None
    if op in _IDEMPOTENT and args[0] == args[1] and fits(*args[0]):
        return args[0][1]
    if op == "where":
        cond = _constant(g, args[0], None)
        if args[1] == args[2] or cond is not None:
            pick = args[1] if args[1] == args[2] or cond else args[2]
            return pick[1] if fits(*pick) else None
        return None
    if len(args) != 2 or op not in ("mul", "div", "pow", "add", "sub"):
        return None
    for x, c, right in ((args[0], args[1], True), (args[1], args[0], False)):
        if not fits(*x):
            continue
        k = _constant(g, c, d["dtype"])
        if k is None:
            continue
        if _identity(op, k, right, c[0] == "const"):
            return x[1]
    return None


def _identity(op: str, k: np.ndarray, right: bool, scalar: bool) -> bool:
    """Whether constant `k` (already in the compute dtype) leaves the other operand as is.
    `right`: `k` is the second operand; `scalar`: it is a captured Python scalar."""
    if k.dtype.kind not in "biuf":
        return False
    if op in ("mul", "div"):
        return (op == "mul" or right) and bool(k == 1)
    if op == "pow":
        return right and scalar and bool(k == 1)
    if k.dtype.kind == "b" or k != 0:
        return False
    floating = k.dtype.kind == "f"
    negative_zero = bool(np.signbit(k))
    if op == "add":
        return not floating or negative_zero
    return right and (not floating or not negative_zero)


def _constant(g: nx.DiGraph, arg: tuple, dtype) -> np.ndarray | None:
    """A constant argument (a Python scalar or a fill node) as a 0-d array converted to
    `dtype` as the kernel sees it (or in its own dtype when `dtype` is None)."""
    tag, ref = arg
    if tag == "const":
        if dtype is None:
            return np.asarray(ref)
        if isinstance(ref, float) and not dtype.is_floating_point:
            return None
        try:
            with np.errstate(all="ignore"):
                return np.asarray(ref).astype(dtype.np) if isinstance(ref, float) else np.asarray(ref, dtype.np)
        except (OverflowError, ValueError):
            return None
    d = g.nodes[ref]
    if d["kind"] != "op" or d["op"] != "fill":
        return None
    a = _fill_array(d, 1)
    with np.errstate(all="ignore"):
        return (a if dtype is None else a.astype(dtype.np))[0]
