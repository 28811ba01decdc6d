"""Test-only hooks for the compiler: plant a known bug to check that the checks catch it.

`planted_lowering(op, template)` makes the C (and CUDA) renderers use `template` as the
lowering of `op` while the `with` block runs, so a test can verify that `mode="check"`
names the broken node. The wrong code reaches the generated source, so its disk-cache key
differs from the correct build's and the two never share an artifact. Leaving the block
(normally or by an exception) restores the previous lowering; outside it the renderers
pay one lookup in an empty dict. Functions compiled inside the block keep their planted
code in memory: compile a fresh function (or call `gradc.compiler.reset()`) afterwards.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..ops import OPS
from .cexpr import PLANTED
from .constants import GENERATED


@contextlib.contextmanager
def planted_lowering(op_name: str, template: str) -> Iterator[None]:
    """Render op `op_name` with the C expression `template` (the op table's `lowering`
    syntax: `{0}`, `{1}` for operands, `{name}` for numeric attributes) while active.
    Raises KeyError for an op name the compiler does not know, so a typo cannot make a
    test pass by planting nothing."""
    if op_name not in OPS and op_name not in GENERATED:
        raise KeyError(f"planted_lowering: unknown op {op_name!r}")
    previous = PLANTED.get(op_name)
    PLANTED[op_name] = template
    try:
        yield
    finally:
        if previous is None:
            del PLANTED[op_name]
        else:
            PLANTED[op_name] = previous
