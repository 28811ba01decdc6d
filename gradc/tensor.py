"""`Tensor`: a strided view (offset, shape, strides) over a `Storage`, with autograd state.

A Tensor never owns memory. Views (`view`, `transpose`, basic indexing, ...) are new
Tensor objects over the same storage; only metadata differs. Strides and offsets are
counted in elements. Every op goes through `ops.dispatch.apply`, which records the
autograd node; the methods here are thin bindings of the functions in `gradc.ops`.
"""
from __future__ import annotations

import copy

import numpy as np

from . import dtypes
from .device import CPU, array_module, as_device, device, strided_view
from .size import Size, contiguous_strides
from .storage import Storage


class Tensor:
    # geometry lives in slots; autograd state defaults to these class attributes until set,
    # which keeps creating a tensor (done by every op) cheap
    __slots__ = ("_storage", "_offset", "_shape", "_stride", "_arr", "__dict__", "__weakref__")
    _requires_grad = False
    grad = None
    grad_fn = None
    _output_nr = 0
    _base = None
    _hooks = None
    _accumulator = None
    _view_version = None  # a view: the storage version when its history was recorded

    def __init__(self, *args, **kwargs):
        raise TypeError("use gradc.tensor(...) or a factory such as gradc.zeros(...) to make tensors")

    # ----------------------------------------------------------------- construction
    @classmethod
    def _new(cls, storage: Storage, offset: int, shape, stride, base=None) -> Tensor:
        t = object.__new__(cls)
        t._storage = storage
        t._offset = offset
        t._shape = shape if isinstance(shape, Size) else Size(shape)
        t._stride = stride if stride is None or type(stride) is tuple else tuple(stride)  # None: C order
        t._arr = None
        if base is not None:
            t._base = base
        return t

    @classmethod
    def _from_array(cls, xp, arr, dt: dtypes.dtype | None = None, dev: device = CPU) -> Tensor:
        """Wrap a freshly computed array (it becomes the storage; C order is enforced)."""
        if type(arr) is not xp.ndarray:
            arr = xp.asarray(arr)  # numpy reductions to 0-d return scalars
        if dt is not None and arr.dtype is not dt.np and arr.dtype != dt.np:
            arr = arr.astype(dt.np)
        if not arr.flags.c_contiguous:
            arr = xp.ascontiguousarray(arr)
        t = object.__new__(cls)
        t._storage = Storage.of_array(arr, dev, dt if dt is not None else dtypes.from_numpy_dtype(arr.dtype))
        t._offset = 0
        t._shape = Size(arr.shape)
        t._stride = None
        t._arr = arr
        return t

    def _make_view(self, shape, stride, offset: int) -> Tensor:
        t = Tensor._new(self._storage, offset, shape, stride,
                        self._base if self._base is not None else self)
        t._view_version = self._storage.version  # see ops.inplace.refresh_view
        return t

    def _alias(self) -> Tensor:
        """Same memory and metadata, no autograd history (what `detach` returns)."""
        t = Tensor._new(self._storage, self._offset, self._shape, self._stride, self._base)
        t._arr = self._arr
        return t

    def _array(self):
        """The data as an xp array; writing into it writes the storage."""
        arr = self._arr
        if arr is None:
            s = self._storage
            arr = self._arr = strided_view(array_module(s.device), s.data, self._offset,
                                           self._shape, self.stride())
        return arr

    # ----------------------------------------------------------------- metadata
    @property
    def shape(self) -> Size:
        return self._shape

    def size(self, dim: int | None = None):
        if dim is None:
            return self._shape
        from .ops.shapes import norm_dim

        return self._shape[norm_dim(dim, self.ndim)]

    def stride(self, dim: int | None = None):
        stride = self._stride
        if stride is None:
            stride = self._stride = contiguous_strides(self._shape)
        if dim is None:
            return stride
        from .ops.shapes import norm_dim

        return stride[norm_dim(dim, self.ndim)]

    @property
    def dtype(self) -> dtypes.dtype:
        return self._storage.dtype

    @property
    def device(self) -> device:
        return self._storage.device

    @property
    def is_cuda(self) -> bool:
        return self._storage.device.type == "cuda"

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    def numel(self) -> int:
        return self._shape.numel()

    nelement = numel

    def element_size(self) -> int:
        return self._storage.data.itemsize

    def storage_offset(self) -> int:
        return self._offset

    def untyped_storage(self) -> Storage:
        return self._storage

    storage = untyped_storage

    def data_ptr(self) -> int:
        return self._storage.data_ptr() + self._offset * self.element_size()

    def is_contiguous(self) -> bool:
        if self._stride is None or self.numel() == 0:  # empty: contiguous whatever the strides
            return True
        expected = 1
        for size, stride in zip(reversed(self._shape), reversed(self._stride)):
            if size != 1:
                if stride != expected:
                    return False
                expected *= size
        return True

    @property
    def _version(self) -> int:
        return self._storage.version

    def _bump_version(self) -> None:
        self._storage.version += 1

    def set_(self, source=None, storage_offset: int = 0, size=None, stride=None) -> Tensor:
        """Point this tensor at `source` (a Storage or a Tensor) with the given geometry."""
        from .autograd.grad_mode import is_grad_enabled

        if self._requires_grad and self.grad_fn is None and is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        if source is None:
            source = Storage.empty(0, self.dtype, self.device)
        if isinstance(source, Tensor):
            storage_offset, size, stride = source._offset, source._shape, source.stride()
            source = source._storage
        if size is None:
            size = (source.size(),)
        if stride is None:
            stride = contiguous_strides(size)
        self._storage, self._offset = source, storage_offset
        self._shape, self._stride, self._arr = Size(size), tuple(stride), None
        self._bump_version()
        return self

    # ----------------------------------------------------------------- autograd state
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables."
                               + ("" if value else " If you want to use a computed variable in a "
                                  "subgraph that doesn't require differentiation use "
                                  "var_no_grad = var.detach()."))
        if value and not (self.dtype.is_floating_point):
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if not (requires_grad and self.grad_fn is not None):  # on a non-leaf: a no-op, as PyTorch
            self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def data(self) -> Tensor:
        return self._alias()

    @data.setter
    def data(self, other: Tensor) -> None:
        self._storage, self._offset = other._storage, other._offset
        self._shape, self._stride, self._arr = other._shape, other._stride, None

    @property
    def retains_grad(self) -> bool:
        return self.grad_fn is not None and self._output_nr in (self.grad_fn._retain_grad or {})

    def __deepcopy__(self, memo: dict) -> Tensor:
        """A leaf over a copy of the storage, as PyTorch: only leaves can be deep-copied;
        tensors that shared a storage share its copy (through `memo`); `.grad` is copied."""
        if self.grad_fn is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the "
                               "deepcopy protocol at the moment.")
        if id(self) in memo:
            return memo[id(self)]
        source = self._storage
        storage = memo.get(id(source))
        if storage is None:
            storage = memo[id(source)] = Storage(source.data.copy(), source.device, source.dtype)
        base = copy.deepcopy(self._base, memo) if self._base is not None else None
        t = memo[id(self)] = Tensor._new(storage, self._offset, self._shape, self._stride, base)
        t._requires_grad = self._requires_grad
        if self.grad is not None:
            t.grad = copy.deepcopy(self.grad, memo)
        return t

    def __reduce_ex__(self, protocol):
        """Pickle the storage and geometry (views pickled together keep sharing memory);
        autograd history is not state."""
        return _rebuild_tensor, (self._storage.data if self.device.type == "cpu" else self._storage.data.get(),
                                 self._offset, tuple(self._shape), self.stride(), self._requires_grad)

    def detach(self) -> Tensor:
        return self._alias()

    def detach_(self) -> Tensor:
        if self._base is not None:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        self.grad_fn = None
        self._requires_grad = False
        return self

    def register_hook(self, hook):
        """`hook(grad)` runs whenever the gradient of this tensor is computed; it may
        return a replacement. Returns a handle whose `remove()` unregisters it."""
        from .autograd.node import HookDict, add_hook

        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            hooks = self.grad_fn.tensor_hooks(self._output_nr)
        else:
            if self._hooks is None:
                self._hooks = HookDict()
            from .autograd.node import accumulator

            hooks = self._hooks
            node = accumulator(self)
            if node._tensor_hooks is None:
                node._tensor_hooks = {}
            node._tensor_hooks[0] = hooks
        return add_hook(hooks, hook)

    def retain_grad(self) -> None:
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is not None:
            self.grad_fn.retain_grad_of(self._output_nr, self)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        from .autograd import backward

        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    # ----------------------------------------------------------------- conversion
    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The data as a numpy array sharing memory (CPU only, as PyTorch)."""
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        if self.device.type != "cpu":
            if not force:
                raise TypeError(f"can't convert {self.device} device type tensor to numpy. "
                                "Use Tensor.cpu() to copy the tensor to host memory first.")
            return self._array().get()
        return self._array()

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()  # as PyTorch: refused when requires_grad (detach() first)
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self._array().reshape(()).item()

    def tolist(self):
        return self.detach()._host().tolist()

    def _host(self) -> np.ndarray:
        arr = self._array()
        return arr if isinstance(arr, np.ndarray) else arr.get()

    def __dlpack__(self, stream=None, **kwargs):
        if self._requires_grad:
            raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")
        # forward max_version etc.: a versioned capsule lets consumers (numpy) import it writable
        return self._array().__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self):
        return self._array().__dlpack_device__()

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        values = self.detach()._host()
        # as PyTorch prints: 4 decimals, none when every value is integral ("2., 3.")
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        integral = values.dtype.kind != "f" or not finite.size or bool((finite == np.round(finite)).all())
        body = np.array2string(values, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3,
                               precision=4, floatmode="maxprec" if integral else "fixed")
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_) or self.numel() == 0:
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # ----------------------------------------------------------------- device / dtype
    def to(self, *args, **kwargs) -> Tensor:
        """`to(dtype)`, `to(device, dtype=None)`, `to(tensor)`, as PyTorch; copies only if needed."""
        dev, dt, copy = _parse_to(*args, **kwargs)
        out = self
        if dt is not None and dt is not self.dtype:
            out = ops.cast(out, dtype=dt)
        if dev is not None and dev != out.device:
            out = ops.to_device(out, device=dev)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        return self.to(CPU)

    def cuda(self, device=None) -> Tensor:
        return self.to(as_device(device if device is not None else "cuda"))

    def float(self) -> Tensor:
        return self.to(dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtypes.float64)

    def half(self) -> Tensor:
        return self.to(dtypes.float16)

    def long(self) -> Tensor:
        return self.to(dtypes.int64)

    def int(self) -> Tensor:
        return self.to(dtypes.int32)

    def bool(self) -> Tensor:
        return self.to(dtypes.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False) -> Tensor:
        from .factories import tensor

        return tensor(data, dtype=dtype or self.dtype, device=device or self.device,
                      requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None) -> Tensor:
        from .factories import zeros

        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device)

    def new_ones(self, *size, dtype=None, device=None) -> Tensor:
        from .factories import ones

        return ones(*size, dtype=dtype or self.dtype, device=device or self.device)

    def new_empty(self, *size, dtype=None, device=None) -> Tensor:
        from .factories import empty

        return empty(*size, dtype=dtype or self.dtype, device=device or self.device)

    def new_full(self, size, fill_value, dtype=None, device=None) -> Tensor:
        from .factories import full

        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device)

    # ----------------------------------------------------------------- shape methods taking *sizes
    def view(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], dtypes.dtype):
            raise NotImplementedError("view(dtype) is not supported")
        return ops.view(self, _sizes(shape))

    def reshape(self, *shape) -> Tensor:
        return ops.reshape(self, _sizes(shape))

    def view_as(self, other: Tensor) -> Tensor:
        return ops.view(self, other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return ops.reshape(self, other.shape)

    def expand(self, *sizes) -> Tensor:
        return ops.expand(self, _sizes(sizes))

    def expand_as(self, other: Tensor) -> Tensor:
        return ops.expand(self, other.shape)

    def permute(self, *dims) -> Tensor:
        return ops.permute(self, _sizes(dims))

    def repeat(self, *sizes) -> Tensor:
        return ops.repeat(self, _sizes(sizes))

    def flip(self, *dims) -> Tensor:
        return ops.flip(self, _sizes(dims))

    @property
    def T(self) -> Tensor:
        return ops.permute(self, tuple(range(self.ndim - 1, -1, -1)))

    @property
    def mT(self) -> Tensor:
        ndim = len(self._shape)
        if ndim == 2:  # a linear layer's weight, forward and backward: the permutation directly
            return ops.permute(self, (1, 0))
        if ndim < 2:
            raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. Got "
                               f"{ndim}-D tensor.")
        return ops.transpose(self, -2, -1)

    def t(self) -> Tensor:
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self.T

    def t_(self) -> Tensor:
        t = self.t()  # (checks the leaf rule before anything changes)
        if self._requires_grad and self.grad_fn is None and t.grad_fn is not None:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        self.set_(t)
        if t.grad_fn is not None:  # the history becomes the transpose's, as PyTorch's TBackward
            self.grad_fn, self._output_nr = t.grad_fn, t._output_nr
        return self

    def __getitem__(self, key) -> Tensor:
        return ops.getitem(self, key)

    def __setitem__(self, key, value) -> None:
        ops.setitem(self, key, value)


def _rebuild_tensor(data: np.ndarray, offset: int, shape: tuple, stride: tuple, requires_grad: bool) -> Tensor:
    t = Tensor._new(Storage(data), offset, shape, stride)
    t._requires_grad = requires_grad
    return t


def _sizes(args) -> tuple:
    """Accept both `f(2, 3)` and `f((2, 3))` / `f([2, 3])` / `f(gradc.Size(...))`."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    return tuple(a if isinstance(a, int) else int(a) for a in args)  # int subclasses (sizes) kept


def _parse_to(*args, **kwargs):
    """(device, dtype, copy) from the overloads of `Tensor.to` / `Module.to`."""
    dev = kwargs.pop("device", None)
    dt = kwargs.pop("dtype", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dev, dt = a.device, a.dtype
        elif isinstance(a, dtypes.dtype) or a in (float, int, bool):
            dt = a
        elif isinstance(a, (str, device)):
            dev = a
        elif isinstance(a, bool):
            continue
        else:
            raise TypeError(f"to() received an invalid combination of arguments: {a!r}")
    return (as_device(dev) if dev is not None else None,
            dtypes.to_dtype(dt) if dt is not None else None, copy)


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


from . import ops  # noqa: E402  (ops need the Tensor class defined above)
