"""`gradc.export`: a model's inference graph as a standalone C program.

Why not the compiled module: a compiled function is C plus Python (guards, numpy extern
steps, cffi); an export is only C, so it must be sure, before writing a byte, that the
whole call is one graph of ops with C kernels. The steps:
1. modules to eval mode and grad off (restored afterwards): inference only;
2. a census: run the function once, noting every op call that has no C form (the
   compiler's own graph-break reasons, and extern ops without a portable kernel); then
   the capture, whose breaks (data-dependent Python, tensors made inside) join the list.
   Any entry stops the export with all of them listed;
3. with `dynamic=True`, the capture gives the first argument's first dim a symbol; a
   symbolic capture can bake a size in (see `symbolic`), so captures at other batch sizes
   must agree with it (`dynamic.signature`), else the export stops (at batch 1 alone, the
   C then refuses batch 1);
4. lower (graph, simplify, portable kernels, schedule), render (`export_c`) and write.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..ops import dispatch
from ..tensor import Tensor
from .api import CompiledFunction, simplified_graph
from .capture import EXTERNS, capture, op_break
from .dynamic import signature
from .errors import ExportError, GraphBreak
from .export_c import make_portable, portable, render_program
from .joint import Derivation
from .schedule import schedule

_WEIGHTS = ("embed", "file")


def export(fn: Callable, example_inputs: Tensor | Sequence[Tensor], out_dir: str | os.PathLike, *,
           weights: str = "embed", dynamic: bool = False, openmp: bool = False) -> list[Path]:
    """Write `fn` (a function of tensors or an `nn.Module`) called on `example_inputs` as
    dependency-free C into `out_dir`: model.h (the API), model.c (the graph and, with
    `weights="embed"`, the weights as C arrays), main_example.c (a program calling it) and,
    with `weights="file"`, weights.bin for `model_load`. Inference only: modules run in eval
    mode without grad. Shapes are fixed to the examples' unless `dynamic=True`, which makes
    the first input's first dim (the batch) an argument of `model_run`. `openmp=True` keeps
    the compiler's OpenMP pragmas (build with -fopenmp). Returns the written paths; raises
    `ExportError` listing every unsupported op before writing anything."""
    if weights not in _WEIGHTS:
        raise ValueError(f"gradc.export: weights must be one of {_WEIGHTS}, got {weights!r}")
    examples = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    if not examples or not all(isinstance(t, Tensor) for t in examples):
        raise TypeError("gradc.export: example_inputs must be a tensor or a sequence of tensors")
    examples = tuple(t.detach().contiguous() for t in examples)
    if dynamic and (examples[0].dim() == 0 or examples[0].shape[0] < 2):
        raise ValueError(f"gradc.export: dynamic=True needs a first input whose first dim (the batch) is at least "
                         f"2 in the example, got shape {list(examples[0].shape)}")
    title = _title(fn)
    fn = _eager(fn)
    with _inference(fn):
        problems = _census(fn, examples)
        trace = _capture(fn, examples, dynamic)
        problems += [trace.located(reason) for reason in trace.breaks]
        if not problems:
            problems += _unexportable(trace)
        min_batch = 1
        if not problems and dynamic:
            min_batch, more = _batch_check(fn, examples, trace)
            problems += more
        if not problems:
            graph = simplified_graph(trace)
            problems += [f"op {op!r} has no portable C kernel" + _at(src) for op, src in make_portable(graph)]
        if problems:
            raise ExportError(f"gradc.export: cannot export {title}:\n" + "\n".join(
                f"  - {p}" for p in dict.fromkeys(problems)))
        values = {vid: ref() for vid, ref in trace.externals}
        try:
            files = render_program(graph, schedule(graph), {n: values[n]._array() for n in graph.graph["externals"]},
                                   title=title, weights_mode=weights, openmp=openmp, min_batch=min_batch)
        except GraphBreak as e:
            raise ExportError(f"gradc.export: cannot export {title}:\n  - {e}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        (out / name).write_bytes(data)
        written.append(out / name)
    return written


def _title(fn: Callable) -> str:
    from ..nn import Module

    if isinstance(fn, Module):
        return f"module {type(fn).__name__}"
    return f"function {getattr(fn, '__qualname__', type(fn).__name__)}"


def _eager(fn: Callable) -> Callable:
    """The Python function behind a `gradc.compile` result (a function or a module whose
    forward is compiled): capturing the compiled one would see no ops."""
    forward = vars(fn).get("forward") if hasattr(fn, "__dict__") else None
    for wrapped in (fn, forward):
        if isinstance(wrapped, CompiledFunction):
            return wrapped.fn
    return fn


class _inference:
    """Grad off and every module reachable from `fn` in eval mode, restored on exit."""

    def __init__(self, fn: Callable):
        from ..nn import Module

        owner = fn if isinstance(fn, Module) else getattr(fn, "__self__", None)
        self.modules = list(owner.modules()) if isinstance(owner, Module) else []
        self.grad = no_grad()

    def __enter__(self):
        self.training = [m.training for m in self.modules]
        for m in self.modules:
            m.training = False
        self.grad.__enter__()
        return self

    def __exit__(self, *exc):
        self.grad.__exit__(*exc)
        for m, mode in zip(self.modules, self.training):
            m.training = mode
        return False


def _at(source) -> str:
    if not source or source[0] == "<unknown>":
        return ""
    file, line, code = source
    return f" (at {os.path.basename(file)}:{line}: {code})"


class _Census:
    """A stand-in for the capture's tracer that only notes, for every op call of one run,
    why it has no C form (the capture stops at the first such call; an export lists them
    all). Factories report to the tracer too; the capture judges those."""

    def __init__(self):
        self.found: list[str] = []

    def __call__(self, op, args, attrs, outs) -> None:
        from .capture import user_source

        reason = op_break(op, args, attrs, outs)
        if reason is None and op.name in EXTERNS and not portable(op.name, attrs):
            reason = f"op {op.name!r} has no portable C kernel for this call (compiled code runs it with numpy)"
        if reason is not None:
            self.found.append(reason + _at(user_source()))

    def __getattr__(self, name: str) -> Callable:
        return lambda *args, **kwargs: None


def _census(fn: Callable, examples: tuple) -> list[str]:
    census = _Census()
    previous, dispatch.tracer = dispatch.tracer, census
    try:
        fn(*examples)
    finally:
        dispatch.tracer = previous
    return census.found


def _capture(fn: Callable, examples: tuple, dynamic: bool, batch: int | None = None):
    """The trace of `fn` on the examples (their batch resized to `batch` when given)."""
    if batch is not None:
        first = examples[0]
        resized = Tensor._from_array(np, np.repeat(first._array()[:1], batch, axis=0), first.dtype, first.device)
        examples = (resized, *examples[1:])
    return capture(fn, examples, {}, dynamic=frozenset({(0, 0)}) if dynamic else frozenset())


def _unexportable(trace) -> list[str]:
    """What the capture allows but a stateless C function cannot do."""
    problems = []
    if trace.seeds:
        problems.append("the function draws random numbers (dropout in training mode?)")
    if trace.mutations:
        problems.append("the function writes into its inputs or into module buffers (batch norm in training mode?)")
    if len(trace.symbols) > 1:
        problems.append("dynamic=True makes only the first input's first dim symbolic")
    for vid in trace.inputs:
        if trace.values[vid][1] is dtypes.bool_:
            problems.append("a bool input (pass it as uint8 or float)")
    return problems


def _batch_check(fn: Callable, examples: tuple, trace) -> tuple[int, list[str]]:
    """(smallest batch the symbolic graph serves, problems): a fresh capture at batch 1 and
    at larger sizes must equal the symbolic one there. Batch 1 alone may differ (size-1
    dims broadcast, so code may take another path there): then model_run accepts batch >= 2."""
    b = examples[0].shape[0]
    problems, smallest = [], 1
    for size in sorted({1, 2, b + 1, 2 * b + 3}):
        try:
            concrete = _capture(fn, examples, False, size)
        except Exception as e:  # e.g. a second input whose batch did not change with the first's
            problems.append(f"at batch {size} the function fails ({type(e).__name__}: {e}): export with "
                            f"dynamic=False")
            continue
        if signature(concrete, Derivation()) == signature(trace, Derivation(), (size,)):
            continue
        if size == 1:
            smallest = 2
        else:
            problems.append(f"at batch {size} the function runs a different graph than at batch {b} (a size "
                            f"computed outside gradc's ops, or a branch on it): export with dynamic=False")
    return smallest, problems
