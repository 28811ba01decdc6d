"""Dynamic dims: which sizes become symbols, and when a symbolic entry may serve a call.

A guard key lists every argument's shape and strides (see `guards`). A dynamic entry is
compiled once with symbols for some (argument position, dim) pairs: with `dynamic=True`
every dim of every tensor argument (of size >= 2), otherwise the dims whose size changed
between two calls of the same structure (the second distinct size marks a dim dynamic).
Its `pattern` is the key with those sizes (and the strides of those arguments, when
contiguous) blanked; a call whose key has that pattern may use it.

May, not does: symbols reach the graph through shape arithmetic, and a size that went
through something the capture cannot follow is baked in (see `symbolic`). So the first
call at each new size is captured again, eagerly, and its trace must equal the symbolic
trace evaluated at the new sizes (`signature`); only then does the key join the entry,
and the C built once serves it. Otherwise the call compiles as a static entry.
"""
from __future__ import annotations

from ..size import contiguous_strides
from .capture import Trace
from .joint import Derivation
from .symbolic import evaluate

_ARGS = 2  # guard-key parts before the arguments: grad mode, keyword names


def _tensor_parts(key: tuple) -> list[tuple[int, tuple]]:
    return [(i, part) for i, part in enumerate(key[_ARGS:]) if part[0] == "T"]


def all_dims(key: tuple) -> frozenset:
    """Every dim of size >= 2 of every tensor argument (`dynamic=True`)."""
    return frozenset((i, d) for i, part in _tensor_parts(key) for d, n in enumerate(part[2]) if n >= 2)


def changed_dims(key: tuple, other: tuple) -> frozenset | None:
    """The dims whose sizes differ between two keys that agree on everything else (and
    whose sizes are >= 2 in both); None when they differ otherwise."""
    if len(key) != len(other) or key[:_ARGS] != other[:_ARGS]:
        return None
    dims = set()
    for i, (a, b) in enumerate(zip(key[_ARGS:], other[_ARGS:])):
        if a[0] != "T" or b[0] != "T":
            if a != b:
                return None
            continue
        if len(a[2]) != len(b[2]) or a[4:] != b[4:] or a[1] != b[1]:
            return None
        mine = {d for d, (x, y) in enumerate(zip(a[2], b[2])) if x != y}
        if any(min(a[2][d], b[2][d]) < 2 for d in mine):
            return None
        contiguous = all(tuple(p[3]) == contiguous_strides(p[2]) for p in (a, b))
        if a[3] != b[3] and not (mine and contiguous):
            return None
        dims |= {(i, d) for d in mine}
    return frozenset(dims)


def pattern(key: tuple, dims: frozenset) -> tuple | None:
    """`key` with the sizes at `dims` blanked (and, for contiguous arguments with such dims,
    their strides); None when a dynamic size is 0 or 1 (those are always specialized)."""
    parts = list(key)
    for i, part in _tensor_parts(key):
        mine = [d for p, d in dims if p == i]
        if not mine:
            continue
        shape = list(part[2])
        if any(shape[d] < 2 for d in mine):
            return None
        strides = "contiguous" if tuple(part[3]) == contiguous_strides(shape) else part[3]
        for d in mine:
            shape[d] = None
        parts[_ARGS + i] = (part[0], part[1], tuple(shape), strides, *part[4:])
    return tuple(parts)


def _canon(x):
    """A comparable form: floats by their bits (so -0.0 and NaN are told apart)."""
    if isinstance(x, float):
        return ("float", x.hex())
    if isinstance(x, (tuple, list)):
        return tuple(_canon(v) for v in x)
    if isinstance(x, dict):
        return tuple((k, _canon(v)) for k, v in x.items())
    if isinstance(x, slice):
        return ("slice", _canon(x.start), _canon(x.stop), _canon(x.step))
    return x


def signature(trace: Trace, derivation: Derivation, sizes: tuple = ()) -> tuple:
    """Everything the compiled code depends on in a capture, at symbol values `sizes`."""
    ev = lambda x: _canon(evaluate(x, sizes))
    records = tuple((r.op, ev(r.attrs), ev(r.args), r.out, r.compute) for r in trace.records)
    constants = tuple((v, a.shape, a.dtype.str, a.tobytes()) for v, a in trace.constants.items())
    externals = tuple((v, id(ref())) for v, ref in trace.externals)
    d = derivation
    return (tuple(trace.inputs), externals, ev(sorted(trace.values.items())), ev(sorted(trace.views.items())),
            records, tuple(trace.outputs), trace.single, tuple(trace.seeds), constants,
            tuple(trace.mutations.items()), tuple(trace.breaks),
            (d.boundary, tuple(d.placeholders), tuple(d.differentiable), tuple(d.targets), tuple(d.grads)))
