"""Constant-fill nodes: `zeros`/`ones`/`full` (and `new_*`, `*_like`) called inside a
compiled function.

Such a tensor is a pure function of values known at capture time (shape, dtype, fill
value), so the graph recreates it instead of breaking: a "fill" node is a pointwise op
with no operands whose C expression is the fill literal, so it fuses into the kernels
that read it (a backward's `g.new_zeros(...)` costs nothing unless an extern step needs
it in memory). Random factories never report here: their tensors stay unknown to the
tracer and break the graph, since replaying them would repeat the same numbers.

Two more operand-free node kinds depend on the element's position instead: "arange"
(start + i * step, computed in float64 or int64 as the eager factory computes it) and
"rand" (dropout's counter-based uniform draw, see gradc.counter_rng: element i of the draw
with the seed read from the node's one operand, a per-call seed input). Their lowerings
use `{pos}`, the element's C-order index in the node's own shape.
"""
from __future__ import annotations

import numpy as np

from .. import counter_rng
from ..ops import OPS, Op

FILL = Op("fill", meta=None, kind="pointwise", lowering="{value}")
ARANGE = Op("arange", meta=None, kind="pointwise", lowering="({start} + ({pos}) * {step})")
RAND = Op("rand", meta=None, kind="pointwise", lowering="gradc_uniform({0}, {pos})")
GENERATED = {op.name: op for op in (FILL, ARANGE, RAND)}  # graph-only ops, not in the eager op table
POSITIONAL = frozenset({"arange", "rand"})


def op_of(name: str) -> Op:
    """The op-table entry of a graph node's op, the graph-only ones included."""
    return GENERATED.get(name) or OPS[name]


def generated_value(node: dict, operands: list) -> np.ndarray:
    """The eager value of a graph-only node (its attributes; operand arrays in order)."""
    shape, dtype = tuple(node["shape"]), node["dtype"].np
    if node["op"] == "fill":
        return np.full(shape, node["attrs"]["value"], dtype=dtype)
    if node["op"] == "rand":
        return counter_rng.uniform(np, shape, int(operands[0]), dtype)
    start, step = node["attrs"]["start"], node["attrs"]["step"]
    n = int(np.prod(shape))
    return (start + np.arange(n, dtype=node["compute"].np) * step).astype(dtype).reshape(shape)


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
