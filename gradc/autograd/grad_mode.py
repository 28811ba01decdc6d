"""Grad modes: whether ops record the tape. Thread-local, as in PyTorch.

Each mode is both a context manager and a decorator; `set_grad_enabled(mode)` also
takes effect immediately when called as a plain function.
"""
from __future__ import annotations

import copy
import functools
import threading


class _ThreadState(threading.local):
    enabled = True  # class-level defaults: every thread starts with grad mode on
    inference = False


_state = _ThreadState()


def is_grad_enabled() -> bool:
    return _state.enabled


def _set(enabled: bool) -> None:
    _state.enabled = enabled


def is_inference_mode_enabled() -> bool:
    return _state.inference


class _GradMode:
    """Base of the grad-mode switches: subclasses set `mode` (True/False)."""

    mode = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set(self.mode)

    def __exit__(self, *exc):
        _set(self._prev)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with copy.copy(self):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Ops inside record nothing; results do not require grad."""

    mode = False


class enable_grad(_GradMode):
    mode = True


class set_grad_enabled(_GradMode):
    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = is_grad_enabled()
        _set(self.mode)

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        _set(self._prev)

    def __call__(self, fn):
        _set(self._prev)
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = is_grad_enabled()
            _set(mode)
            try:
                return fn(*args, **kwargs)
            finally:
                _set(prev)
        return wrapper


class inference_mode(_GradMode):
    """Like `no_grad` (gradc keeps no extra per-tensor bookkeeping to skip)."""

    def __init__(self, mode: bool = True):
        self.mode = not mode
        self.inference = mode

    def __enter__(self):
        super().__enter__()
        self._prev_inf = is_inference_mode_enabled()
        _state.inference = self.inference

    def __exit__(self, *exc):
        super().__exit__()
        _state.inference = self._prev_inf
