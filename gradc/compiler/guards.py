"""Guards: what must hold for a compiled entry to be reused.

The key covers grad mode and, for every argument, its Python value (scalars, strings,
None) or, for tensors, shape, strides, dtype, device, requires_grad and which earlier
argument it is (the same tensor passed twice compiles to one buffer). Arguments of any
other type make the call uncompilable (`TypeError`), and the function runs eagerly.

The key is checked on every call, so it is built in one pass from attributes the tensor
already holds (its `Size`, cached strides, dtype and device objects), with no strings
formatted or tuples copied.
"""
from __future__ import annotations

from ..autograd.grad_mode import is_grad_enabled
from ..tensor import Tensor

_SCALARS = (bool, int, float, str, type(None))


def tensor_meta(t: Tensor) -> tuple:
    s = t._storage
    return (t._shape, t.stride(), s.dtype, s.device, t._requires_grad)


def guard_key(args: tuple, kwargs: dict) -> tuple[tuple, list]:
    """The call's guard key and its distinct tensors, in the order capture numbers them."""
    parts: list = [is_grad_enabled(), tuple(kwargs)]
    tensors: list = []
    seen: dict[int, int] = {}
    for i, a in enumerate((*args, *kwargs.values()) if kwargs else args):
        if isinstance(a, Tensor):
            first = seen.setdefault(id(a), i)
            if first == i:
                tensors.append(a)
            parts.append(("T", first, *tensor_meta(a)))
        elif isinstance(a, _SCALARS):
            parts.append((type(a), a))
        else:
            raise TypeError(f"argument of type {type(a).__name__} is not guarded yet")
    return tuple(parts), tensors
