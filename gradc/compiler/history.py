"""What each compiled function did: the data behind `gradc explain SCRIPT.py`.

Every `CompiledFunction` gets a `History` when it is created; the registry keeps them in
creation order. A history holds only strings and a weak reference to its function, so it
outlives the function (a compiled function local to a script's `main` still shows in the
report) without keeping compiled code or tensors alive. Memory is bounded: a run of
identical events is one event with a repeat count, at most MAX_EVENTS events are kept per
function (the rest are counted), and once more than MAX_FUNCTIONS histories exist the
oldest whose function died are dropped (and counted).

Each recording method also counts the event (`config.counters`) and logs it under its
GRADC_LOG category, so the compiler reports an event with one call.
"""
from __future__ import annotations

import os
import weakref
from collections.abc import Callable

from .capture import Trace
from .config import bump, log_event
from .guards import recompile_reason

MAX_EVENTS = 100
MAX_FUNCTIONS = 1000

_WORDS = {"fallbacks": "fallback", "dynamic_reuses": "dynamic reuse"}


class History:
    """The events of one compiled function. `owner` is the function (a `CompiledFunction`:
    `.fn` the Python function, `.entries` guard key -> entries)."""

    def __init__(self, owner) -> None:
        fn = owner.fn
        self.name: str = getattr(fn, "__qualname__", type(fn).__name__)
        self.where: str = _definition(fn)
        self.owner = weakref.ref(owner)
        self.events: list[list] = []  # [text, how many times in a row]
        self.dropped = 0
        _registry.add(self)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.where})"

    def bump(self, name: str, reason: str) -> None:
        """Count, log and record a fallback or a dynamic reuse."""
        bump(name, f"{self.label}: {reason}")
        self._add(f"{_WORDS.get(name, name)}: {reason}")

    def recompile(self, entries: dict, key: tuple) -> None:
        """A compile for `key` is starting: when `entries` (the function's, guard key ->
        entries) is not empty it is a recompile, logged with the guard that failed."""
        if not entries:
            return
        module = getattr(self.owner().fn, "__self__", None)  # the owner is compiling: alive
        reason = recompile_reason(entries, key, module)
        bump("recompiles", f"{self.label}: {reason}")
        self._add(f"recompile: {reason}")

    def graph_break(self, trace: Trace, error: Exception) -> None:
        """Count, log and record a graph break, each reason with the user's file:line."""
        reasons = [trace.located(r) for r in trace.breaks] or [str(error)]
        bump("graph_breaks", f"{self.label}: {'; '.join(reasons)}")
        for reason in reasons:
            self._add(f"graph break: {reason}")

    def graphs(self, lowered: list, training: bool, backend: str) -> None:
        """Record the graphs of one compile and log their source (category output_code).
        `lowered` holds (graph, plan, source, ...) per graph: forward then backward when
        `training`, else the one inference graph."""
        kinds = ("forward", "backward") if training else ("inference",)
        for which, (graph, plan, source, *_) in zip(kinds, lowered):
            externs = sum(1 for k in plan.kernels if k.kind == "extern")
            kernels = len(plan.kernels) - externs
            self._add(f"compiled {which} graph: {_plural(graph.number_of_nodes(), 'node')}, "
                      f"{_plural(kernels, backend.upper() + ' kernel')}, {_plural(externs, 'extern step')}")
            log_event("output_code", f"gradc output_code: {self.label}: {which} graph ({backend}):\n{source}")

    def render(self) -> list[str]:
        owner = self.owner()
        if owner is None:
            state = "no longer alive"
        else:
            state = _plural(len({id(e) for es in owner.entries.values() for e in es}), "entry", "entries")
        lines = [f"{self.label}: {state}"]
        for i, (text, times) in enumerate(self.events, 1):
            lines.append(f"  {i}. {text}" + (f" (x{times})" if times > 1 else ""))
        if self.dropped:
            lines.append(f"  ... {_plural(self.dropped, 'more event')} not kept")
        return lines

    def _add(self, text: str) -> None:
        if self.events and self.events[-1][0] == text:
            self.events[-1][1] += 1
        elif len(self.events) < MAX_EVENTS:
            self.events.append([text, 1])
        else:
            self.dropped += 1


class _Registry:
    """Every history, in creation order, bounded as the module docstring says."""

    def __init__(self) -> None:
        self.histories: list[History] = []
        self.forgotten = 0

    def add(self, history: History) -> None:
        self.histories.append(history)
        if len(self.histories) > MAX_FUNCTIONS:
            dead = next((h for h in self.histories if h.owner() is None), None)
            if dead is not None:
                self.histories.remove(dead)
                self.forgotten += 1

    def clear(self) -> None:
        """Forget every event and the histories of functions that died."""
        self.histories = [h for h in self.histories if h.owner() is not None]
        for h in self.histories:
            h.events.clear()
            h.dropped = 0
        self.forgotten = 0


_registry = _Registry()


def report() -> str:
    """Per compiled function with events recorded since the last reset (creation order):
    its name, where it is defined, how many guard entries it holds, then its events in
    order. A call served from memory records nothing: it changed nothing."""
    lines: list[str] = []
    for h in _registry.histories:
        if h.events or h.dropped:
            lines.extend(h.render())
    if _registry.forgotten:
        lines.append(f"({_plural(_registry.forgotten, 'earlier function')} forgotten)")
    return "\n".join(lines) if lines else "no compiled functions were called"


def clear() -> None:
    """Forget every recorded event (for `gradc.compiler.reset()`)."""
    _registry.clear()


def _definition(fn: Callable) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return "unknown location"
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"
