"""gradc's compiler: capture a function's ops, fuse them into C kernels, cache, run.

Pipeline: capture (trace the ops of one eager run) -> graph (networkx, dead-code
elimination) -> schedule (fusion into kernels) -> render (C through Jinja2 templates)
-> cache/build (cc + cffi). `api.compile` ties it together with guards and fallbacks.
Ops of the table without a C lowering (matmul, softmax, gather, ...) become extern steps:
their eager kernel runs on the buffers between C segments (see `extern`). `export` writes
an inference graph as a standalone C program instead (see `export_c`).
"""
from __future__ import annotations

from . import dump, history
from .api import CompiledFunction, compile
from .config import config, counters, reset_counters
from .errors import CompileCheckError, ExportError, GraphBreakError
from .explain import Explanation, explain
from .export import export


def reset() -> None:
    """Clear in-memory state, counters and the functions' recorded events (compiled
    functions keep their own entries)."""
    reset_counters()
    dump.clear()
    history.clear()


__all__ = ["compile", "config", "counters", "reset", "CompiledFunction", "GraphBreakError", "CompileCheckError",
           "explain", "Explanation",
           "export", "ExportError"]
