"""View ops: new (shape, strides, offset) over the same storage, never a copy.

The primitives are `view`, `permute`, `expand`, `basic_index` (ints, slices, None,
Ellipsis) and `as_strided`; `strided_scatter` is the out-of-place inverse that the
backward of indexing and autograd through in-place writes to views need. Everything
else (transpose, squeeze, select, split, ...) is composed from them.
"""
from __future__ import annotations

from ..device import array_module
from ..size import Size, contiguous_strides
from ..tensor import Tensor
from .dispatch import apply
from .registry import defop
from .shapes import fmt, norm_dim, numel


# ---------------------------------------------------------------- view / reshape
def infer_shape(shape, n: int, op: str = "view") -> Size:
    """Resolve a single -1 in `shape` for a tensor of `n` elements."""
    shape = list(shape)
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    for s in shape:
        if s < -1:
            raise RuntimeError(f"invalid shape dimension {s}")
    known = numel(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 and n == 0:
            raise RuntimeError(f"cannot reshape tensor of 0 elements into shape {fmt(shape)} because the "
                               "unspecified dimension size -1 can be any value and is ambiguous")
        if known == 0 or n % known:
            raise RuntimeError(f"shape '{fmt(shape)}' is invalid for input of size {n}")
        shape[shape.index(-1)] = n // known
    elif known != n:
        raise RuntimeError(f"shape '{fmt(shape)}' is invalid for input of size {n}")
    return Size(shape)


def view_strides(old_shape, old_stride, new_shape):
    """Strides that make `new_shape` a view of (old_shape, old_stride), or None.

    Dims of the old shape are grouped into chunks that are contiguous with each
    other; a new dim may not span two chunks (PyTorch's rule).
    """
    if not old_shape or numel(old_shape) == 0:
        return contiguous_strides(new_shape)
    new_stride = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_stride = old_stride[-1]
    tensor_numel = view_numel = 1
    for d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[d]
        if d == 0 or (old_shape[d - 1] != 1 and old_stride[d - 1] != tensor_numel * chunk_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_stride[view_d] = view_numel * chunk_stride
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                chunk_stride = old_stride[d - 1]
                tensor_numel = view_numel = 1
    return tuple(new_stride) if view_d == -1 else None


def _view_meta(x, shape):
    return ((infer_shape(shape, x.numel()), x.dtype),), None


def _view_geometry(x, shape):
    shape = infer_shape(shape, x.numel())
    stride = view_strides(x.shape, x.stride(), shape)
    if stride is None:
        raise RuntimeError("view size is not compatible with input tensor's size and stride (at "
                           "least one dimension spans across two contiguous subspaces). Use "
                           ".reshape(...) instead.")
    return shape, stride, x._offset


VIEW = defop("view", meta=_view_meta, view=_view_geometry, kind="view",
             backward=lambda ctx, g: g.reshape(ctx.input_shape(0)))


def view(input, shape) -> Tensor:
    return apply(VIEW, input, shape=tuple(shape))


def reshape(input, shape) -> Tensor:
    """A view when the strides allow one, else a contiguous copy (as PyTorch)."""
    shape = infer_shape(shape, input.numel(), "reshape")
    if shape == input.shape:
        return apply(VIEW, input, shape=shape)
    if view_strides(input.shape, input.stride(), shape) is None:
        out = apply(VIEW, clone(input), shape=shape)
        out._base = out._view_version = None  # owns the copy (PyTorch's _unsafe_view): not a view
        return out
    return apply(VIEW, input, shape=shape)


# ---------------------------------------------------------------- permute / expand
def _permute_meta(x, dims):
    sizes = tuple(x._shape)  # a plain tuple: Size's __getitem__ is Python code (transposes are hot)
    ndim = len(sizes)
    if len(dims) != ndim:
        raise RuntimeError(f"permute(): number of dims don't match in permute: input.dim() = "
                           f"{ndim} is not equal to len(dims) = {len(dims)}")
    dims = [d if 0 <= d < ndim else norm_dim(d, ndim, "permute") for d in dims]
    if len(set(dims)) != ndim:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return ((Size([sizes[d] for d in dims]), x._storage.dtype),), None


def _permute_geometry(x, dims):
    sizes, strides = tuple(x._shape), x.stride()
    dims = [d % len(sizes) for d in dims] if sizes else []
    return Size([sizes[d] for d in dims]), tuple([strides[d] for d in dims]), x._offset


def _permute_bw(ctx, g):
    dims = [d % g.ndim for d in ctx.attrs["dims"]] if g.ndim else []
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return permute(g, inverse)


PERMUTE = defop("permute", meta=_permute_meta, view=_permute_geometry, backward=_permute_bw,
                kind="view")


def permute(input, dims) -> Tensor:
    return apply(PERMUTE, input, dims=tuple(dims))


def transpose(input, dim0: int, dim1: int) -> Tensor:
    ndim = len(input._shape)
    if ndim == 0:
        return view(input, ())
    d0, d1 = norm_dim(dim0, ndim, "transpose"), norm_dim(dim1, ndim, "transpose")
    dims = list(range(ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(input, dims)


swapaxes = swapdims = transpose


def movedim(input, source, destination) -> Tensor:
    """Move dim(s) `source` to position(s) `destination` (ints or sequences, as PyTorch)."""
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({src} dims) should "
                           f"contain the same number of dims as destination ({dst} dims)")
    src = [norm_dim(d, input.ndim, "movedim") for d in src]
    dst = [norm_dim(d, input.ndim, "movedim") for d in dst]
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise RuntimeError("movedim: repeated dim in `source` or `destination`")
    dims = [None] * input.ndim
    for s_, d_ in zip(src, dst):
        dims[d_] = s_
    rest = iter(d for d in range(input.ndim) if d not in src)
    return permute(input, [d if d is not None else next(rest) for d in dims])


def _expand_geometry(x, sizes):
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                           f"or equal to the number of dimensions in the tensor ({x.ndim})")
    shape, stride = [], []
    for i, want in enumerate(sizes):
        if i < lead:
            if want < 0:
                raise RuntimeError(f"expand: the expanded size of the tensor ({want}) isn't allowed "
                                   "in a leading, non-existing dimension 0")
            shape.append(want)
            stride.append(0)
            continue
        have, st = x.shape[i - lead], x.stride()[i - lead]
        if want == -1 or want == have:
            shape.append(have)
            stride.append(st)
        elif have == 1:
            shape.append(want)
            stride.append(0)
        else:
            raise RuntimeError(f"The expanded size of the tensor ({want}) must match the existing size "
                               f"({have}) at non-singleton dimension {i}.  Target sizes: {fmt(sizes)}.  "
                               f"Tensor sizes: {fmt(x.shape)}")
    return Size(shape), tuple(stride), x._offset


EXPAND = defop("expand", meta=lambda x, sizes: (((_expand_geometry(x, sizes)[0], x.dtype),), None),
               view=_expand_geometry, backward=lambda ctx, g: g, kind="view")


def expand(input, sizes) -> Tensor:
    return apply(EXPAND, input, sizes=tuple(sizes))


def broadcast_to(input, shape) -> Tensor:
    return expand(input, shape)


# ---------------------------------------------------------------- shape sugar over view
def unsqueeze(input, dim: int) -> Tensor:
    # as basic indexing with None (PyTorch's unsqueeze strides; the other dims keep theirs)
    d = norm_dim(dim, input.ndim + 1, "unsqueeze")
    return basic_index(input, (slice(None),) * d + (None,))


def squeeze(input, dim=None) -> Tensor:
    # index 0 at each squeezed size-1 dim: drops it and keeps every other stride (as PyTorch)
    if dim is None:
        dims = range(input.ndim)
    else:
        dims = [norm_dim(d, input.ndim, "squeeze") for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
    return basic_index(input, tuple(0 if (i in dims and s == 1) else slice(None)
                                    for i, s in enumerate(input.shape)))


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if input.ndim == 0:
        return reshape(input, (1,))
    s, e = norm_dim(start_dim, input.ndim, "flatten"), norm_dim(end_dim, input.ndim, "flatten")
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input.shape[:s] + (numel(input.shape[s:e + 1]),) + input.shape[e + 1:]
    return reshape(input, shape)


def unflatten(input, dim: int, sizes) -> Tensor:
    d = norm_dim(dim, input.ndim, "unflatten")
    sizes = infer_shape(sizes, input.shape[d], "unflatten")
    return view(input, input.shape[:d] + tuple(sizes) + input.shape[d + 1:])


# ---------------------------------------------------------------- basic indexing
def index_geometry(shape, stride, offset: int, key: tuple):
    """(shape, stride, offset) of `t[key]` for a key of ints, slices, None and Ellipsis."""
    shape = tuple(shape)  # plain tuple: Size's Python-level __getitem__ is slow in this loop
    consuming = sum(1 for k in key if k is not None and k is not Ellipsis)
    if consuming and not shape:
        raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
                         "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number")
    if key.count(Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if consuming > len(shape):
        raise IndexError(f"too many indices for tensor of dimension {len(shape)}")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - consuming) + key[i + 1:]
    out_shape, out_stride, d = [], [], 0
    for k in key:
        if k is None:  # PyTorch's unsqueeze stride: that of the next input dim spanned, or 1
            out_shape.append(1)
            out_stride.append(shape[d] * stride[d] if d < len(shape) else 1)
        elif isinstance(k, slice):
            if k.start is None and k.stop is None and k.step is None:  # `:` (squeeze, unsqueeze, ...)
                out_shape.append(shape[d])
                out_stride.append(stride[d])
                d += 1
                continue
            start, stop, step = k.indices(shape[d])
            if step <= 0:
                raise ValueError("step must be greater than zero")
            n = max(0, (stop - start + step - 1) // step)
            offset += start * stride[d]  # even when empty, as PyTorch
            out_shape.append(n)
            out_stride.append(stride[d] * step)
            d += 1
        else:
            size = shape[d]
            if not -size <= k < size:
                raise IndexError(f"index {k} is out of bounds for dimension {d} with size {size}")
            offset += (k % size) * stride[d]
            d += 1
    out_shape.extend(shape[d:])
    out_stride.extend(stride[d:])
    return Size(out_shape), tuple(out_stride), offset


def _basic_index_bw(ctx, g):
    shape = ctx.input_shape(0)
    size, stride, offset = index_geometry(shape, contiguous_strides(shape), 0, ctx.attrs["key"])
    return strided_scatter(_zeros_like_view(g, shape), g, size, stride, offset)


def _zeros_like_view(g: Tensor, shape) -> Tensor:
    """Zeros of `shape` as one broadcast zero: strided_scatter fills its output from it
    instead of copying a zeros array (the gradient of a slice is mostly zeros)."""
    return g.new_zeros(()).expand(tuple(shape))


BASIC_INDEX = defop(
    "basic_index",
    meta=lambda x, key: (((index_geometry(x.shape, contiguous_strides(x.shape), 0, key)[0], x.dtype),), None),
    view=lambda x, key: index_geometry(x.shape, x.stride(), x._offset, key),
    backward=_basic_index_bw, kind="view")


def basic_index(input, key: tuple) -> Tensor:
    return apply(BASIC_INDEX, input, key=key)


def select(input, dim: int, index: int) -> Tensor:
    if input.ndim == 0:
        raise IndexError("select() cannot be applied to a 0-dim tensor.")
    d = norm_dim(dim, input.ndim, "select")
    if not -input.shape[d] <= int(index) < input.shape[d]:
        raise IndexError(f"select(): index {int(index)} out of range for tensor of size {fmt(input.shape)} "
                         f"at dimension {d}")
    return basic_index(input, (slice(None),) * d + (int(index),))


def narrow(input, dim: int, start: int, length: int) -> Tensor:
    d = norm_dim(dim, input.ndim, "narrow")
    size = input.shape[d]
    start = int(start) + size if int(start) < 0 else int(start)
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    if not (0 <= start <= size and 0 <= length and start + length <= size):
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
    return basic_index(input, (slice(None),) * d + (slice(start, start + length),))


def unbind(input, dim: int = 0) -> tuple:
    if input.ndim == 0:
        raise IndexError("Dimension specified as 0 but tensor has no dimensions")
    d = norm_dim(dim, input.ndim, "unbind")
    return tuple(select(input, d, i) for i in range(input.shape[d]))


def split(input, split_size_or_sections, dim: int = 0) -> tuple:
    d = norm_dim(dim, input.ndim, "split")
    size = input.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step < 0 or (step == 0 and size):
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of "
                               f"{size}" if step == 0 else f"split expects split_size be non-negative, but "
                               f"got split_size={step}")
        sections = [min(step, size - i) for i in range(0, size, step)] if size else [0]
    else:
        sections = list(split_size_or_sections)
        if sum(sections) != size:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input "
                               f"tensor's size at dimension {d}), but got split_sizes={sections}")
    out, start = [], 0
    for n in sections:
        out.append(narrow(input, d, start, n))
        start += n
    return tuple(out)


def chunk(input, chunks: int, dim: int = 0) -> tuple:
    d = norm_dim(dim, input.ndim, "chunk")
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    size = input.shape[d]
    return split(input, max(1, -(-size // chunks)), d)


# ---------------------------------------------------------------- as_strided and its inverse
def _as_strided_geometry(x, size, stride, offset):
    return Size(size), tuple(stride), x._offset + offset


def _as_strided_bw(ctx, g):
    import numpy as np

    a = ctx.attrs
    shape = ctx.input_shape(0)
    base = g.new_zeros(shape)
    idx = np.full((), a["offset"], dtype=np.int64)
    for i, (n, st) in enumerate(zip(a["size"], a["stride"])):
        idx = idx + np.arange(n, dtype=np.int64).reshape((n,) + (1,) * (len(a["size"]) - i - 1)) * st
    if np.unique(idx).size == idx.size:
        return strided_scatter(base, g, a["size"], a["stride"], a["offset"])
    # overlapping windows: an element read at several places gets the sum of their gradients
    from ..factories import tensor
    from .indexing import scatter_add

    index = tensor(idx.reshape(-1), device=g.device)
    return view(scatter_add(view(base, (-1,)), 0, index, g.reshape(-1)), shape)


AS_STRIDED = defop("as_strided", meta=lambda x, size, stride, offset: (((Size(size), x.dtype),), None),
                   view=_as_strided_geometry, backward=_as_strided_bw, kind="view")


def as_strided(input, size, stride, storage_offset=None) -> Tensor:
    """PyTorch's as_strided; with autograd only on a contiguous input (the gradient is
    laid out in the input's own element order)."""
    offset = (input._offset if storage_offset is None else storage_offset) - input._offset
    if input.requires_grad and not input.is_contiguous():
        raise RuntimeError("as_strided: autograd through a non-contiguous input is not supported; "
                           "call .contiguous() first")
    return apply(AS_STRIDED, input, size=tuple(size), stride=tuple(stride), offset=offset)


def _strided_scatter_kernel(xp, base, src, size, stride, offset):
    from ..device import strided_view

    if base.size and not any(base.strides):  # a broadcast value (the zeros of a slice's gradient): fill, no copy
        out = xp.empty(base.shape, base.dtype)
        out.fill(base.reshape(-1)[0])
    else:
        out = xp.array(base, copy=True, order="C")
    strided_view(xp, out.reshape(-1), offset, tuple(size), tuple(stride))[...] = src
    return out


def _strided_scatter_bw(ctx, g):
    a = ctx.attrs
    need_base, need_src = ctx.needs_input_grad
    gb = strided_scatter(g, 0.0, a["size"], a["stride"], a["offset"]) if need_base else None
    gs = apply(AS_STRIDED, g.contiguous(), size=a["size"], stride=a["stride"],
               offset=a["offset"]) if need_src else None
    return gb, gs


STRIDED_SCATTER = defop(
    "strided_scatter",
    meta=lambda base, src, size, stride, offset: (((base.shape, base.dtype),), None),
    kernel=_strided_scatter_kernel, backward=_strided_scatter_bw, kind="other")


def strided_scatter(base, src, size, stride, offset: int = 0) -> Tensor:
    """`base` with the region (size, stride, offset) of its element order replaced by `src`."""
    return apply(STRIDED_SCATTER, base, src, size=tuple(size), stride=tuple(stride), offset=offset)


# ---------------------------------------------------------------- copies and conversions
CLONE = defop("clone", meta=lambda x: (((x.shape, x.dtype),), None),
              kernel=lambda xp, x: xp.array(x, copy=True, order="C"),
              backward=lambda ctx, g: g, kind="pointwise", lowering="{0}")
CAST = defop("cast", meta=lambda x, dtype: (((x.shape, dtype),), None),
             kernel=lambda xp, x, dtype: x.astype(dtype.np),
             backward=lambda ctx, g: g, kind="pointwise", lowering="{0}")


def _to_device_kernel(xp, x, device, source):
    if device.type == "cpu":
        return x.get() if hasattr(x, "get") else x.copy()
    cupy = array_module(device)  # a clear error when cupy or a GPU is missing
    with cupy.cuda.Device(device.index):
        return cupy.asarray(x)


TO_DEVICE = defop("to_device", meta=lambda x, device, source: (((x.shape, x.dtype, device),), None),
                  kernel=_to_device_kernel, kind="other",
                  backward=lambda ctx, g: to_device(g, ctx.attrs["source"]))


def clone(input, *, memory_format=None) -> Tensor:
    return apply(CLONE, input)


def contiguous(input, memory_format=None) -> Tensor:
    return input if input.is_contiguous() else clone(input)


def cast(input, dtype) -> Tensor:
    return apply(CAST, input, dtype=dtype)


def to_device(input, device) -> Tensor:
    return apply(TO_DEVICE, input, device=device, source=input.device)
