"""Eager execution of an op from the table, and its recording on the tape.

`apply` is the single entry point every op goes through: shape/dtype rule, kernel (or
view arithmetic), wrapping, and, when grad mode is on and an input requires grad,
one autograd node for the outputs. It runs for every op call, so it is written for
speed: per-op dispatch overhead is a benchmarked target (benchmarks/eager_overhead.py).
"""
from __future__ import annotations

import numpy as np

from ..autograd.grad_mode import _state
from ..device import CPU, array_module
from ..tensor import Tensor

# The compiler's capture hook: when set, called as tracer(op, args, attrs, outputs) after
# every op (see gradc.compiler.capture). None in eager use, so the cost is one global check.
tracer = None


def _device_of(op, tensors):
    dev = tensors[0]._storage.device
    for t in tensors:
        d = t._storage.device
        if d is not dev and d != dev:
            raise RuntimeError(f"{op.name}: expected all tensors to be on the same device, "
                               f"but found at least two devices, {dev} and {t.device}!")
    return dev


def apply(op, *args, **attrs):
    """Run `op` on `args` (tensors and Python scalars); returns a Tensor or a tuple."""
    specs, compute = op.meta(*args, **attrs)
    tensors = [a for a in args if isinstance(a, Tensor)]
    dev = _device_of(op, tensors)
    if op.view is not None:
        x = args[0]
        shape, stride, offset = op.view(x, **attrs)
        outs = (x._make_view(shape, stride, offset),)
    else:
        xp = np if dev is CPU else array_module(dev)
        want = compute.np if compute is not None else None
        arrays = []
        uncast = op.cast_from
        for a in args:
            if isinstance(a, Tensor):
                a = a._arr if a._arr is not None else a._array()
                if want is not None and a.dtype is not want and a.dtype != want and len(arrays) >= uncast:
                    a = a.astype(want)
            arrays.append(a)
        result = op.kernel(xp, *arrays, **attrs)
        if len(specs) == 1:
            spec = specs[0]
            outs = (Tensor._from_array(xp, result, spec[1], spec[2] if len(spec) == 3 else dev),)
        else:
            outs = tuple(Tensor._from_array(xp, r, spec[1], spec[2] if len(spec) == 3 else dev)
                         for r, spec in zip(result, specs))
    if op.backward is not None and _state.enabled:
        for t in tensors:
            if t._requires_grad:
                _record(op, args, attrs, outs)
                break
    if tracer is not None:
        tracer(op, args, attrs, outs)
    return outs[0] if len(outs) == 1 else outs


def _record(op, args, attrs, outs) -> None:
    node = op.node_cls(args, attrs, outs, Tensor)
    for i, o in enumerate(outs):
        if o._storage.dtype.is_floating_point:
            o._requires_grad = True
            o.grad_fn = node
            o._output_nr = i
