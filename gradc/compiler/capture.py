"""Capture: run the user function once on the real inputs and record every op.

The function runs eagerly (its results are the true eager results) while
`ops.dispatch.tracer` sees each op call. Values are identified by tensor identity:
tensors passed by the caller are graph inputs ("arg"); tensors read inside that are
neither inputs nor produced inside (module parameters, buffers, globals) become
"external" inputs, passed by pointer at every call and never baked in as constants.
A tensor that aliases a known value exactly (same storage and geometry, as `detach()` and
saved outputs unpacked by autograd do) is that value. Views are recorded with their real
geometry relative to their root (an input, or a computed value, which eager always
stores C-contiguous from offset 0), so they need no copy. Python scalars become constants.
Constant factories (`zeros`, `ones`, `full`, ...) report their tensors through
`constant`, which records them as "fill" nodes (see `constants`); a tensor made inside by
any other factory (random ones included) is unknown and breaks the graph.

Anything the compiler cannot reproduce does not stop the run: it is noted as a break
reason (`Trace.breaks`), the function finishes eagerly, and the caller decides (fall back
to eager, or raise with fullgraph=True). Data reads of tensors (`bool(t)`, `.item()`,
`.tolist()`, `.numpy()`), in-place writes and hooks registered inside the function are
detected by wrapping those Tensor methods for the duration of the capture. `then`, if
given, runs while the tracer is still on (training capture traces the backward there).
"""
from __future__ import annotations

import inspect
import os
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import dtypes
from ..autograd import engine
from ..dtypes import dtype as DType
from ..factories import full
from ..ops import OPS, dispatch
from ..ops.indexing import INDEX_SLOT
from ..ops.shapes import norm_dims
from ..size import Size, contiguous_strides
from ..tensor import Tensor
from .constants import fill_value
from .symbolic import Sym, is_symbolic, shown_as_values

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LOCK = threading.RLock()  # one capture at a time: the Tensor method wrappers are global
_active = threading.local()

REDUCTIONS = ("sum", "amax", "amin", "prod")
# Ops run as extern steps (their eager kernel on the buffers): kernels that are pure
# functions of their arrays and attrs, whose output shape the input shapes fix.
EXTERNS = frozenset({"class_index", "matmul", "einsum", "argmax", "argmin",
                     "cumsum", "gather", "scatter_add", "index", "index_put", "strided_scatter", "cat", "tril",
                     "triu", "flip", "constant_pad"})
# Ops with a hand-written C loop nest (templates/c/<op>.c.j2): like externs, a step of their
# own reading materialized operands, but compiled into the C segment.
TEMPLATES = frozenset({"unfold", "fold", "softmax", "log_softmax"})
# Ops the compiler deliberately does not lower: a call breaks the graph with this reason.
GRAPH_BREAKS = {
    "argsort": "argsort is data-dependent ordering (not compiled)",
    "to_device": "device transfers are not compiled",
    "as_strided": "as_strided can alias arbitrary memory (not compiled)",
}
_STATIC = (type(None), bool, int, float, str, slice, type(Ellipsis))
VIEWS = ("view", "permute", "expand", "basic_index")
_HOOKS = ("register_hook", "retain_grad")
_DATA_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__array__")


@dataclass
class Record:
    """One op call: `args` holds ("value", id) for tensors and ("const", x) for scalars."""

    op: str
    attrs: dict
    args: list
    out: int
    compute: Any  # the dtype tensor inputs are cast to, or None
    source: tuple  # (file, line, code) of the user's call site


@dataclass
class Trace:
    inputs: list = field(default_factory=list)  # value ids of the caller's tensors, in order
    externals: list = field(default_factory=list)  # (value id, weakref to the tensor)
    values: dict = field(default_factory=dict)  # id -> (shape, dtype, strides)
    views: dict = field(default_factory=dict)  # id -> (root id, shape, strides, offset delta, source)
    records: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # value ids returned, in order
    n_saved: int = 0  # a training forward: how many trailing outputs are values the backward reads
    n_grad_inputs: int = 0  # a training backward: how many leading inputs are gradients of outputs
    single: bool = True  # the function returned one tensor (not a tuple)
    seeds: list = field(default_factory=list)  # value ids of per-call random seeds (0-d int64 inputs)
    constants: dict = field(default_factory=dict)  # value id -> array of a tensor made from known data
    mutations: dict = field(default_factory=dict)  # input/external value id -> value id written into it
    modules: list = field(default_factory=list)  # (weakref to an nn.Module called, its `training`)
    symbols: list = field(default_factory=list)  # size symbol k is dim symbols[k][1] of input value symbols[k][0]
    names: dict = field(default_factory=dict)  # input/external value id -> its Python name, where known
    breaks: list = field(default_factory=list)
    break_sites: dict = field(default_factory=dict)  # break reason -> (file, line, code)
    result: Any = None  # what the function returned (eager values)

    def located(self, reason: str) -> str:
        """A break reason with the user's file:line and code where it is known."""
        site = self.break_sites.get(reason) or self.break_sites.get(reason.removeprefix("backward: "))
        if not site or site[0] == "<unknown>":
            return reason
        file, line, code = site
        return f"{reason} (at {os.path.basename(file)}:{line}: {code})"


def user_source() -> tuple:
    """(file, line, code) of the first stack frame outside the gradc package."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return ("<unknown>", 0, "")
    import linecache

    code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return (frame.f_code.co_filename, frame.f_lineno, code)


class _Tracer:
    """Receives (op, args, attrs, outputs) from dispatch and fills a Trace."""

    def __init__(self, trace: Trace):
        self.trace = trace
        self.ids: dict[int, int] = {}  # id(tensor) -> value id
        self.keep: list = []  # strong refs: ids must stay unique during the capture
        self.produced: set[int] = set()  # value ids computed by ops (not inputs or views)
        self.aliases: dict[tuple, int] = {}  # (storage id, offset, shape, strides) -> value id
        self.factories = True  # record constant factories (off while gradc itself makes tensors)
        self.mutated: dict[int, int] = {}  # id(tensor) -> the input/external value id it overwrote
        self.write_pending = False  # the next version bump is a write `write` already recorded
        self.modules: dict[int, tuple] = {}  # id(module) -> (weakref, training)
        self.unknown: set[int] = set()  # ids of tensors made inside whose values the graph cannot recreate
        self.held: list = []  # strong refs to those
        self.node_sources: dict[int, tuple] = {}  # id(autograd node of a traced op) -> its source

    def source(self) -> tuple:
        """Where the op being recorded comes from: the user's line, or, inside a backward
        formula, the line of the forward op whose derivative it is."""
        node = engine.running
        forward = self.node_sources.get(id(node)) if node is not None else None
        return forward or user_source()

    def value(self, t: Tensor, kind: str) -> int:
        vid = len(self.trace.values)
        self.ids[id(t)] = vid
        self.keep.append(t)
        self.trace.values[vid] = (tuple(t._shape), t.dtype, tuple(t.stride()))
        self.aliases.setdefault(_geometry(t), vid)
        if kind == "arg":
            self.trace.inputs.append(vid)
        elif kind == "external":
            self.trace.externals.append((vid, t))
        elif kind == "seed":
            self.trace.seeds.append(vid)
        return vid

    def lookup(self, t: Tensor) -> int:
        if id(t) in self.unknown:
            self.brk("a tensor made inside the function by a random factory, `empty` or a copy of tensor "
                     "data (not compiled)")
        vid = self.ids.get(id(t))
        if vid is None:
            vid = self.aliases.get(_geometry(t))
        return self.value(t, "external") if vid is None else vid

    def brk(self, reason: str) -> None:
        if reason not in self.trace.breaks:
            self.trace.breaks.append(reason)
            self.trace.break_sites[reason] = user_source()

    def __call__(self, op, args, attrs, outs) -> None:
        if self.trace.breaks:
            return  # the graph is already broken: nothing more to record
        reason = op_break(op, args, attrs, outs)
        if reason:
            return self.brk(reason)
        out = outs[0]
        if op.kind == "view":
            return self.view(op, args[0], out)
        extern = op.name in EXTERNS or op.name in TEMPLATES
        arg_refs = []
        for a in args:
            if isinstance(a, Tensor):
                arg_refs.append(("value", self.lookup(a)))
                if self.trace.symbols:
                    self._symbolic_metadata(a, arg_refs[-1][1])
            elif isinstance(a, (bool, int, float)):
                arg_refs.append(("const", a))
            else:
                return self.brk(f"op {op.name!r} got an argument of type {type(a).__name__}")
        attrs = dict(attrs)
        if not extern and op.kind == "reduction":
            attrs["dim"] = tuple(norm_dims(attrs.get("dim"), len(args[0]._shape), op.name))
        specs, compute = op.meta(*args, **attrs)
        if self.trace.symbols and is_symbolic(specs[0][0]):  # carry the symbolic shape on
            out._shape, out._stride = Size(specs[0][0]), None
        vid = self.value(out, "op")
        self.produced.add(vid)
        source = self.source()
        self.trace.records.append(Record(op.name, attrs, arg_refs, vid, compute, source))
        if out.grad_fn is not None:
            self.node_sources.setdefault(id(out.grad_fn), source)

    def constant(self, t: Tensor, value, size: tuple | None = None) -> None:
        """A factory made `t` (of `size`, which may be symbolic) with every element `value`:
        record it as a "fill" node."""
        self._sized(t, size)
        if self.trace.breaks or not self.factories:
            return
        if t.device.type != "cpu" or t.requires_grad:
            return self.brk("a tensor created inside the function is on another device or requires grad")
        number = fill_value(value, t.dtype.is_floating_point)
        if number is None:
            return self.brk(f"fill value {value!r} of a {t.dtype.name} tensor is not compiled")
        vid = self.value(t, "op")
        self.produced.add(vid)
        self.trace.records.append(Record("fill", {"value": number}, [], vid, None, self.source()))

    def made(self, t: Tensor, known: bool) -> None:
        """A data factory made `t`: from `known` data it is a constant of the graph (its
        array is kept and passed by pointer); otherwise using it breaks the graph."""
        if self.trace.breaks or not self.factories:
            return
        if not known or t.device.type != "cpu" or t.requires_grad:
            self.unknown.add(id(t))
            self.held.append(t)  # ids must stay unique during the capture
            return
        vid = self.value(t, "constant")
        self.trace.constants[vid] = np.array(t._array())

    def _symbolic_metadata(self, t: Tensor, vid: int) -> None:
        """Give `t` the symbolic shape and strides recorded for its value: autograd unpacks
        saved tensors as new objects with plain sizes, and shape rules must see symbols."""
        shape, _, strides = self.trace.values[vid]
        if is_symbolic(shape) and not is_symbolic(tuple(t._shape)):
            t._shape, t._stride = Size(shape), tuple(strides)

    def _sized(self, t: Tensor, size: tuple | None) -> None:
        """Give a tensor a factory made its symbolic size (the array only has the values)."""
        if size is not None and self.trace.symbols and is_symbolic(size):
            t._shape, t._stride = Size(size), None

    def random(self, t: Tensor, seed: int, size: tuple | None = None) -> None:
        """A counter-based uniform draw (see gradc.counter_rng): a "rand" node reading a seed
        input that the compiled program draws afresh on every call."""
        if self.trace.breaks:
            return
        if t.device.type != "cpu":
            return self.brk(f"a random tensor on {t.device} (only CPU is compiled yet)")
        self._sized(t, size)
        self.factories = False
        seed_t = full((), seed, dtype=dtypes.int64)
        self.factories = True
        sid = self.value(seed_t, "seed")
        vid = self.value(t, "op")
        self.produced.add(vid)
        self.trace.records.append(Record("rand", {}, [("value", sid)], vid, None, user_source()))

    def arange(self, t: Tensor, start, step, size: tuple | None = None) -> None:
        """`arange` inside the function: an "arange" node computing start + i * step in
        float64 (or int64) per element, as the eager factory does."""
        if self.trace.breaks or not self.factories:
            return
        if t.device.type != "cpu" or t.requires_grad:
            return self.brk("a tensor created inside the function is on another device or requires grad")
        self._sized(t, size)
        floating = t.dtype.is_floating_point
        convert = float if floating else int
        vid = self.value(t, "op")
        self.produced.add(vid)
        self.trace.records.append(Record("arange", {"start": convert(start), "step": convert(step)}, [], vid,
                                         dtypes.float64 if floating else dtypes.int64, user_source()))

    def write(self, target: Tensor, value) -> None:
        """An in-place write of `value` (a tensor of target's shape, or a scalar) into the
        whole of `target`. The graph stays functional: `target` now names the written
        value; when `target` is an input or a parameter/buffer, the value is also copied
        back into it after every compiled call (a batch-norm running statistic)."""
        self.write_pending = True
        if self.trace.breaks:
            return
        if target._base is not None or target.requires_grad:
            return self.brk("an in-place write to a view or to a tensor that requires grad (not compiled yet)")
        old = self.lookup(target)
        if old in self.trace.views or any(spec[0] == old for spec in self.trace.views.values()):
            return self.brk("an in-place write to a tensor that has views (not compiled yet)")
        origin = self.mutated.get(id(target))
        if origin is None and (old in self.trace.inputs or any(v == old for v, _ in self.trace.externals)):
            origin = old
        if isinstance(value, Tensor):
            if tuple(value._shape) != tuple(target._shape):
                return self.brk("an in-place write that broadcasts its value (not compiled yet)")
            if value.dtype is not target.dtype:
                self(OPS["cast"], (value,), {"dtype": target.dtype}, (target,))
            else:
                new = self.lookup(value)
                self.ids[id(target)] = new
                self.aliases[_geometry(target)] = new
        else:
            self.constant(target, value)
        if self.trace.breaks:
            return
        new = self.ids[id(target)]
        self.aliases[_geometry(target)] = new
        if origin is not None:
            self.mutated[id(target)] = origin
            self.trace.mutations[origin] = new

    def module_called(self, module) -> None:
        """Remember each module the function calls and its train/eval mode: the compiled
        code is only valid while every one of them is in the same mode."""
        if id(module) not in self.modules:
            self.modules[id(module)] = (weakref.ref(module), module.training)

    def view(self, op, src: Tensor, out: Tensor) -> None:
        if op.name not in VIEWS:
            return self.brk(f"view op {op.name!r} is not compiled yet")
        sid = self.lookup(src)
        root = self.trace.views[sid][0] if sid in self.trace.views else sid
        root_t = self.keep[root]  # values are numbered in the order their tensors were kept
        delta = out._offset - root_t._offset
        vid = self.value(out, "view")
        self.trace.views[vid] = (root, tuple(out._shape), tuple(out.stride()), delta, self.source())


def op_break(op, args: tuple, attrs: dict, outs: tuple) -> str | None:
    """Why one op call cannot be compiled (the graph breaks there), or None. Depends only
    on the call, so `gradc.export` can list every such call of a function up front."""
    if len(outs) != 1:
        return f"op {op.name!r} has several outputs (not compiled yet)"
    if outs[0].device.type != "cpu":
        return f"op {op.name!r} runs on {outs[0].device} (only CPU is compiled yet)"
    if op.name in GRAPH_BREAKS:
        return GRAPH_BREAKS[op.name]
    if op.kind == "view":
        return None
    extern = op.name in EXTERNS or op.name in TEMPLATES
    if op.name == "index" and any(isinstance(a, Tensor) and a.dtype is dtypes.bool_ for a in args[1:]):
        return "indexing with a boolean mask has a data-dependent shape (not compiled)"
    if extern and not all(_static(v) for v in attrs.values()):
        return f"op {op.name!r} got an attribute that is not a static value"
    if not extern and op.kind == "reduction" and op.name not in REDUCTIONS:
        return f"reduction {op.name!r} has no lowering yet"
    if op.kind == "pointwise" and op.lowering is None:
        return f"op {op.name!r} has no C lowering"
    if not extern and op.kind not in ("pointwise", "reduction"):
        return f"op {op.name!r} ({op.kind}) is not compiled yet"
    return None


def _static(value) -> bool:
    """Whether an attr can be baked into the program (no tensors or arrays in it)."""
    if isinstance(value, (tuple, list)):
        return all(_static(v) for v in value)
    return isinstance(value, (*_STATIC, DType)) or value is INDEX_SLOT


def _geometry(t: Tensor) -> tuple:
    """Where `t`'s elements are; plain ints, so a symbolic and a concrete copy of the same
    metadata (autograd's unpacked saved tensors) are the same place."""
    return (id(t._storage), int(t._offset), tuple(map(int, t._shape)), tuple(map(int, t.stride())))


def _wrap_read(name: str, original: Callable) -> Callable:
    def read(self, *args, **kwargs):
        tracer = getattr(_active, "tracer", None)
        if tracer is not None:
            tracer.brk(f"Tensor.{name}() reads tensor data (data-dependent Python)")
        return original(self, *args, **kwargs)

    return read


def _wrap_break(reason: str, original: Callable) -> Callable:
    def method(self, *args, **kwargs):
        tracer = getattr(_active, "tracer", None)
        if tracer is not None:
            tracer.brk(reason)
        return original(self, *args, **kwargs)

    return method


def _wrap_bump(original: Callable) -> Callable:
    """A version bump is a write: fine when `_Tracer.write` recorded it, a break otherwise
    (set_, a custom Function's mark_dirty, ...)."""
    def bump(self):
        tracer = getattr(_active, "tracer", None)
        if tracer is not None:
            if tracer.write_pending:
                tracer.write_pending = False
            else:
                tracer.brk("an in-place write the compiler cannot follow (set_, mark_dirty, ...)")
        return original(self)

    return bump


def _collect_outputs(trace: Trace, tracer: _Tracer, result: Any) -> None:
    if isinstance(result, Tensor):
        items, trace.single = [result], True
    elif isinstance(result, tuple) and result and all(isinstance(r, Tensor) for r in result):
        items, trace.single = list(result), False
    else:
        return tracer.brk(f"the function returned {type(result).__name__} (only a tensor or a tuple "
                          "of tensors is compiled)")
    for r in items:
        vid = tracer.ids.get(id(r))
        if vid in trace.views and trace.views[vid][0] in tracer.produced:
            # a view of an intermediate (max(dim)'s squeeze, a 1-d matmul): nothing else can see
            # its base, so the compiled function returns a contiguous copy of it
            tracer(OPS["clone"], (r,), {}, (r,))
            vid = tracer.ids[id(r)]
        if vid is None or vid not in tracer.produced:
            if trace.breaks:  # untraced since an earlier break: that break is the reason
                return None
            return tracer.brk("an output is an input, a view of one, or made outside the traced ops")
        trace.outputs.append(vid)


def capture(fn: Callable, args: tuple, kwargs: dict,
            then: Callable[[Trace, _Tracer], None] | None = None, dynamic: frozenset = frozenset()) -> Trace:
    """Run `fn(*args, **kwargs)` once under the tracer, then `then(trace, tracer)` if the
    graph is not broken by then; exceptions of `fn` propagate. `dynamic` holds (argument
    position, dim) pairs whose sizes become symbols (see `symbolic`)."""
    from ..nn.modules import module as module_mod

    trace = Trace()
    tracer = _Tracer(trace)
    if dynamic:
        args, kwargs = _symbolic_arguments(trace, args, kwargs, dynamic)
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, Tensor) and id(a) not in tracer.ids:
            tracer.value(a, "arg")
    trace.symbols = [(tracer.ids[id(t)], dim) for t, dim in trace.symbols]
    _name_arguments(trace, tracer, fn, args, kwargs)
    owner = getattr(fn, "__self__", None)  # a compiled module's forward: its mode is guarded too
    if isinstance(owner, module_mod.Module):
        tracer.module_called(owner)
    with _LOCK:
        saved = {name: getattr(Tensor, name) for name in (*_DATA_READS, *_HOOKS, "_bump_version")
                 if hasattr(Tensor, name)}
        previous = dispatch.tracer
        try:
            for name, method in saved.items():
                if name == "_bump_version":
                    wrapped = _wrap_bump(method)
                elif name in _HOOKS:
                    wrapped = _wrap_break(f"Tensor.{name}() inside the function (not compiled yet)", method)
                else:
                    wrapped = _wrap_read(name, method)
                setattr(Tensor, name, wrapped)
            _active.tracer = tracer
            dispatch.tracer = tracer
            module_mod.call_observer = tracer.module_called
            with shown_as_values():  # eager's messages, not symbols (a dynamic capture)
                trace.result = fn(*args, **kwargs)
            _collect_outputs(trace, tracer, trace.result)
            if then is not None and not trace.breaks:
                then(trace, tracer)
        finally:
            module_mod.call_observer = None
            dispatch.tracer = previous
            _active.tracer = None
            for name, method in saved.items():
                setattr(Tensor, name, method)
    trace.modules = list(tracer.modules.values())
    _name_externals(trace)
    if trace.symbols:
        _concrete_sizes(tracer.keep)
    _finish_externals(trace, tracer)
    return trace


def _symbolic_arguments(trace: Trace, args: tuple, kwargs: dict, dynamic: frozenset) -> tuple[tuple, dict]:
    """The call's arguments with each tensor that has dynamic dims replaced by an alias
    (a view of it, so gradients still reach it) whose sizes at those dims are symbols;
    `trace.symbols` gets (alias, dim) per symbol, in symbol order."""
    values = list(args) + list(kwargs.values())
    aliases = {}
    for position, dim in sorted(dynamic):
        t = values[position]
        if id(t) not in aliases:
            aliases[id(t)] = (t, t[...], list(t.shape))
        _, alias, shape = aliases[id(t)]
        shape[dim] = Sym.symbol(len(trace.symbols), int(shape[dim]))
        trace.symbols.append((alias, dim))
    for t, alias, shape in aliases.values():
        strides = contiguous_strides(shape) if t.is_contiguous() else t.stride()
        alias._shape, alias._stride = Size(shape), tuple(strides)
    swap = [aliases[id(v)][1] if isinstance(v, Tensor) and id(v) in aliases else v for v in values]
    return tuple(swap[:len(args)]), dict(zip(kwargs, swap[len(args):]))


def _concrete_sizes(tensors: list) -> None:
    """Give the tensors a symbolic capture touched (its results included) plain int sizes
    again: symbols belong to the trace, not to what the user holds afterwards."""
    for t in tensors:
        if is_symbolic(tuple(t._shape)) or (t._stride is not None and is_symbolic(tuple(t._stride))):
            t._shape = Size(int(s) for s in t._shape)
            t._stride = None if t._stride is None else tuple(int(s) for s in t._stride)
            t._offset = int(t._offset)


def _name_arguments(trace: Trace, tracer: _Tracer, fn: Callable, args: tuple, kwargs: dict) -> None:
    """Name the arguments in `trace.names` (for the generated code's comments only) by the
    parameter of `fn` each binds to; run before `fn`, while each tensor's id is still its
    argument's value (an in-place op gives it a new one)."""
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):  # no signature (a builtin) or one the call does not fit
        return
    for name, value in bound.items():
        if isinstance(value, Tensor) and id(value) in tracer.ids:
            trace.names.setdefault(tracer.ids[id(value)], name)


def _name_externals(trace: Trace) -> None:
    """Name each parameter or buffer in `trace.names` by its qualified name in the first
    module called that holds it (the outermost one: `0.weight` in a Sequential)."""
    externals = {id(t): vid for vid, t in trace.externals}
    for ref, _ in trace.modules:
        module = ref()
        for name, t in [*module.named_parameters(), *module.named_buffers()] if module is not None else []:
            if id(t) in externals:
                trace.names.setdefault(externals[id(t)], name)


def _finish_externals(trace: Trace, tracer: _Tracer) -> None:
    """Keep externals by weak reference; one that died was made inside the function
    (by a factory that is not a constant fill), which the graph cannot reproduce."""
    trace.externals = [(vid, weakref.ref(t)) for vid, t in trace.externals]
    tracer.keep.clear()
    tracer.ids.clear()
    if any(ref() is None for _, ref in trace.externals):
        tracer.brk("a tensor created inside the function (random or data factory) is not captured")
