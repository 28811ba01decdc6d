"""Storage: the flat, typed buffer that tensors are views of.

A Storage owns memory; a Tensor never does. Every tensor is (storage, offset, shape,
strides), so views are free and in-place writes through any view are seen by all the
others. The storage also carries the version counter: an in-place op on any tensor
over this storage bumps it, which is what lets autograd notice that a tensor it saved
was overwritten.

Importing this module also tells glibc's malloc to keep freed array memory (see
`retain_freed_heap`): eager training allocates and frees the same buffers every step.
"""
from __future__ import annotations

import ctypes
import os
import sys

from .device import CPU, array_module, device
from .dtypes import dtype, from_numpy_dtype

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 32 * 2**20  # the largest value glibc accepts (and its dynamic threshold's cap)
TRIM_THRESHOLD = 256 * 2**20


def retain_freed_heap() -> bool:
    """Make glibc keep up to TRIM_THRESHOLD bytes of freed heap instead of returning it to
    the kernel, and serve blocks under MMAP_THRESHOLD from the heap; returns whether it did.

    By default glibc trims the top of its heap once more than twice the largest block freed
    so far lies free there. An eager training step frees its activations and gradients at
    the end of every step, so each step took its memory back from the kernel one page fault
    at a time: 1,700 faults per mlp_step, a third of the step's time on a VM, gone with this
    setting (the retained memory is the step's peak, reused by the next step). Skipped off
    glibc and when GRADC_RETAIN_HEAP=0.
    """
    if os.environ.get("GRADC_RETAIN_HEAP", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        libc = ctypes.CDLL(None)
    except (ValueError, OSError):  # no such confstr name, or no C library to load
        return False
    # both: setting either one alone freezes glibc's dynamic mmap threshold at 128 KiB
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


retain_freed_heap()


class Storage:
    __slots__ = ("_data", "_whole", "device", "dtype", "version", "__weakref__")

    def __init__(self, data, dev: device = CPU, dt: dtype | None = None):
        self._data = data  # a 1-D numpy or cupy array
        self._whole = None
        self.device = dev
        self.dtype = dt if dt is not None else from_numpy_dtype(data.dtype)
        self.version = 0

    @classmethod
    def of_array(cls, arr, dev: device, dt: dtype) -> Storage:
        """The storage of a fresh C-contiguous result array; flattened only when needed
        (most op results are never viewed, and flattening costs as much as the op)."""
        st = cls.__new__(cls)
        st._data, st._whole, st.device, st.dtype, st.version = None, arr, dev, dt, 0
        return st

    @property
    def data(self):
        """The flat 1-D buffer."""
        if self._data is None:
            self._data, self._whole = self._whole.reshape(-1), None
        return self._data

    @classmethod
    def empty(cls, n: int, dt: dtype, dev: device = CPU) -> Storage:
        return cls(array_module(dev).empty(n, dtype=dt.np), dev)

    def size(self) -> int:
        """Number of elements."""
        return self.data.shape[0]

    def __len__(self) -> int:
        return self.data.nbytes

    def nbytes(self) -> int:
        return self.data.nbytes

    def element_size(self) -> int:
        return self.data.itemsize

    def data_ptr(self) -> int:
        if self.device.type == "cpu":
            return self.data.__array_interface__["data"][0]
        return self.data.data.ptr

    def __repr__(self) -> str:
        return f"gradc.Storage(size={self.size()}, dtype={self.dtype}, device={self.device})"
