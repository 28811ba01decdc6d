"""Tensor factories: `tensor`, `zeros`, `arange`, `randn`, `from_numpy`, ...

Random numbers come from one global generator (`manual_seed`) and are always drawn
on the host, so a seed gives the same values on every device.
"""
from __future__ import annotations

import numpy as np

from . import dtypes
from .device import array_module, as_device
from .dtypes import to_dtype
from .storage import Storage
from .tensor import Tensor, _sizes

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed gradc's global generator (factories, dropout, DataLoader shuffling)."""
    global _rng
    _rng = np.random.default_rng(int(seed))


def default_generator() -> np.random.Generator:
    return _rng


def _finish(arr, dt, dev, requires_grad: bool) -> Tensor:
    dev = as_device(dev)
    xp = array_module(dev)
    if xp is not np:
        arr = xp.asarray(arr)
    t = Tensor._from_array(xp, arr, dt, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_dtype(data) -> dtypes.dtype:
    if isinstance(data, np.ndarray):
        return dtypes.from_numpy_dtype(data.dtype)
    flat = np.asarray(data)
    if flat.dtype == np.bool_:
        return dtypes.bool_
    if np.issubdtype(flat.dtype, np.integer):
        return dtypes.int64
    if np.issubdtype(flat.dtype, np.floating):
        return dtypes.get_default_dtype()
    raise TypeError(f"can't convert data of type {type(data).__name__} to a tensor")


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, scalars, arrays or tensors)."""
    if isinstance(data, Tensor):
        data = data.detach()._host()
    elif isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flat(data)):
        data = _nested_host(data)
    dt = to_dtype(dtype) if dtype is not None else _infer_dtype(data)
    arr = np.array(data, dtype=dt.np)
    return _finish(arr, dt, device, requires_grad)


def _flat(data):
    for x in data:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


def _nested_host(data):
    if isinstance(data, Tensor):
        return data.detach()._host()
    if isinstance(data, (list, tuple)):
        return [_nested_host(x) for x in data]
    return data


as_tensor = tensor


def _float_dtype(dtype):
    return to_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    return _finish(np.empty(_sizes(size), dtype=dt.np), dt, device, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    dev = as_device(device)
    arr = array_module(dev).zeros(_sizes(size), dtype=dt.np)
    return _finish(arr, dt, dev, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    dev = as_device(device)
    arr = array_module(dev).ones(_sizes(size), dtype=dt.np)
    return _finish(arr, dt, dev, requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = to_dtype(dtype) if dtype is not None else dtypes.scalar_dtype(fill_value)
    dev = as_device(device)
    arr = array_module(dev).full(_sizes((size,)), fill_value, dtype=dt.np)
    return _finish(arr, dt, dev, requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, step))
        dtype = dtypes.int64 if is_int else dtypes.get_default_dtype()
    dt = to_dtype(dtype)
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    n = max(0, int(np.ceil((end - start) / step)))
    arr = (start + np.arange(n, dtype=np.float64 if dt.is_floating_point else np.int64) * step)
    return _finish(arr, dt, device, requires_grad)


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    return _finish(np.linspace(start, end, steps), dt, device, requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    return _finish(np.eye(n, m if m is not None else n), dt, device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    return _finish(_rng.random(_sizes(size), dtype=np.float64 if dt is dtypes.float64 else np.float32),
                   dt, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    return _finish(_rng.standard_normal(_sizes(size), dtype=np.float64 if dt is dtypes.float64 else np.float32),
                   dt, device, requires_grad)


def randint(low, high=None, size=None, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if size is None:
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    dt = to_dtype(dtype) if dtype is not None else dtypes.int64
    return _finish(_rng.integers(low, high, size=_sizes((size,))), dt, device, requires_grad)


def randperm(n: int, *, dtype=None, device=None) -> Tensor:
    return _finish(_rng.permutation(n), to_dtype(dtype) if dtype else dtypes.int64, device, False)


def _like(fn):
    def like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        return fn(input.shape, dtype=dtype or input.dtype, device=device or input.device,
                  requires_grad=requires_grad)

    like.__name__ = fn.__name__ + "_like"
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(input: Tensor, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(input.shape, fill_value, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory (any non-negative strides), as torch.from_numpy."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    dtypes.from_numpy_dtype(array.dtype)  # TypeError for dtypes gradc has no name for
    item = array.itemsize
    if any(s < 0 for s in array.strides):
        raise ValueError("At least one stride in the given numpy array is negative, and tensors with "
                         "negative strides are not currently supported. (You can probably work around "
                         "this by making a copy of your array  with array.copy().) ")
    if any(s % item for s in array.strides):
        raise ValueError("given numpy array strides not a multiple of the element byte size. "
                         "Copy the numpy array to reallocate the memory.")
    if not array.dtype.isnative:
        raise ValueError("given numpy array has byte order different from the native byte order. "
                         "Conversion between byte orders is currently not supported.")
    strides = tuple(s // item for s in array.strides)
    span = 1 + sum((n - 1) * s for n, s in zip(array.shape, strides)) if array.size else 0
    flat = np.lib.stride_tricks.as_strided(array, shape=(span,), strides=(item,))
    t = Tensor._new(Storage(flat), 0, array.shape, strides)
    t._arr = array
    return t


def from_dlpack(ext) -> Tensor:
    """Zero-copy import of any DLPack producer (numpy, cupy, torch, ...)."""
    device_type = ext.__dlpack_device__()[0] if hasattr(ext, "__dlpack_device__") else 1
    if device_type == 1:
        return from_numpy(np.from_dlpack(ext))
    import cupy

    arr = cupy.from_dlpack(ext)
    dev = as_device(f"cuda:{arr.device.id}")
    from .ops.shapes import numel

    strides = tuple(s // arr.itemsize for s in arr.strides)
    span = 1 + sum((n - 1) * s for n, s in zip(arr.shape, strides)) if numel(arr.shape) else 0
    flat = cupy.lib.stride_tricks.as_strided(arr, shape=(span,), strides=(arr.itemsize,))
    t = Tensor._new(Storage(flat, dev), 0, arr.shape, strides)
    t._arr = arr
    return t
