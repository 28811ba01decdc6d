"""Grad modes: whether ops record the tape. Thread-local, as in PyTorch.

Each mode is both a context manager and a decorator; `set_grad_enabled(mode)` also
takes effect immediately when called as a plain function.
"""
from __future__ import annotations

import copy
import functools
import inspect
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


def _decorate(fn, make_ctx):
    """`fn` run inside a fresh `make_ctx()`. A generator function gets the mode around each
    of its steps (not only around its creation), as in PyTorch."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            gen = fn(*args, **kwargs)
            try:
                with make_ctx():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with make_ctx():
                            gen.close()
                        raise
                    except BaseException as exc:
                        with make_ctx():
                            response = gen.throw(exc)
                    else:
                        with make_ctx():
                            response = gen.send(request)
            except StopIteration as stop:
                return stop.value
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with make_ctx():
            return fn(*args, **kwargs)
    return wrapper


class _GradMode:
    """Base of the grad-mode switches: subclasses set `mode` (True/False)."""

    mode = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set(self.mode)

    def __exit__(self, *exc):
        _set(self._prev)

    def __call__(self, fn):
        return _decorate(fn, lambda: copy.copy(self))


class _NoParamGradMode(_GradMode):
    """Also usable as a bare decorator (`@no_grad`, no parentheses), as in PyTorch."""

    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)


class no_grad(_NoParamGradMode):
    """Ops inside record nothing; results do not require grad."""

    mode = False


class enable_grad(_NoParamGradMode):
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
        _set(self._prev)  # used as a decorator: no immediate effect
        mode = self.mode
        return _decorate(fn, lambda: set_grad_enabled(mode))


class inference_mode(_GradMode):
    """Like `no_grad` (gradc keeps no extra per-tensor bookkeeping to skip)."""

    def __new__(cls, mode=True):
        if isinstance(mode, bool):
            return super().__new__(cls)
        return cls()(mode)  # bare `@inference_mode`, as in PyTorch

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
