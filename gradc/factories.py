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


def _constant(t: Tensor, value, size: tuple) -> Tensor:
    """Tell an active compiler capture that `t` (of the requested `size`, whose ints may be
    symbolic) is `value` everywhere, so that a compiled function recreates it rather than
    breaking its graph (see gradc.compiler.constants)."""
    from .ops import dispatch

    if dispatch.tracer is not None:
        dispatch.tracer.constant(t, value, size)
    return t


def _made(t: Tensor, known: bool) -> Tensor:
    """Tell an active compiler capture that a factory made `t`: `known` data (a copy of
    Python values, linspace, eye) becomes a constant of the compiled graph; anything else
    (random draws, `empty`, a copy of a tensor's data) breaks the graph where it is used."""
    from .ops import dispatch

    if dispatch.tracer is not None:
        dispatch.tracer.made(t, known)
    return t


def _infer_dtype(data) -> dtypes.dtype:
    """PyTorch's rule: promote the types of all elements, where a Python bool/int/float counts
    as bool/int64/the default float and numpy scalars and arrays keep their own dtype."""
    if isinstance(data, (np.ndarray, np.generic)):
        return dtypes.from_numpy_dtype(data.dtype)
    if isinstance(data, (list, tuple)):
        kinds = {x.dtype if isinstance(x, (np.ndarray, np.generic)) else type(x) for x in _flat(data)}
        py = {bool: dtypes.bool_, int: dtypes.int64, float: dtypes.get_default_dtype()}
        if all(k in py or isinstance(k, np.dtype) for k in kinds):
            if not kinds:
                return dtypes.get_default_dtype()
            result = None
            for k in kinds:
                d = py[k] if k in py else dtypes.from_numpy_dtype(k)
                result = d if result is None else dtypes.promote_types(result, d)
            return result
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
    known = True
    if isinstance(data, Tensor):
        data, known = data.detach()._host(), False
    elif isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flat(data)):
        data, known = _nested_host(data), False
    dt = to_dtype(dtype) if dtype is not None else _infer_dtype(data)
    arr = np.array(data, dtype=dt.np)
    return _made(_finish(arr, dt, device, requires_grad), known)


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


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like `tensor`, but shares memory when it can (a tensor, or a numpy array, already of
    the requested dtype and on the CPU), as torch.as_tensor."""
    dt = to_dtype(dtype) if dtype is not None else None
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dt) if (dt or device) else data
    if (isinstance(data, np.ndarray) and as_device(device).type == "cpu" and data.dtype.isnative
            and all(st >= 0 for st in data.strides) and (dt is None or data.dtype == dt.np)):
        try:
            return from_numpy(data)
        except (TypeError, ValueError):
            pass  # a dtype gradc lacks, odd strides: fall back to a copy
    return tensor(data, dtype=dtype, device=device)


def _float_dtype(dtype):
    return to_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    return _made(_finish(np.empty(_sizes(size), dtype=dt.np), dt, device, requires_grad), False)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    dev = as_device(device)
    arr = array_module(dev).zeros(_sizes(size), dtype=dt.np)
    return _constant(_finish(arr, dt, dev, requires_grad), 0, _sizes(size))


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    dev = as_device(device)
    arr = array_module(dev).ones(_sizes(size), dtype=dt.np)
    return _constant(_finish(arr, dt, dev, requires_grad), 1, _sizes(size))


def full(size, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if isinstance(fill_value, np.generic):  # as PyTorch: a numpy scalar counts as a Python number
        fill_value = fill_value.item()
    dt = to_dtype(dtype) if dtype is not None else dtypes.scalar_dtype(fill_value)
    dev = as_device(device)
    arr = array_module(dev).full(_sizes((size,)), fill_value, dtype=dt.np)
    return _constant(_finish(arr, dt, dev, requires_grad), fill_value, _sizes((size,)))


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
        dtype = dtypes.int64 if is_int else dtypes.get_default_dtype()
    dt = to_dtype(dtype)
    span = None  # (end - start) / step, computed as PyTorch does
    if not dt.is_floating_point:  # as PyTorch: start and step are truncated to integers first
        if dt is dtypes.int64 and int(step):  # (and for int64 the end too, when sizing)
            span = (int(end) - int(start)) / int(step)
        start, step = int(start), int(step)
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (step > 0 and end < start) or (step < 0 and end > start):
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    n = int(np.ceil(span if span is not None else (end - start) / step))
    if start == 0 and step == 1 and isinstance(end, int) and type(end) is not int and not isinstance(end, bool):
        n = end  # a symbolic size (gradc.compiler.symbolic.Sym) stays symbolic
    arr = (start + np.arange(n, dtype=np.float64 if dt.is_floating_point else np.int64) * step)
    t = _finish(arr, dt, device, requires_grad)
    from .ops import dispatch

    if dispatch.tracer is not None:  # a compiled function recreates it from (start, step)
        dispatch.tracer.arange(t, start, step, (n,))
    return t


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    return _made(_finish(np.linspace(start, end, steps), dt, device, requires_grad), True)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    return _made(_finish(np.eye(n, m if m is not None else n), dt, device, requires_grad), True)


def _check_float(name: str, dt) -> None:
    if not dt.is_floating_point:
        raise RuntimeError(f'"{name}" not implemented for \'{dt.name}\' (floating-point dtypes only)')


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    _check_float("rand", dt)
    return _made(_finish(_rng.random(_sizes(size), dtype=np.float64 if dt is dtypes.float64 else np.float32),
                         dt, device, requires_grad), False)


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt = _float_dtype(dtype)
    _check_float("randn", dt)
    arr = _rng.standard_normal(_sizes(size), dtype=np.float64 if dt is dtypes.float64 else np.float32)
    return _made(_finish(arr, dt, device, requires_grad), False)


def randint(low, high=None, size=None, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if size is None:
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    dt = to_dtype(dtype) if dtype is not None else dtypes.int64
    return _made(_finish(_rng.integers(low, high, size=_sizes((size,))), dt, device, requires_grad), False)


def randperm(n: int, *, dtype=None, device=None) -> Tensor:
    return _made(_finish(_rng.permutation(n), to_dtype(dtype) if dtype else dtypes.int64, device, False), False)


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
    cupy = array_module(as_device("cuda"))  # a clear error when cupy is missing
    arr = cupy.from_dlpack(ext)
    dev = as_device(f"cuda:{arr.device.id}")
    from .ops.shapes import numel

    strides = tuple(s // arr.itemsize for s in arr.strides)
    span = 1 + sum((n - 1) * s for n, s in zip(arr.shape, strides)) if numel(arr.shape) else 0
    flat = cupy.lib.stride_tricks.as_strided(arr, shape=(span,), strides=(arr.itemsize,))
    t = Tensor._new(Storage(flat, dev), 0, arr.shape, strides)
    t._arr = arr
    return t
