"""In-place ops (`add_`, `mul_`, `copy_`, `t[i] = v`, ...).

Every in-place op is its out-of-place twin followed by a write into `self`'s storage,
so no formula is written twice. The write bumps the storage's version counter (which
invalidates tensors saved for backward) and moves `self`'s autograd history onto the
new value; when `self` is a view, its base's history is rewritten too (through
`strided_scatter`), as PyTorch's CopySlices does.
"""
from __future__ import annotations

from .. import dtypes
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..device import array_module
from ..tensor import Tensor
from . import dispatch
from .shapes import fmt

LEAF = "a leaf Variable that requires grad is being used in an in-place operation."
VIEW_OF_LEAF = "a view of a leaf Variable that requires grad is being used in an in-place operation."


def _check_write(self: Tensor, value) -> None:
    _check_shape(self, value)
    if isinstance(value, Tensor):
        if value.dtype.category > self.dtype.category:
            raise RuntimeError(f"result type {value.dtype.name} can't be cast to the desired output "
                               f"type {self.dtype.name}")


def _check_shape(self: Tensor, value) -> None:
    if isinstance(value, Tensor):
        if value.shape != self.shape:
            try:
                from .shapes import broadcast_shapes

                ok = broadcast_shapes("", self.shape, value.shape) == self.shape
            except RuntimeError:
                ok = False
            if not ok:
                raise RuntimeError(f"output with shape {fmt(self.shape)} doesn't match the broadcast "
                                   f"shape {fmt(value.shape)}")


def _write(self: Tensor, value) -> None:
    _check_write(self, value)
    self._array()[...] = value._array() if isinstance(value, Tensor) else value
    if dispatch.tracer is not None:  # a compiler capture follows the write (see capture.write)
        dispatch.tracer.write(self, value)
    self._bump_version()


def check_overlap(self: Tensor) -> None:
    """PyTorch refuses most writes to a tensor whose elements share memory (an expand())."""
    if any(st == 0 and n > 1 for n, st in zip(self._shape, self.stride())):
        raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers "
                           "to a single memory location. Please clone() the tensor before performing the "
                           "operation.")


def inplace(self: Tensor, fn, *args, **kwargs) -> Tensor:
    """Compute `fn(self, *args)` and store it in `self`, with autograd bookkeeping."""
    check_overlap(self)
    recording = is_grad_enabled() and (self._requires_grad or any(
        isinstance(a, Tensor) and a._requires_grad for a in args))
    if not recording:
        with no_grad():
            value = fn(self, *args, **kwargs)
        _write(self, value)
        return self
    base = self._base
    if self.grad_fn is None and self._requires_grad:
        raise RuntimeError(VIEW_OF_LEAF if base is not None else LEAF)
    if base is not None and base.grad_fn is None and base._requires_grad:
        raise RuntimeError(VIEW_OF_LEAF)
    value = fn(self.clone(), *args, **kwargs)
    _check_write(self, value)
    if value.shape != self.shape or value.dtype is not self.dtype:
        value = value.to(self.dtype).expand(self.shape)
    if base is None:
        _write(self, value)
        _take_history(self, value)
        return self
    _rewrite_base_history(self, base, value)
    _write(self, value)
    self._view_version = self._storage.version  # its new history already includes this write
    return self


def _direct(self: Tensor, ufunc: str, other, alpha):
    """`ufunc(self, other * alpha, out=self)` when that is exactly the generic result; else None."""
    is_tensor = isinstance(other, Tensor)
    if dispatch.tracer is not None:  # a capture records the generic path's op and write
        return None
    if is_grad_enabled() and (self._requires_grad or (is_tensor and other._requires_grad)):
        return None
    dt = self._storage.dtype
    if not dt.is_floating_point or dtypes.result_type(self, other, alpha) is not dt:
        return None
    if is_tensor and (other._storage.device != self._storage.device or
                      (other._shape != self._shape and len(other._shape) > len(self._shape))):
        return None
    check_overlap(self)
    arr = self._array()
    operand = other._array() if is_tensor else other
    if alpha != 1:
        operand = operand * alpha
    try:
        getattr(array_module(self._storage.device), ufunc)(arr, operand, out=arr)
    except ValueError:  # not broadcastable to self's shape: the generic path raises PyTorch's error
        return None
    self._bump_version()
    return self


def _take_history(self: Tensor, value: Tensor) -> None:
    old = self.grad_fn
    if old is not None and old._retain_grad and value.grad_fn is not None:
        ref = old._retain_grad.get(self._output_nr)
        if ref is not None and ref() is self:  # retain_grad follows the tensor, as in PyTorch
            del old._retain_grad[self._output_nr]
            value.grad_fn.retain_grad_of(value._output_nr, self)
    self.grad_fn = value.grad_fn
    self._output_nr = value._output_nr
    self._requires_grad = value._requires_grad


def _rewrite_base_history(view: Tensor, base: Tensor, value: Tensor) -> None:
    """Give `base` the history "base with this view's region replaced by `value`"."""
    from .views import as_strided, strided_scatter

    if not base.is_contiguous():
        raise RuntimeError("in-place operation on a view of a non-contiguous tensor is not supported "
                           "by autograd; call .contiguous() on the base first")
    geometry = (view.shape, view.stride(), view._offset - base._offset)
    new_base = strided_scatter(base, value, *geometry)
    _take_history(base, new_base)
    _take_history(view, as_strided(base, geometry[0], geometry[1], view._offset))


def refresh_view(view: Tensor) -> None:
    """Called (by autograd) on a view whose storage was written in place since its history
    was recorded: the base's history may have been rewritten since, so the view's becomes
    "this region of the base" (as_strided), as PyTorch regenerates a stale view's grad_fn."""
    if view._view_version is None or view._view_version == view._storage.version:
        return
    view._view_version = view._storage.version
    base = view._base
    if not (view._requires_grad and base._requires_grad):
        return
    from ..autograd.grad_mode import enable_grad
    from .views import as_strided

    if not base.is_contiguous():
        raise RuntimeError("in-place operation on a view of a non-contiguous tensor is not supported "
                           "by autograd; call .contiguous() on the base first")
    with enable_grad():
        _take_history(view, as_strided(base, view.shape, view.stride(), view._offset))


# ---------------------------------------------------------------- the in-place methods
def copy_(self: Tensor, src, non_blocking: bool = False) -> Tensor:
    if not isinstance(src, Tensor):
        return fill_(self, src)
    _check_shape(self, src)

    def fn(_, s):
        s = s.to(self.dtype) if s.dtype.category > self.dtype.category else s
        out = s.to(device=self.device, dtype=self.dtype).expand(self.shape)
        return out.clone() if out is s or out.grad_fn is s.grad_fn else out

    if src.device != self.device and not (is_grad_enabled() and src._requires_grad):
        src = src.to(self.device)
    return inplace(self, fn, src)


def fill_(self: Tensor, value) -> Tensor:
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                               f"{value.ndim} dimensions.")
        return copy_(self, value.expand(self.shape))
    if not (is_grad_enabled() and self._requires_grad):
        _write(self, value)
        return self
    return inplace(self, lambda s: s * 0 + value)


def zero_(self: Tensor) -> Tensor:
    return fill_(self, 0)


def _method(name: str, fn, ufunc: str | None = None):
    """The in-place variant of `fn`. With a `ufunc` name (add_, sub_, mul_, div_), a call that
    records nothing and keeps self's float dtype and shape is written straight into self's
    memory by the array module's ufunc: no temporary and no copy (optimizers live on this)."""

    def method(self, *args, **kwargs):
        if ufunc is not None and len(args) == 1 and not kwargs.keys() - {"alpha"}:
            done = _direct(self, ufunc, args[0], kwargs.get("alpha", 1))
            if done is not None:
                return done
        return inplace(self, fn, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"In-place version of `{fn.__name__}`."
    return method
