"""Hook plumbing shared by all modules: the global hook registries, handles that also
forget a hook's flags, and the module-bound wrapper of state-dict hooks."""
from __future__ import annotations

import weakref
from collections.abc import Callable

from ...autograd.node import HookDict, RemovableHandle

# hooks that run for every module (debugging / profiling aids), before the module's own
_global_forward_pre_hooks = HookDict()
_global_forward_hooks = HookDict()
_global_forward_hooks_with_kwargs = HookDict()
_global_forward_hooks_always_called = HookDict()
_global_backward_pre_hooks = HookDict()
_global_backward_hooks = HookDict()


class _Handle(RemovableHandle):
    """A handle that also forgets its hook's flags (with_kwargs, always_call, ...)."""

    def __init__(self, hooks: HookDict, *flag_dicts: HookDict):
        super().__init__(hooks)
        self._flag_dicts = tuple(weakref.ref(d) for d in flag_dicts)

    def remove(self) -> None:
        super().remove()
        for ref in self._flag_dicts:
            flags = ref()
            if flags is not None:
                flags.pop(self.id, None)


def _add(hooks: HookDict, hook: Callable, prepend: bool = False, *flag_dicts: HookDict) -> _Handle:
    handle = _Handle(hooks, *flag_dicts)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


def register_module_forward_pre_hook(hook: Callable) -> RemovableHandle:
    """`hook(module, args)` before every module's forward (before the module's own hooks)."""
    return _add(_global_forward_pre_hooks, hook)


def register_module_forward_hook(hook: Callable, *, with_kwargs: bool = False,
                                 always_call: bool = False) -> RemovableHandle:
    """`hook(module, args, output)` after every module's forward (before its own hooks)."""
    handle = _add(_global_forward_hooks, hook, False, _global_forward_hooks_with_kwargs,
                  _global_forward_hooks_always_called)
    if with_kwargs:
        _global_forward_hooks_with_kwargs[handle.id] = True
    if always_call:
        _global_forward_hooks_always_called[handle.id] = True
    return handle


def register_module_full_backward_pre_hook(hook: Callable) -> RemovableHandle:
    """`hook(module, grad_output)` for every module (before the module's own)."""
    return _add(_global_backward_pre_hooks, hook)


def register_module_full_backward_hook(hook: Callable) -> RemovableHandle:
    """`hook(module, grad_input, grad_output)` for every module (before the module's own)."""
    return _add(_global_backward_hooks, hook)


class _ModuleBoundHook:
    """A state-dict hook that receives its module first; the module is held weakly so the
    hook does not keep it alive (nor create a reference cycle)."""

    def __init__(self, hook: Callable, module):
        self.hook = hook
        self.module = weakref.ref(module)

    def __call__(self, *args):
        module = self.module()
        if module is None:
            raise RuntimeError("You are trying to call the hook of a dead Module!")
        return self.hook(module, *args)

    def __getstate__(self) -> dict:
        return {"hook": self.hook, "module": self.module()}

    def __setstate__(self, state: dict) -> None:
        self.hook = state["hook"]
        self.module = weakref.ref(state["module"])
