"""A counter-based uniform generator shared by eager dropout and compiled kernels.

Element `i` of a draw with seed `s` is SplitMix64's output at position `i` of the
stream starting at `s` (one multiply-add, then the 64-bit finalizer), reduced to 24
(float32) or 53 (float64) bits. Every element is a pure function of (seed, index), so a
C or CUDA kernel computes any element independently, in any order or thread, and gets
bit for bit what eager computes here; `runtime/gradc_runtime.h` has the C twin. A draw
takes one 63-bit seed from gradc's global generator, so `manual_seed` makes dropout
masks reproducible and a compiled call draws the same masks eager would have.
"""
from __future__ import annotations

import numpy as np

from . import factories
from .device import array_module, as_device
from .tensor import Tensor

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_BITS = {np.dtype(np.float32): (40, 2.0 ** -24), np.dtype(np.float64): (11, 2.0 ** -53)}


def draw_seed() -> int:
    """The next seed from gradc's global generator."""
    return int(factories.default_generator().integers(0, 2 ** 63 - 1))


def uniform(xp, shape: tuple, seed: int, dtype) -> object:
    """Uniform [0, 1) values of numpy `dtype` (float32 or float64) for `seed`, C order."""
    dtype = np.dtype(dtype)
    shift, scale = _BITS[dtype]
    n = 1
    for size in shape:
        n *= size
    z = xp.arange(n, dtype=xp.uint64) * _GOLDEN + xp.uint64(seed)
    z = (z ^ (z >> xp.uint64(30))) * _MIX1
    z = (z ^ (z >> xp.uint64(27))) * _MIX2
    z = z ^ (z >> xp.uint64(31))
    return ((z >> xp.uint64(shift)).astype(dtype) * dtype.type(scale)).reshape(shape)


def rand(shape: tuple, dtype, device) -> Tensor:
    """A fresh uniform [0, 1) tensor drawn with the next seed. Inside a compiled function's
    capture, the tracer records it as a "rand" node reading a per-call seed input."""
    from .ops import dispatch

    device = as_device(device)
    seed = draw_seed()
    xp = array_module(device)
    t = Tensor._from_array(xp, uniform(xp, tuple(shape), seed, dtype.np), dtype, device)
    if dispatch.tracer is not None:
        dispatch.tracer.random(t, seed, shape)
    return t
