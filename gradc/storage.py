"""Storage: the flat, typed buffer that tensors are views of.

A Storage owns memory; a Tensor never does. Every tensor is (storage, offset, shape,
strides), so views are free and in-place writes through any view are seen by all the
others. The storage also carries the version counter: an in-place op on any tensor
over this storage bumps it, which is what lets autograd notice that a tensor it saved
was overwritten.
"""
from __future__ import annotations

from .device import CPU, array_module, device
from .dtypes import dtype, from_numpy_dtype


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
