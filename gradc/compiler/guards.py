"""Guards: what must hold for a compiled entry to be reused.

The key covers grad mode and, for every argument, its Python value (scalars, strings,
None) or, for tensors, shape, strides, dtype, device, requires_grad and which earlier
argument it is (the same tensor passed twice compiles to one buffer). Arguments of any
other type make the call uncompilable (`TypeError`), and the function runs eagerly.
"""
from __future__ import annotations

from ..autograd.grad_mode import is_grad_enabled
from ..tensor import Tensor

_SCALARS = (bool, int, float, str, type(None))


def tensor_meta(t: Tensor) -> tuple:
    return (tuple(t._shape), tuple(t.stride()), t.dtype.name, str(t.device), t._requires_grad)


def guard_key(args: tuple, kwargs: dict) -> tuple:
    parts: list = [is_grad_enabled(), tuple(kwargs)]
    seen: dict[int, int] = {}
    for i, a in enumerate((*args, *kwargs.values())):
        if isinstance(a, Tensor):
            parts.append(("T", seen.setdefault(id(a), i), *tensor_meta(a)))
        elif isinstance(a, _SCALARS):
            parts.append((type(a).__name__, a))
        else:
            raise TypeError(f"argument of type {type(a).__name__} is not guarded yet")
    return tuple(parts)


def call_tensors(args: tuple, kwargs: dict) -> list:
    """The distinct tensors of a call, in the order capture numbers them."""
    out, seen = [], set()
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor) and id(a) not in seen:
            seen.add(id(a))
            out.append(a)
    return out
