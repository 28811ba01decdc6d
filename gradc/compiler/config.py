"""Compiler settings, counters and logging.

Environment variables are read when a function is called or compiled (never cached at
import), so tests can change them and call `reset()`.

Logging goes through the standard `logging` module, one logger per category under
`gradc.compiler` (`gradc.compiler.recompiles`, ...), at INFO level. GRADC_LOG picks the
categories: "1" or "all" turns on every one, a comma list ("recompiles,graph_breaks")
only those, unset or "0" none. Each distinct value is parsed once, so the check on every
call is one environment read and one dict lookup. The first time something is logged,
a handler writing to the current `sys.stderr` is attached to the `gradc` logger if it
has none; it stays silent while any other handler would receive the record (the user's
own logging setup, pytest's caplog), so no line is ever printed twice.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("gradc.compiler")


@dataclass
class Config:
    """`recompile_limit`: guard entries per compiled function before it falls back to eager.
    `cuda_toolchain`: where `backend="cuda"` meets CPU tensors, None renders the CUDA and
    runs eagerly; a factory of `cuda_runner.Toolchain`s (given the device) runs the
    kernels through it instead (the tests' CPU emulation of CUDA)."""

    recompile_limit: int = 8
    cuda_toolchain: Callable | None = None


config = Config()

# dynamic_reuses: a new size served by an existing symbolic entry (after its check capture);
# checks: calls mode="check" compared with eager and found equal
COUNTER_NAMES = ("compiles", "disk_hits", "memory_hits", "fallbacks", "graph_breaks", "dynamic_reuses",
                 "recompiles", "checks")
counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

# compiles: a graph built or loaded from the disk cache; cache: in-memory (guard) hits;
# output_code: the generated source of each compiled graph
CATEGORIES = ("compiles", "recompiles", "graph_breaks", "fallbacks", "output_code", "cache", "dynamic")
# counter -> (log category, what its log line calls the event)
_EVENTS = {"compiles": ("compiles", "compile"), "disk_hits": ("compiles", "disk cache hit"),
           "memory_hits": ("cache", "memory cache hit"), "fallbacks": ("fallbacks", "fallback"),
           "graph_breaks": ("graph_breaks", "graph break"), "dynamic_reuses": ("dynamic", "dynamic reuse"),
           "recompiles": ("recompiles", "recompile"), "checks": ("compiles", "checked against eager")}
_parsed: dict[str, frozenset] = {}


def bump(name: str, reason: str = "") -> None:
    """Count an event and, when its category is logged (GRADC_LOG), log it with its reason."""
    counters[name] = counters.get(name, 0) + 1
    category, word = _EVENTS.get(name, ("compiles", name))
    if category in logged_categories():
        log_event(category, f"gradc {word}" + (f": {reason}" if reason else ""))


def logged_categories() -> frozenset[str]:
    """The categories GRADC_LOG turns on now (empty when it is unset or "0")."""
    value = env("GRADC_LOG")
    found = _parsed.get(value)
    if found is None:
        found = _parsed[value] = _parse(value)
    return found


def log_event(category: str, message: str) -> None:
    """Log `message` under `gradc.compiler.<category>` if GRADC_LOG turns that category on."""
    if category in logged_categories():
        _ensure_output()
        logging.getLogger(f"gradc.compiler.{category}").info(message)


def env_flag(name: str) -> bool:
    return env(name) not in ("", "0")


# On POSIX, os.environ keeps the environment as bytes in this dict, which every write
# through os.environ updates; reading it directly skips two str<->bytes conversions.
_RAW = getattr(os.environ, "_data", None) if os.name == "posix" else None
_RAW = _RAW if isinstance(_RAW, dict) else None


def env(name: str) -> str:
    """`os.environ.get(name, "")`, read now, at a twentieth of its cost on POSIX: a
    compiled call reads several variables (GRADC_EAGER, GRADC_MODE, GRADC_LOG), and
    os.environ.get takes about a microsecond each."""
    if _RAW is None:
        return os.environ.get(name, "")
    value = _RAW.get(name.encode())
    return "" if value is None else os.fsdecode(value)


def reset_counters() -> None:
    for name in list(counters):
        counters[name] = 0


def _parse(value: str) -> frozenset[str]:
    names = {part.strip().lower() for part in value.split(",")} - {"", "0"}
    if names & {"1", "all"}:
        return frozenset(CATEGORIES)
    unknown = names.difference(CATEGORIES)
    if unknown:
        warnings.warn(f"GRADC_LOG: unknown categories {', '.join(sorted(unknown))} "
                      f"(known: 1, all, {', '.join(CATEGORIES)})", stacklevel=1)
    return frozenset(names.intersection(CATEGORIES))


class _StderrFallback(logging.Handler):
    """Writes gradc's records to the `sys.stderr` of the moment (tools swap it), unless
    another handler on the record's way up the logger tree receives it too."""

    def emit(self, record: logging.LogRecord) -> None:
        if self._handled_elsewhere(record):
            return
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging's contract: report through handleError, never raise
            self.handleError(record)

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


def _ensure_output() -> None:
    """Let INFO records of the `gradc` logger through and give them a way to stderr."""
    root = logging.getLogger("gradc")
    if root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    if not root.handlers:
        root.addHandler(_StderrFallback())
