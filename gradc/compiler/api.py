"""`gradc.compile`: guards, the in-memory cache and every fallback to eager.

A compiled function, on each call: runs eagerly if asked to (mode/backend "eager",
GRADC_EAGER=1) or if autograd would need a training graph (grad mode on and an input or
parameter requires grad: not compiled yet); otherwise looks up its guard key. On a miss
it captures the function (the capture run's own results are discarded once the compiled
kernels exist, so the first call already runs compiled code), builds the graph, schedules,
renders and builds the C, and stores the entry. Breaks and toolchain failures never give
wrong answers: the function's eager results are returned instead.

`dynamic=True` is accepted and ignored in this version: every new shape recompiles.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd.grad_mode import is_grad_enabled
from ..device import CPU
from ..tensor import Tensor
from . import cache
from .capture import capture
from .config import bump, config, env_flag
from .errors import BuildError, CompileCheckError, GraphBreak, GraphBreakError
from .graph import build_graph, eliminate_dead_code
from .guards import call_tensors, guard_key, tensor_meta
from .render import render, sanitize
from .schedule import schedule

TRAINING = "training graphs are not compiled yet"


@dataclass
class Entry:
    """A compiled graph (or, with `eager` set, the reason this guard key runs eagerly)."""

    eager: str = ""
    library: Any = None
    plan: Any = None
    graph: Any = None
    source: str = ""
    externals: list = None  # (weakref, meta at capture)
    single: bool = True


class CompiledFunction:
    """The callable `gradc.compile` returns for a function."""

    def __init__(self, fn: Callable, backend: str, mode: str, fullgraph: bool):
        self.fn, self.backend, self.mode, self.fullgraph = fn, backend, mode, fullgraph
        self.entries: dict[tuple, Entry] = {}
        self.disabled = ""  # set after a toolchain failure or the recompile limit
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        if self.mode == "eager" or self.backend == "eager" or env_flag("GRADC_EAGER"):
            return self.fn(*args, **kwargs)
        if self.disabled:
            bump("fallbacks", self.disabled)
            return self.fn(*args, **kwargs)
        tensors = call_tensors(args, kwargs)
        if is_grad_enabled() and any(t._requires_grad for t in tensors):
            bump("fallbacks", TRAINING)
            return self.fn(*args, **kwargs)
        if any(t.device is not CPU and t.device != CPU for t in tensors):
            bump("fallbacks", "only CPU tensors are compiled yet")
            return self.fn(*args, **kwargs)
        try:
            key = guard_key(args, kwargs)
        except TypeError as e:
            bump("fallbacks", str(e))
            return self.fn(*args, **kwargs)
        entry = self.entries.get(key)
        if entry is not None and entry.library is not None and not _externals_ok(entry):
            entry = None
        if entry is not None:
            if entry.eager:
                bump("fallbacks", entry.eager)
                return self.fn(*args, **kwargs)
            bump("memory_hits")
            return self._run(entry, tensors, args, kwargs)
        if len(self.entries) >= config.recompile_limit:
            self.disabled = f"recompile limit ({config.recompile_limit}) reached for {self.__qualname__}"
            warnings.warn(f"gradc.compile: {self.disabled}; running eagerly from now on", stacklevel=2)
            bump("fallbacks", self.disabled)
            return self.fn(*args, **kwargs)
        return self._compile(key, tensors, args, kwargs)

    def _compile(self, key: tuple, tensors: list, args: tuple, kwargs: dict):
        trace = capture(self.fn, args, kwargs)
        externals = [ref() for _, ref in trace.externals]
        if not trace.breaks and is_grad_enabled() and any(t is not None and t._requires_grad for t in externals):
            self.entries[key] = Entry(eager=TRAINING)
            bump("fallbacks", TRAINING)
            return trace.result
        try:
            if trace.breaks:
                raise GraphBreak("; ".join(trace.breaks))
            graph = eliminate_dead_code(build_graph(trace))
            plan = schedule(graph)
            source = render(graph, plan, getattr(self.fn, "__qualname__", "function"))
        except GraphBreak as e:
            bump("graph_breaks", str(e))
            if self.fullgraph:
                raise GraphBreakError(f"graph break in {self.__qualname__}: {e}") from None
            self.entries[key] = Entry(eager=f"graph break: {e}")
            bump("fallbacks", f"graph break: {e}")
            return trace.result
        _dump(source)
        try:
            library, from_disk = cache.build_or_load(source)
        except BuildError as e:
            self.disabled = f"C toolchain failed: {e}"
            warnings.warn(f"gradc.compile: {self.disabled}; running {self.__qualname__} eagerly",
                          stacklevel=3)
            bump("fallbacks", self.disabled)
            return trace.result
        bump("disk_hits" if from_disk else "compiles", self.__qualname__)
        alive = [(ref, tensor_meta(ref())) for _, ref in trace.externals if ref() is not None]
        entry = Entry(library=library, plan=plan, graph=graph, source=source, externals=alive,
                      single=trace.single)
        self.entries[key] = entry
        return self._run(entry, tensors, args, kwargs)

    def _run(self, entry: Entry, tensors: list, args: tuple, kwargs: dict):
        plan = entry.plan
        addresses, outs, keep = [], {}, []  # keep: temporaries live until the kernels ran
        by_role = {"arg": iter(tensors), "external": iter(ref() for ref, _ in entry.externals)}
        for node, buf in sorted(plan.buffers.items(), key=lambda kv: kv[1].slot):
            if buf.role in by_role:
                t = next(by_role[buf.role])
                addresses.append(t._array().ctypes.data)
            else:
                arr = np.empty(buf.shape, dtype=buf.dtype.np)
                keep.append(arr)
                addresses.append(arr.ctypes.data)
                if buf.role == "output":
                    outs[node] = Tensor._from_array(np, arr, buf.dtype, CPU)
        entry.library.run(addresses)
        result = tuple(outs[n] for n in entry.graph.graph["outputs"])
        if self.mode == "check":
            _check(entry.graph, result, self.fn(*args, **kwargs))
        return result[0] if entry.single else result


def _as_tuple(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _externals_ok(entry: Entry) -> bool:
    for ref, meta in entry.externals:
        t = ref()
        if t is None or tensor_meta(t) != meta:
            return False
    return True


def _check(graph, compiled, eager) -> None:
    """mode="check": compare compiled and eager outputs, naming the first differing node."""
    for node, c, e in zip(graph.graph["outputs"], _as_tuple(compiled), _as_tuple(eager)):
        a, b = c.detach().numpy(), e.detach().numpy()
        tol = 1e-4 if a.dtype == np.float32 else 1e-8
        if a.shape != b.shape or not np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True):
            d = graph.nodes[node]
            raise CompileCheckError(f"compiled and eager results differ at node {node} ({d['op']}, "
                                    f"{sanitize(d.get('source'))})")


def _dump(source: str) -> None:
    folder = os.environ.get("GRADC_DUMP_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(source.encode()).hexdigest()[:16]
        (Path(folder) / f"gradc_{name}.c").write_text(source)


def compile(fn: Callable | None = None, *, backend: str = "auto", mode: str = "default",
            dynamic: bool = False, fullgraph: bool = False):
    """Compile a function (or an `nn.Module`'s forward) to C; see API.md, "Compiler".

    Usable as `@gradc.compile`, `@gradc.compile(...)` or `gradc.compile(module)` (a shallow
    copy sharing the module's parameters, whose forward is compiled). `backend="cuda"` is
    not built yet and runs eagerly; `dynamic` is accepted and ignored for now.
    """
    if mode not in ("default", "eager", "check"):
        raise ValueError(f"gradc.compile: unknown mode {mode!r}")
    if backend not in ("auto", "c", "cuda", "eager"):
        raise ValueError(f"gradc.compile: unknown backend {backend!r}")
    if fn is None:
        return lambda f: compile(f, backend=backend, mode=mode, dynamic=dynamic, fullgraph=fullgraph)
    effective = "eager" if backend == "cuda" else backend
    from ..nn import Module

    if isinstance(fn, Module):
        module = copy.copy(fn)
        object.__setattr__(module, "forward", CompiledFunction(fn.forward, effective, mode, fullgraph))
        return module
    return CompiledFunction(fn, effective, mode, fullgraph)
