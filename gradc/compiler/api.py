"""`gradc.compile`: guards, the in-memory cache and every fallback to eager.

A compiled function, on each call: runs eagerly if asked to (mode/backend "eager",
GRADC_EAGER=1); otherwise looks up its guard key. On a miss it captures the function (the
capture run's own results are discarded once the compiled kernels exist, so the first
call already runs compiled code), builds the graph, schedules, renders and builds the C,
and stores the entry. When grad mode is on and an input or parameter requires grad, the
capture also traces the backward (see `joint`) and the entry is a training entry: two
modules run through an autograd.Function (see `training`). Breaks and toolchain failures
never give wrong answers: the function's eager results are returned instead, and if any
node of the backward cannot be lowered the whole call pattern runs eagerly.

Sizes: a new shape recompiles, unless a dynamic entry (symbolic sizes, see `dynamic`)
matches it: with `dynamic=True` the first compile makes every dim symbolic; otherwise a
dim becomes symbolic when a second size of it is seen. A dynamic entry serves a new size
after one eager check capture at that size agrees with its symbolic trace.

Fast path: a hit on a key with a single entry that is an inference module of one C
segment (no captured parameters or modules to re-check, nothing written in place, no
seeds or dynamic sizes) is remembered with a check of that key that builds no key
(`guards.key_check`) and the module's `runner`; the next call with positional
arguments that pass the check runs it directly. It skips only work whose outcome the
check already implies (the key's hash and lookup, the device test, the entry's other
guards, the buffer dicts); the environment switches are still read at each call. A
compile, the recompile limit and a toolchain failure drop it.
"""
from __future__ import annotations

import copy
import functools
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..autograd.grad_mode import is_grad_enabled
from ..device import CPU
from ..factories import default_generator
from . import cache, dump
from .capture import Trace, capture
from .check import check_call
from .config import bump, config, env, env_flag
from .cuda_runner import CudaModule
from .dump import GraphRecord
from .dynamic import all_dims, changed_dims, pattern, signature
from .errors import BuildError, GraphBreak, GraphBreakError
from .graph import build_graph, eliminate_dead_code
from .guards import guard_key, key_check, tensor_meta
from .history import History
from .joint import Derivation, derive, split
from .render import entry_points, render, sanitize
from .render_cuda import cuda_program, render_cuda
from .runner import Module
from .schedule import schedule
from .simplify import simplify
from .training import Program, make_function


@dataclass
class Entry:
    """A compiled graph (or, with `eager` set, the reason this guard key runs eagerly).

    Inference entries run `module`; training entries run `function` (an autograd.Function
    wrapping `program`'s forward and backward modules)."""

    eager: str = ""
    module: Module | None = None
    program: Program | None = None
    function: type | None = None
    source: str = ""  # the forward's C source (the backward's follows, for training)
    inputs: list = field(default_factory=list)  # value ids of the call's tensors
    externals: list = field(default_factory=list)  # (value id, weakref, meta at capture)
    modules: list = field(default_factory=list)  # (weakref to a module called, its `training`)
    n_results: int = 1  # how many leading outputs of the program are the function's
    mutates: list = field(default_factory=list)  # value ids of inputs written in place
    single: bool = True
    dims: frozenset = frozenset()  # (argument position, dim) compiled with symbolic sizes
    pattern: tuple | None = None  # the guard-key pattern a dynamic entry may serve
    symbolic: tuple | None = None  # (trace, derivation) of a dynamic entry, for its checks
    fast: tuple | None = None  # (key, key check, runner) for the fast path, () if it cannot take it

    @property
    def compiled(self) -> bool:
        return self.module is not None or self.program is not None


class CompiledFunction:
    """The callable `gradc.compile` returns for a function."""

    def __init__(self, fn: Callable, backend: str, mode: str, fullgraph: bool, dynamic: bool = False):
        self.fn, self.backend, self.mode, self.fullgraph = fn, backend, mode, fullgraph
        self.dynamic = dynamic and mode != "check"  # check mode compares static graphs only
        self.entries: dict[tuple, list[Entry]] = {}  # guard key -> entries told apart by `_guards_hold`
        self.dynamic_entries: list[Entry] = []
        self.disabled = ""  # set after a toolchain failure or the recompile limit
        self.fast: tuple | None = None  # (key check, runner, single) of the last hit that allows it
        functools.update_wrapper(self, fn)
        self.history = History(self)  # what `gradc explain SCRIPT.py` reports

    @property
    def checking(self) -> bool:
        """mode="check", or every compiled function forced into it by GRADC_MODE=check."""
        return self.mode == "check" or env("GRADC_MODE") == "check"

    def __call__(self, *args, **kwargs):
        fast = self.fast
        if fast is not None and not kwargs and not env_flag("GRADC_EAGER") and env("GRADC_MODE") != "check":
            tensors = fast[0](args)
            if tensors is not None:
                bump("memory_hits", self.__qualname__)
                result = fast[1](tensors)
                return result[0] if fast[2] else result
        if self.mode == "eager" or self.backend == "eager" or env_flag("GRADC_EAGER"):
            return self.fn(*args, **kwargs)
        if self.disabled:
            self.history.bump("fallbacks", self.disabled)
            return self.fn(*args, **kwargs)
        try:
            key, tensors = guard_key(args, kwargs)
        except TypeError as e:
            self.history.bump("fallbacks", str(e))
            return self.fn(*args, **kwargs)
        if any(t.device is not CPU for t in tensors):  # the CPU is one object: a cheap test per call
            devices = {t.device for t in tensors}
            if len(devices) > 1 or self.backend == "c":
                reason = "tensors on several devices" if len(devices) > 1 else "backend='c' got CUDA tensors"
                self.history.bump("fallbacks", reason)
                return self.fn(*args, **kwargs)
        candidates = self.entries.get(key, ())
        entry = next((e for e in candidates if _guards_hold(e)), None)
        if entry is not None:
            if entry.eager:
                self.history.bump("fallbacks", entry.eager)
                return self.fn(*args, **kwargs)
            bump("memory_hits", self.__qualname__)
            if len(candidates) == 1 and not self.checking:
                self._remember(key, entry)
            return self._run(entry, tensors, args, kwargs)
        if candidates:  # entries whose parameters or modules died can never match again
            candidates[:] = [e for e in candidates if _alive(e)]
        if self._at_limit() and not any(e.pattern == pattern(key, e.dims) and _guards_hold(e)
                                        for e in self.dynamic_entries):
            self._stop_compiling(stacklevel=3)
            return self.fn(*args, **kwargs)
        return self._compile(key, tensors, args, kwargs)

    def _remember(self, key: tuple, entry: Entry) -> None:
        """Make `entry` the fast path's when nothing beyond `key` guards it (see the module
        docstring). Its check and runner are built on its first hit and kept, so calls
        alternating between keys only swap them."""
        if entry.fast is None or (entry.fast and entry.fast[0] != key):
            entry.fast = ()
            if (isinstance(entry.module, Module) and not (entry.externals or entry.modules or entry.mutates)
                    and self.mode == "default" and self.backend in ("auto", "c")):
                check = key_check(key)
                run = entry.module.runner(entry.inputs, entry.n_results) if check is not None else None
                if run is not None:
                    entry.fast = (key, check, run)
        if entry.fast:
            self.fast = (entry.fast[1], entry.fast[2], entry.single)

    def _at_limit(self) -> bool:
        """Whether `config.recompile_limit` entries exist (a dynamic entry counts once, however
        many sizes it serves): a call no entry serves then runs eagerly, so does every later one."""
        return len({id(e) for es in self.entries.values() for e in es}) >= config.recompile_limit

    def _stop_compiling(self, stacklevel: int) -> None:
        """Run eagerly from now on, with one warning (`stacklevel` points at the user's call)."""
        self.fast = None
        self.disabled = f"recompile limit ({config.recompile_limit}) reached for {self.__qualname__}"
        warnings.warn(f"gradc.compile: {self.disabled}; running eagerly from now on", stacklevel=stacklevel)
        self.history.bump("fallbacks", self.disabled)

    def _reuse_dynamic(self, key: tuple, tensors: list, args: tuple, kwargs: dict) -> tuple | None:
        """A dynamic entry whose pattern fits `key`: capture this call and compare with the
        entry's symbolic trace at this call's sizes. Returns (reused, trace, derivation),
        or None when no entry fits."""
        for e in self.dynamic_entries:
            if e.pattern != pattern(key, e.dims) or not _guards_hold(e):
                continue
            trace, derivation = trace_call(self.fn, args, kwargs)
            symbolic_trace, symbolic_derivation = e.symbolic
            sizes = tuple(int(tensors[e.inputs.index(v)]._shape[d]) for v, d in symbolic_trace.symbols)
            agree = signature(trace, derivation) == signature(symbolic_trace, symbolic_derivation, sizes)
            if agree:
                self.entries.setdefault(key, []).append(e)
                self.history.bump("dynamic_reuses", f"at sizes {sizes}")
            return agree, trace, derivation
        return None

    def _dynamic_dims(self, key: tuple) -> frozenset:
        """The dims a new compile for `key` makes symbolic (see `dynamic`)."""
        if self.dynamic and not self.checking:
            return all_dims(key)
        dims: frozenset = frozenset()
        if not self.checking:
            for other in self.entries:
                dims |= changed_dims(key, other) or frozenset()
        return dims if pattern(key, dims) is not None else frozenset()

    def _render_cuda(self, key: tuple, args: tuple, kwargs: dict):
        """backend="cuda": capture, render (and dump) the CUDA of the forward and backward,
        and run eagerly from then on for this key: the inputs are on the CPU, so no GPU can
        run them (`config.cuda_toolchain` runs them anyway, see `_compile`)."""
        name = getattr(self.fn, "__qualname__", "function")
        self.history.recompile(self.entries, key)
        trace, derivation = trace_call(self.fn, args, kwargs)
        reason = "backend='cuda' on CPU tensors: CUDA rendered, run eagerly"
        try:
            if trace.breaks:
                raise GraphBreak("; ".join(trace.breaks))
            parts = split(trace, derivation) if derivation.placeholders else None
            self.history.graphs(_lower_all(trace, parts, name, "cuda-render"), parts is not None, "cuda")
        except GraphBreak as e:
            self.history.graph_break(trace, e)
            if self.fullgraph:
                raise GraphBreakError(f"graph break in {self.__qualname__}: {e}") from None
            reason = f"graph break: {e}"
        self.entries.setdefault(key, []).append(Entry(eager=reason, modules=trace.modules))
        self.history.bump("fallbacks", reason)
        return trace.result

    def _compile(self, key: tuple, tensors: list, args: tuple, kwargs: dict):
        """Capture (with the derived backward when autograd needs one), lower, build, run.
        On a graph break or toolchain failure the capture run's eager results are returned
        (with their eager autograd graph, so gradients stay exact). A call a dynamic entry
        serves after its check capture returns that capture's (eager) results."""
        self.fast = None
        device = next((t.device for t in tensors if t.device.type == "cuda"), None)
        if self.backend == "cuda" and device is None:
            if config.cuda_toolchain is None:
                return self._render_cuda(key, args, kwargs)
            device = CPU  # CUDA kernels on CPU arrays, through the configured toolchain
        name = getattr(self.fn, "__qualname__", "function")
        reuse = self._reuse_dynamic(key, tensors, args, kwargs)
        dims = frozenset()
        if reuse is not None:
            reused, trace, derivation = reuse
            if reused:
                return trace.result
            if self._at_limit():  # past the limit a dynamic entry may still serve, never a new one
                self._stop_compiling(stacklevel=4)
                return trace.result
        else:
            dims = self._dynamic_dims(key)
            trace, derivation = trace_call(self.fn, args, kwargs, dims)
        self.history.recompile(self.entries, key)
        try:
            if trace.breaks:
                raise GraphBreak("; ".join(trace.breaks))
            parts = split(trace, derivation) if derivation.placeholders else None
            lowered = _lower_all(trace, parts, name, "cuda" if device is not None else "c")
            self.history.graphs(lowered, parts is not None, "cuda" if device is not None else "c")
        except GraphBreak as e:
            self.history.graph_break(trace, e)
            if self.fullgraph:
                raise GraphBreakError(f"graph break in {self.__qualname__}: {e}") from None
            self.entries.setdefault(key, []).append(Entry(eager=f"graph break: {e}", modules=trace.modules))
            self.history.bump("fallbacks", f"graph break: {e}")
            return trace.result
        try:
            modules = self._build_all(lowered, device)
        except BuildError as e:
            self.disabled = f"C toolchain failed: {e}"
            warnings.warn(f"gradc.compile: {self.disabled}; running {self.__qualname__} eagerly",
                          stacklevel=3)
            self.history.bump("fallbacks", self.disabled)
            return trace.result
        entry = Entry(source="\n".join(m.source for m in modules), inputs=list(trace.inputs),
                      externals=[(vid, ref, tensor_meta(ref())) for vid, ref in trace.externals],
                      modules=trace.modules, n_results=len(trace.outputs), mutates=list(trace.mutations),
                      single=trace.single)
        if trace.symbols:
            entry.dims, entry.pattern, entry.symbolic = dims, pattern(key, dims), (trace, derivation)
            self.dynamic_entries.append(entry)
        if parts is None:
            entry.module = modules[0]
        else:
            d = parts.derivation
            entry.program = Program(modules[0], modules[1], entry.inputs + [v for v, _, _ in entry.externals],
                                    len(trace.outputs), d.differentiable, d.placeholders, parts.saved,
                                    d.targets, d.grads)
            entry.function = make_function(entry.program, sanitize(name))
        self.entries.setdefault(key, []).append(entry)
        result = trace.result
        trace.result = None  # a dynamic entry keeps its trace: not the tensors of this call
        if trace.mutations or trace.seeds:  # the capture run already wrote its inputs or drew its
            return result  # seeds: running again would repeat the writes or draw again
        return self._run(entry, tensors, args, kwargs)

    def _build_all(self, lowered: list, device) -> list:
        """Build the forward and backward modules at once (two C compilers in parallel: the
        build dominates a cold compile); on a CUDA device, NVRTC builds them in turn."""
        if device is not None:
            return [self._build_cuda(*part, device) for part in lowered]
        if len(lowered) == 1:
            return [self._build(*lowered[0])]
        with ThreadPoolExecutor(max_workers=len(lowered)) as pool:
            return list(pool.map(lambda part: self._build(*part), lowered))

    def _build_cuda(self, graph, plan, source: str, record: GraphRecord | None, device) -> CudaModule:
        start = time.perf_counter()
        _, launches = cuda_program(graph, plan, "")
        toolchain = config.cuda_toolchain(device) if device is CPU else None
        module = CudaModule(graph, plan, source, launches, device, toolchain)
        _built(record, start, "miss")
        bump("compiles", self.__qualname__)
        return module

    def _build(self, graph, plan, source: str, record: GraphRecord | None) -> Module:
        start = time.perf_counter()
        library, from_disk = cache.build_or_load(source, entry_points(plan))
        _built(record, start, "hit" if from_disk else "miss")
        bump("disk_hits" if from_disk else "compiles", self.__qualname__)
        return Module(graph, plan, source, library)

    def _run(self, entry: Entry, tensors: list, args: tuple, kwargs: dict):
        externals = [ref() for _, ref, _ in entry.externals]
        checking = self.checking
        if checking:
            before = _CheckState(entry, tensors + externals)
        if entry.program is not None:
            result = entry.function.apply(*tensors, *externals)
        else:
            values = dict(zip(entry.inputs, tensors))
            values.update(zip((v for v, _, _ in entry.externals), externals))
            result = entry.module.execute(values)[: entry.n_results]
        if checking:
            check_call(entry, self.fn, tensors + externals, args, kwargs, result, before.rewind())
            bump("checks", self.__qualname__)
        return result[0] if entry.single else result


def trace_call(fn: Callable, args: tuple, kwargs: dict,
               dynamic: frozenset = frozenset()) -> tuple[Trace, Derivation]:
    """Capture one call of `fn`, with its derived backward when grad mode is on (the
    derivation stays empty when nothing requires grad) and symbolic sizes at `dynamic`."""
    derivation = Derivation()
    then = functools.partial(derive, out=derivation) if is_grad_enabled() else None
    return capture(fn, args, kwargs, then=then, dynamic=dynamic), derivation


def simplified_graph(trace: Trace):
    """The graph of a trace after simplification and dead-code elimination (what every
    backend, and `export`, schedules)."""
    return eliminate_dead_code(simplify(build_graph(trace)))


def lower(trace: Trace, name: str, backend: str = "c") -> tuple:
    """(graph, plan, C or CUDA source) of a trace; raises GraphBreak where it cannot be lowered."""
    graph = simplified_graph(trace)
    plan = schedule(graph)
    return graph, plan, (render_cuda if backend == "cuda" else render)(graph, plan, name)


def _lower_all(trace: Trace, parts, name: str, backend: str) -> list[tuple]:
    """Lower a capture: its one graph, or (training) its forward and backward graphs.
    Returns (graph, plan, source, dump record or None) per graph."""
    graphs = [(trace, "inference", name, [])] if parts is None else [
        (parts.forward, "forward", name, parts.saved), (parts.backward, "backward", f"{name} (backward)", [])]
    lowered = []
    for part, which, label, saved in graphs:
        start = time.perf_counter()
        graph, plan, source = lower(part, label, "cuda" if backend.startswith("cuda") else "c")
        ms = 1e3 * (time.perf_counter() - start)
        lowered.append((graph, plan, source, dump.record(name, which, backend, graph, plan, source, ms, saved)))
    return lowered


def _built(record: GraphRecord | None, start: float, cache_state: str) -> None:
    if record is not None:
        record.build_ms, record.cache = 1e3 * (time.perf_counter() - start), cache_state


def _alive(entry: Entry) -> bool:
    return all(ref() is not None for _, ref, _ in entry.externals) and all(ref() is not None
                                                                         for ref, _ in entry.modules)


def _guards_hold(entry: Entry) -> bool:
    """The guards beyond the key: every captured parameter/buffer is alive with the same
    metadata, and every module the function called is in the same train/eval mode."""
    for _, ref, meta in entry.externals:
        t = ref()
        if t is None or tensor_meta(t) != meta:
            return False
    for ref, training in entry.modules:
        module = ref()
        if module is None or module.training != training:
            return False
    return True


class _CheckState:
    """mode="check" runs the compiled call, then eager on the same state: this snapshot
    of the generator and of the inputs the call writes lets `rewind` restore that state
    (returning what the compiled call wrote), so eager draws the same dropout masks and
    updates the same running statistics once."""

    def __init__(self, entry: Entry, tensors: list):
        ids = entry.inputs + [v for v, _, _ in entry.externals]
        self.targets = [t for v, t in zip(ids, tensors) if v in entry.mutates]
        self.saved = [np.array(t._array()) for t in self.targets]
        self.rng = default_generator().bit_generator.state

    def rewind(self) -> list:
        written = [np.array(t._array()) for t in self.targets]
        for t, arr in zip(self.targets, self.saved):
            t._array()[...] = arr
        default_generator().bit_generator.state = self.rng
        return list(zip(self.targets, written))


def compile(fn: Callable | None = None, *, backend: str = "auto", mode: str = "default",
            dynamic: bool = False, fullgraph: bool = False):
    """Compile a function (or an `nn.Module`'s forward) to C; see API.md, "Compiler".

    Usable as `@gradc.compile`, `@gradc.compile(...)` or `gradc.compile(module)` (a shallow
    copy sharing the module's parameters, whose forward is compiled). CUDA tensors run
    generated CUDA (backend "auto" or "cuda"); `backend="cuda"` on CPU tensors renders the
    CUDA (dumped under GRADC_DUMP_DIR, shown by `gradc.explain`) and runs the function
    eagerly, so GPU code can be read anywhere. `dynamic=True` compiles symbolic
    sizes for every dim from the first call; without it a dim turns symbolic once a second
    size of it is seen. `GRADC_MODE=check` in the environment (read at each call; `gradc run
    --check`) runs every compiled function in mode="check".
    """
    if mode not in ("default", "eager", "check"):
        raise ValueError(f"gradc.compile: unknown mode {mode!r}")
    if backend not in ("auto", "c", "cuda", "eager"):
        raise ValueError(f"gradc.compile: unknown backend {backend!r}")
    if fn is None:
        return lambda f: compile(f, backend=backend, mode=mode, dynamic=dynamic, fullgraph=fullgraph)
    effective = backend
    from ..nn import Module

    if isinstance(fn, Module):
        module = copy.copy(fn)
        forward = fn.forward  # bound to the copy, so the copy's train()/eval() is what it reads
        forward = forward.__func__.__get__(module) if getattr(forward, "__self__", None) is fn else forward
        object.__setattr__(module, "forward", CompiledFunction(forward, effective, mode, fullgraph, dynamic))
        return module
    return CompiledFunction(fn, effective, mode, fullgraph, dynamic)
