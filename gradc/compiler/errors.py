"""The compiler's exceptions.

`GraphBreak` is internal: capture and lowering raise it to say "this function cannot be
compiled as one graph, run it eagerly". `GraphBreakError` is what users see with
`fullgraph=True`; `CompileCheckError` is raised by `mode="check"` when compiled and eager
results differ. `BuildError` is a toolchain failure (compiler missing or failing); `ExportError` lists
what keeps `gradc.export` from writing a model as C.
"""
from __future__ import annotations


class GraphBreak(Exception):
    """A reason the function cannot be captured as one graph (human readable)."""


class GraphBreakError(RuntimeError):
    """Raised by a `fullgraph=True` compiled function when its graph would break."""


class CompileCheckError(AssertionError):
    """Raised by `mode="check"` when compiled and eager results differ."""


class BuildError(RuntimeError):
    """The C toolchain failed; the caller warns once and runs eagerly."""


class ExportError(RuntimeError):
    """`gradc.export` cannot write the model as C; the message lists every reason."""
