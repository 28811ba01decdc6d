"""`Parameter`: a Tensor that a Module registers as learnable state when assigned to it.

A Parameter is a leaf over the same storage as the tensor it wraps (nothing is copied).
Only its type is special: every op on it returns a plain Tensor, as in PyTorch, because
the ops build their results as `Tensor`s whatever the class of their inputs.
"""
from __future__ import annotations

from ..factories import empty
from ..tensor import Tensor


class Parameter(Tensor):
    """`Parameter(data=None, requires_grad=True)`: `data`'s memory, as a trainable leaf."""

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter data must be a gradc.Tensor, got {type(data).__name__}")
        param = cls._new(data._storage, data._offset, data._shape, data._stride)
        param.requires_grad = requires_grad  # (refused for integer data, as any leaf)
        return param

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        """Everything is set up by `__new__` (Tensor's own `__init__` refuses direct calls)."""

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo: dict) -> Parameter:
        """A new Parameter over a copy of the data, without gradient or autograd links."""
        if id(self) not in memo:
            memo[id(self)] = type(self)(self.detach().clone(), self.requires_grad)
        return memo[id(self)]

    def __reduce_ex__(self, protocol):
        """Pickle as (data, requires_grad): autograd links and hooks are not state."""
        return _rebuild_parameter, (self.detach(), self.requires_grad)


def _rebuild_parameter(data: Tensor, requires_grad: bool) -> Parameter:
    return Parameter(data, requires_grad)
