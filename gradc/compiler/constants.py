"""Constant-fill nodes: `zeros`/`ones`/`full` (and `new_*`, `*_like`) called inside a
compiled function.

Such a tensor is a pure function of values known at capture time (shape, dtype, fill
value), so the graph recreates it instead of breaking: a "fill" node is a pointwise op
with no operands whose C expression is the fill literal, so it fuses into the kernels
that read it (a backward's `g.new_zeros(...)` costs nothing unless an extern step needs
it in memory). Random factories never report here: their tensors stay unknown to the
tracer and break the graph, since replaying them would repeat the same numbers.
"""
from __future__ import annotations

from ..ops import OPS, Op

FILL = Op("fill", meta=None, kind="pointwise", lowering="{value}")


def op_of(name: str) -> Op:
    """The op-table entry of a graph node's op, "fill" included (it is not an eager op)."""
    return FILL if name == "fill" else OPS[name]


def fill_value(value, floating: bool) -> int | float | None:
    """The fill as a number the C literal renders exactly as numpy fills, or None when it
    cannot be (a non-integral float filling an integer tensor)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and (floating or value.is_integer()):
        return value
    return None
