"""Compiler settings, counters and logging.

Environment variables are read when a function is called or compiled (never cached at
import), so tests can change them and call `reset()`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger("gradc.compiler")


@dataclass
class Config:
    """`recompile_limit`: guard entries per compiled function before it falls back to eager."""

    recompile_limit: int = 8


config = Config()

# dynamic_reuses: a new size served by an existing symbolic entry (after its check capture)
COUNTER_NAMES = ("compiles", "disk_hits", "memory_hits", "fallbacks", "graph_breaks", "dynamic_reuses")
counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)


def bump(name: str, reason: str = "") -> None:
    """Count an event and, under GRADC_LOG=1, log it with its reason."""
    counters[name] = counters.get(name, 0) + 1
    if env_flag("GRADC_LOG"):
        message = f"gradc.compile: {name}" + (f": {reason}" if reason else "")
        log.warning(message)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def reset_counters() -> None:
    for name in list(counters):
        counters[name] = 0
