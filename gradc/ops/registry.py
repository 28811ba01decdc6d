"""The op table: every primitive op of gradc, declared once.

An `Op` bundles the four things each consumer needs:
- `meta(*args, **attrs)`: the shape/dtype rule. Returns `(outputs, compute_dtype)`
  where `outputs` is a tuple of `(shape, dtype)` and `compute_dtype` (or None) is the
  dtype tensor inputs are cast to before the kernel runs. It also validates, raising
  the errors users see (naming the op, the shapes and the dtypes). Operands before
  position `cast_from` are passed uncast (where's condition stays bool).
- `kernel(xp, *arrays, **attrs)`: the eager kernel, written against the array module
  `xp` (numpy or cupy). View ops instead give `view(x, **attrs) -> (shape, stride,
  offset)`: they never touch data.
- `backward(ctx, *grads)`: the derivative, written in gradc ops so that it is itself
  differentiable (double backward) and so that the compiler can trace it into a
  backward graph. `ctx` is the autograd node (see `autograd.node.OpNode`).
- `lowering`: how the compiler renders a pointwise op: a C expression with `{0}`, `{1}`, ...
  for the operands and `{name}` for numeric attrs, or a callable `attrs -> expression`;
  helpers it may call live in runtime/gradc_runtime.h. None: the compiler breaks the graph.

Eager execution (`dispatch.apply`), autograd (`autograd.node`) and the compiler all
read this table.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OPS: dict[str, Op] = {}


@dataclass(eq=False, slots=True)
class Op:
    name: str
    meta: Callable
    kernel: Callable | None = None
    view: Callable | None = None
    backward: Callable | None = None
    saves: str = ""  # which values backward reads: "", "inputs", "output" or "both"
    kind: str = "other"  # "pointwise", "reduction", "view" or "other"
    lowering: Any = None
    extra: dict = field(default_factory=dict)
    cast_from: int = 0  # operands before this position keep their dtype (where's bool condition)
    node_cls: type = None  # the autograd Node class, made on registration

    @property
    def differentiable(self) -> bool:
        return self.backward is not None

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def defop(name: str, **fields) -> Op:
    """Declare a primitive op; registering the same name twice is a bug, so it raises."""
    if name in OPS:
        raise ValueError(f"op {name!r} is already declared")
    from ..autograd.node import make_node_class

    op = Op(name, **fields)
    op.node_cls = make_node_class(op)
    OPS[name] = op
    return op
