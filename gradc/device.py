"""Devices and the array module ("xp") that runs eager kernels on each.

Every eager kernel is written against an array-module handle so that the same op
table serves numpy (CPU) and cupy (CUDA): `array_module(device)` is the only place
that chooses between them.
"""
from __future__ import annotations

import functools

import numpy as np


class device:
    """`gradc.device('cpu')`, `gradc.device('cuda', 0)` or `gradc.device('cuda:0')`."""

    __slots__ = ("type", "index")

    def __init__(self, type_or_spec, index: int | None = None):
        if isinstance(type_or_spec, device):
            type_or_spec, index = type_or_spec.type, type_or_spec.index
        kind, _, idx = str(type_or_spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type_or_spec}")
        self.type = kind
        self.index = int(idx) if idx else index
        if kind == "cuda" and self.index is None:
            self.index = 0

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{idx})"


CPU = device("cpu")


def as_device(spec) -> device:
    """A device from a spec; the CPU is always the one `CPU` object (cheap identity checks)."""
    if spec is None or spec == "cpu":
        return CPU
    dev = spec if isinstance(spec, device) else device(spec)
    return CPU if dev.type == "cpu" else dev


def array_module(dev: device):
    """numpy for the CPU, cupy for CUDA (imported only when a CUDA tensor is made)."""
    return np if dev.type == "cpu" else _cupy(dev.index or 0)


@functools.cache
def _cupy(index: int):
    """cupy, once it is known to reach CUDA device `index` (a clear error otherwise)."""
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(f"cuda:{index} tensors need cupy, which is not installed: pip install "
                           "'gradc[cuda]' (cupy-cuda13x) on a machine with an NVIDIA GPU") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, or no GPU: cupy's own error says which
        raise RuntimeError(f"cuda:{index} tensors need an NVIDIA GPU; cupy cannot reach one ({e})") from e
    if index >= count:
        raise RuntimeError(f"cuda:{index} is not available: this machine has {count} CUDA device(s)")
    return cupy


def strided_view(xp, data, offset: int, shape: tuple, strides: tuple):
    """An xp array over the flat buffer `data`, with offset/strides in elements.

    This is the one place a (storage, offset, shape, strides) tensor becomes an
    array a kernel can read or write; it never copies.
    """
    item = data.itemsize
    if 0 in shape:  # empty: the offset may point past the end (t[n:] is legal), nothing is read
        offset = 0
    if xp is np:
        return np.ndarray(shape, data.dtype, buffer=data, offset=offset * item,
                          strides=tuple(s * item for s in strides))
    return xp.ndarray(shape, data.dtype, memptr=data.data + offset * item,
                      strides=tuple(s * item for s in strides))
