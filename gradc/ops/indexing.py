"""Indexing and data movement: advanced indexing, gather/scatter, cat, tril/triu, flip.

`getitem` splits a key into its basic part (a view, see views.py) and its advanced
part (index tensors and masks), which copies, as in PyTorch. Index tensors travel as
op inputs (so the compiler sees them); the rest of the key is a template attribute.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..size import Size, contiguous_strides
from ..tensor import Tensor
from .dispatch import apply
from .registry import defop
from .shapes import fmt, norm_dim, numel
from .views import basic_index, narrow, strided_scatter, unsqueeze, view

INDEX_SLOT = object()  # marks where an index tensor goes in a key template


# ---------------------------------------------------------------- advanced indexing
def _normalize_key(key) -> tuple:
    if isinstance(key, list) and len(key) < 32 and any(
            isinstance(k, (Tensor, list, tuple, np.ndarray, slice)) or k is None or k is Ellipsis for k in key):
        key = tuple(key)  # PyTorch (and old numpy): x[[[0, 1], [1, 0]]] means x[[0, 1], [1, 0]]
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, Tensor) and k.dtype is dtypes.uint8:
            k = k.to(dtypes.bool_)  # a uint8 index tensor is a mask (deprecated in PyTorch, still so)
        if isinstance(k, Tensor) and k.ndim == 0 and not k.dtype.is_floating_point and k.dtype is not dtypes.bool_:
            out.append(int(k.item()))
        elif isinstance(k, (list, np.ndarray, bool)):
            from ..factories import tensor

            out.append(tensor(k))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            out.append(int(k))
        elif k is None or k is Ellipsis or isinstance(k, (slice, Tensor)):
            out.append(k)
        else:
            raise IndexError("only integers, slices (`:`), ellipsis (`...`), None and long or byte "
                             f"Variables are valid indices (got {type(k).__name__})")
    return tuple(out)


def _split_ints(key: tuple, ndim: int):
    """PyTorch applies ints (with slices, None, ...) as a view before the index tensors, so an
    int never counts as an advanced index: (view key, key over that view) when `key` mixes them."""
    if not any(isinstance(k, int) for k in key):
        return None
    first, then = [], []
    for k in key:
        if isinstance(k, Tensor):
            first.extend([slice(None)] * (k.ndim if k.dtype is dtypes.bool_ else 1))
            then.append(k)
        elif isinstance(k, int):
            first.append(k)
        else:
            first.append(k)
            then.append(Ellipsis if k is Ellipsis else slice(None))
    return tuple(first), tuple(then)


def _check_masks(shape, key: tuple) -> None:
    """PyTorch's error for a boolean mask whose shape differs from the dims it covers."""
    consuming = sum(k.ndim if isinstance(k, Tensor) and k.dtype is dtypes.bool_ else 1
                    for k in key if k is not None and k is not Ellipsis)
    d = 0
    for k in key:
        if k is Ellipsis:
            d += max(len(shape) - consuming, 0)
        elif isinstance(k, Tensor) and k.dtype is dtypes.bool_:
            for j, n in enumerate(k.shape):
                if d + j >= len(shape) or shape[d + j] != n:
                    raise IndexError(f"The shape of the mask {fmt(k.shape)} at index {j} does not match "
                                     f"the shape of the indexed tensor {fmt(shape)} at index {d + j}")
            d += k.ndim
        elif k is not None:
            d += 1


def _template(key: tuple):
    """(template, index tensors): tensors replaced by a slot marker."""
    return tuple(INDEX_SLOT if isinstance(k, Tensor) else k for k in key), [k for k in key if isinstance(k, Tensor)]


def _fill(template, arrays):
    it = iter(arrays)
    return tuple(next(it) if k is INDEX_SLOT else k for k in template)


def _index_meta(x, *indices, template):
    """Result shape of advanced indexing; None when a boolean mask makes it data-dependent."""
    for t in indices:
        if t.dtype.is_floating_point:
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    if any(t.dtype is dtypes.bool_ for t in indices):
        return ((None, x.dtype),), None
    full = slice(None)
    if len(indices) == 1 and all(k is INDEX_SLOT or (isinstance(k, slice) and k == full) for k in template) \
            and len(template) <= x.ndim:  # one index tensor among full slices (embedding, index_select):
        pos = template.index(INDEX_SLOT)  # built from the sizes themselves, so symbolic ones carry on
        return ((Size(x.shape[:pos] + tuple(indices[0].shape) + x.shape[pos + 1:]), x.dtype),), None
    probe = np.broadcast_to(np.False_, x.shape)
    dummies = [np.broadcast_to(np.int64(0), t.shape) for t in indices]
    return ((probe[_fill(template, dummies)].shape, x.dtype),), None


def scatter_add_at(xp, out, key, values) -> None:
    """numpy's `np.add.at(out, key, values)` (unbuffered: repeated indices all add) on any
    array module. cupy has `cupy.add.at` from v12 and `cupyx.scatter_add` before; both use
    CUDA's atomicAdd, which has no bool or 8/16-bit integer form: those accumulate in int64
    and wrap back, as numpy's own modular arithmetic (and logical or, for bool) does."""
    if xp is np:
        np.add.at(out, key, values)
        return
    small = out.dtype.kind in "biu" and out.dtype.itemsize < 4
    work = out.astype(xp.int64) if small else out
    values = xp.asarray(values, dtype=work.dtype)
    at = getattr(xp.add, "at", None)
    if at is not None:
        at(work, key, values)
    else:
        import cupyx

        cupyx.scatter_add(work, key, values)
    if small:
        out[...] = work.astype(out.dtype)


def _is_mask(k) -> bool:
    return getattr(getattr(k, "dtype", None), "kind", None) == "b"


def _check_bounds(xp, shape, key) -> None:
    """numpy raises IndexError for an out-of-range integer index array; cupy silently wraps it
    around. On other array modules, raise numpy's error (with "dimension") before indexing."""
    if xp is np:
        return
    consuming = sum(k.ndim if _is_mask(k) else 1
                    for k in key if k is not None and k is not Ellipsis)
    d = 0
    for k in key:
        if k is Ellipsis:
            d += max(len(shape) - consuming, 0)
        elif k is None:
            continue
        elif _is_mask(k):
            d += k.ndim
        else:
            if hasattr(k, "dtype") and k.size and d < len(shape):
                n = shape[d]
                lo, hi = int(k.min()), int(k.max())
                if lo < -n or hi >= n:
                    raise IndexError(f"index {lo if lo < -n else hi} is out of bounds for dimension {d} "
                                     f"with size {n}")
            d += 1


def _index_kernel(xp, x, *indices, template):
    try:
        key = _fill(template, indices)
        _check_bounds(xp, x.shape, key)
        return x[key]
    except IndexError as e:
        raise IndexError(str(e).replace("axis", "dimension")) from None


def _index_bw(ctx, g):
    indices = ctx.inputs[1:]
    base = g.new_zeros(ctx.input_shape(0))
    return (index_put(base, g, *indices, template=ctx.attrs["template"], accumulate=True),) + (None,) * len(indices)


INDEX = defop("index", meta=_index_meta, kernel=_index_kernel, backward=_index_bw, saves="inputs")


def _index_put_meta(x, values, *indices, template, accumulate):
    return ((x.shape, x.dtype),), None


def _index_put_kernel(xp, x, values, *indices, template, accumulate):
    out = xp.array(x, copy=True, order="C")
    key = _fill(template, indices)
    try:
        _check_bounds(xp, out.shape, key)
        if accumulate:
            scatter_add_at(xp, out, key, values)
        else:
            out[key] = values
    except IndexError as e:
        raise IndexError(str(e).replace("axis", "dimension")) from None
    except ValueError as e:  # numpy: "shape mismatch: value array of shape (3,4) could not be ..."
        target = out[key].shape
        raise RuntimeError(f"shape mismatch: value tensor of shape {fmt(getattr(values, 'shape', ()))} "
                           f"cannot be broadcast to indexing result of shape {fmt(target)}") from e
    return out


def _index_put_bw(ctx, g):
    _, values, *indices = ctx.inputs
    template, accumulate = ctx.attrs["template"], ctx.attrs["accumulate"]
    need_x, need_v = ctx.needs_input_grad[:2]
    gx = (g if accumulate else index_put(g, 0.0, *indices, template=template, accumulate=False)) if need_x else None
    gv = apply(INDEX, g, *indices, template=template) if need_v else None
    return (gx, gv) + (None,) * len(indices)


INDEX_PUT = defop("index_put", meta=_index_put_meta, kernel=_index_put_kernel, backward=_index_put_bw,
                  saves="inputs")


def index_put(input, values, *indices, template, accumulate: bool = False) -> Tensor:
    return apply(INDEX_PUT, input, values, *indices, template=template, accumulate=accumulate)


def getitem(input: Tensor, key) -> Tensor:
    key = _normalize_key(key)
    if not any(isinstance(k, Tensor) for k in key):
        return basic_index(input, key)
    split = _split_ints(key, input.ndim)
    if split is not None:
        return getitem(basic_index(input, split[0]), split[1])
    _check_masks(input.shape, key)
    template, indices = _template(key)
    return apply(INDEX, input, *indices, template=template)


def setitem(input: Tensor, key, value) -> None:
    from .inplace import check_overlap, copy_, inplace

    key = _normalize_key(key)
    if not any(isinstance(k, Tensor) for k in key):
        target = basic_index(input, key)
        check_overlap(target)  # (copy_ of a scalar is a fill_, which allows it)
        copy_(target, _strip_leading_ones(value))
        return
    split = _split_ints(key, input.ndim)
    if split is not None:
        setitem(basic_index(input, split[0]), split[1], value)
        return
    _check_masks(input.shape, key)
    template, indices = _template(key)
    if isinstance(value, Tensor) and value.dtype is not input.dtype:
        value = value.to(input.dtype)
    value = _strip_leading_ones(value)
    inplace(input, lambda x: index_put(x, value, *indices, template=template))


def _strip_leading_ones(value):
    """PyTorch drops a value's leading size-1 dims before assigning it (x[0] = ones(1, n) works)."""
    if isinstance(value, Tensor) and value.ndim and value.shape[0] == 1:
        n = 0
        while n < value.ndim and value.shape[n] == 1:
            n += 1
        return view(value, value.shape[n:])
    return value


def index_select(input, dim: int, index: Tensor) -> Tensor:
    d = norm_dim(dim, input.ndim, "index_select")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    if index.dtype not in (dtypes.int32, dtypes.int64):
        raise RuntimeError(f"index_select(): Expected dtype int32 or int64 for index, but got {index.dtype}")
    return getitem(input, (slice(None),) * d + (index.reshape(-1),))


def masked_fill(input, mask: Tensor, value) -> Tensor:
    from .pointwise import where

    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor "
                           f"with {value.ndim} dimension(s).")
    if mask.dtype is not dtypes.bool_:
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {mask.dtype}")
    out = where(mask, value, input)
    if out.shape != input.shape:
        raise RuntimeError(f"masked_fill: mask of shape {fmt(mask.shape)} cannot be broadcast to the "
                           f"input's shape {fmt(input.shape)}")
    return out if out.dtype is input.dtype else out.to(input.dtype)


# ---------------------------------------------------------------- class-index targets
def _class_index_meta(target, ignore_index, n_classes):
    if target.dtype is not dtypes.int64:
        raise RuntimeError(f"class_index(): expected an int64 target, but got {target.dtype}")
    return ((target.shape, dtypes.int64),), None


def _class_index_kernel(xp, target, ignore_index, n_classes):
    ignored = target == ignore_index
    bad = ((target < 0) | (target >= n_classes)) & ~ignored
    if bad.any():
        raise IndexError(f"Target {int(target[bad].reshape(-1)[0])} is out of bounds.")
    return xp.where(ignored, 0, target)


# The class-index targets of nll_loss/cross_entropy, checked and made safe to gather with
# (ignored targets become 0). An op rather than host code so that the check runs in its
# kernel, where eager and compiled code (an extern step) both raise torch's IndexError.
CLASS_INDEX = defop("class_index", meta=_class_index_meta, kernel=_class_index_kernel)


def class_index(target: Tensor, ignore_index: int, n_classes: int) -> Tensor:
    """`target` (int64) with `ignore_index` entries as 0; IndexError for any other target
    outside [0, n_classes), naming the first one."""
    return apply(CLASS_INDEX, target, ignore_index=int(ignore_index), n_classes=int(n_classes))


# ---------------------------------------------------------------- gather / scatter_add
def _gather_meta(x, index, dim):
    d = norm_dim(dim, x.ndim, "gather")
    if index.dtype not in (dtypes.int64, dtypes.int32):  # PyTorch 2.x takes int32 too
        raise RuntimeError(f"gather(): Expected dtype int32/int64 for index, but got {index.dtype}")
    if index.ndim != x.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    for i, (a, b) in enumerate(zip(index.shape, x.shape)):
        if i != d and a > b:
            raise RuntimeError(f"Size does not match at dimension {i} expected index {fmt(index.shape)} "
                               f"to be smaller than self {fmt(x.shape)} apart from dimension {d}")
    return ((index.shape, x.dtype),), None


def _along(xp, index, dim):
    """Index arrays that address `index`'s positions, with `index` itself along `dim` (grids
    from `xp`, so that they live on `index`'s device): aranges shaped as `xp.ogrid` would
    make them, without ogrid's 20 us of Python."""
    ndim = index.ndim
    return tuple(index if i == dim else xp.arange(n).reshape((1,) * i + (n,) + (1,) * (ndim - i - 1))
                 for i, n in enumerate(index.shape))


def _gather_kernel(xp, x, index, dim):
    d = dim % max(x.ndim, 1)
    if x.ndim == 0:
        return x.reshape(index.shape).copy()
    _check_range("gather", index, d, x.shape[d])
    return x[_along(xp, index, d)]


def _check_range(op, index, dim, size):
    if index.size:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= size:
            raise RuntimeError(f"{op}(): index {lo if lo < 0 else hi} is out of bounds for dimension "
                               f"{dim} with size {size}")


def _gather_bw(ctx, g):
    x_shape = ctx.input_shape(0)
    index = ctx.inputs[1]
    base = g.new_zeros(x_shape)
    return scatter_add(base, ctx.attrs["dim"], index, g), None


GATHER = defop("gather", meta=_gather_meta, kernel=_gather_kernel, backward=_gather_bw, saves="inputs")


def _scatter_add_meta(x, index, src, dim):
    norm_dim(dim, x.ndim, "scatter_add")
    if index.dtype not in (dtypes.int64, dtypes.int32):
        raise RuntimeError(f"scatter_add(): Expected dtype int32/int64 for index, but got {index.dtype}")
    if not (index.ndim == x.ndim == src.ndim):
        raise RuntimeError("Index tensor must have the same number of dimensions as self tensor")
    if any(a > b for a, b in zip(index.shape, src.shape)):
        raise RuntimeError(f"scatter_add(): expected index {fmt(index.shape)} to be no larger than "
                           f"src {fmt(src.shape)}")
    if src.dtype is not x.dtype:
        raise RuntimeError("scatter_add(): Expected self.dtype to be equal to src.dtype")
    return ((x.shape, x.dtype),), None  # no compute dtype: the index must stay int64


def _scatter_add_kernel(xp, x, index, src, dim):
    d = dim % max(x.ndim, 1)
    out = xp.array(x, copy=True, order="C")
    if x.ndim == 0:
        return out + src.sum()
    _check_range("scatter_add", index, d, x.shape[d])
    part = src[tuple(slice(0, n) for n in index.shape)]
    scatter_add_at(xp, out, _along(xp, index, d), part)
    return out


def _scatter_add_bw(ctx, g):
    index = ctx.inputs[1]
    need_x, _, need_src = ctx.needs_input_grad
    gsrc = None
    if need_src:
        gsrc = gather(g, ctx.attrs["dim"], index)
        src_shape = ctx.input_shape(2)
        if gsrc.shape != src_shape:
            pad = g.new_zeros(src_shape)
            gsrc = _scatter_region(pad, gsrc)
    return (g if need_x else None), None, gsrc


def _scatter_region(base, part):
    return strided_scatter(base, part, part.shape, contiguous_strides(base.shape), 0)


SCATTER_ADD = defop("scatter_add", meta=_scatter_add_meta, kernel=_scatter_add_kernel,
                    backward=_scatter_add_bw, saves="inputs")


def gather(input, dim: int, index: Tensor) -> Tensor:
    return apply(GATHER, input, index, dim=dim)


def scatter_add(input, dim: int, index: Tensor, src: Tensor) -> Tensor:
    return apply(SCATTER_ADD, input, index, src, dim=dim)


# ---------------------------------------------------------------- cat / stack
def _cat_meta(*tensors, dim):
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    parts = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or list(tensors)
    ref = parts[0]
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    d = norm_dim(dim, ref.ndim, "cat")
    total = 0
    for i, t in enumerate(parts):
        if t.ndim != ref.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ref.ndim} and {t.ndim}")
        for j in range(ref.ndim):
            if j != d and t.shape[j] != ref.shape[j]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{ref.shape[j]} but got size {t.shape[j]} for tensor number {i} in the list.")
        total += t.shape[d]
    shape = list(ref.shape)
    shape[d] = total
    dt = dtypes.result_type(*tensors)
    return ((tuple(shape), dt),), dt


def _cat_kernel(xp, *arrays, dim):
    parts = [a for a in arrays if not (a.ndim == 1 and a.shape[0] == 0)] or list(arrays)
    return xp.concatenate(parts, axis=dim % parts[0].ndim)


def _cat_bw(ctx, g):
    d = ctx.attrs["dim"] % g.ndim
    grads, start = [], 0
    for (shape, _), need in zip(ctx._input_meta, ctx.needs_input_grad):
        n = shape[d] if len(shape) == g.ndim else 0
        if need:  # a legacy empty 1-D input (skipped by cat) gets an empty gradient of its own shape
            grads.append(narrow(g, d, start, n) if len(shape) == g.ndim else g.new_zeros(shape))
        else:
            grads.append(None)
        start += n
    return tuple(grads)


CAT = defop("cat", meta=_cat_meta, kernel=_cat_kernel, backward=_cat_bw)


def cat(tensors, dim: int = 0) -> Tensor:
    return apply(CAT, *tensors, dim=dim)


concat = concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {fmt(tensors[0].shape)} "
                               f"at entry 0 and {fmt(t.shape)} at entry {i}")
    d = norm_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([unsqueeze(t, d) for t in tensors], d)


# ---------------------------------------------------------------- triangles, flip, repeat
def _tri(name, fn):
    def meta(x, diagonal=0):
        if x.ndim < 2:
            raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
        return ((x.shape, x.dtype),), None

    op = defop(name, meta=meta, kernel=lambda xp, x, diagonal=0: getattr(xp, name)(x, diagonal),
               backward=lambda ctx, g: fn(g, ctx.attrs.get("diagonal", 0)))
    return op


TRIL = _tri("tril", lambda g, k: tril(g, k))
TRIU = _tri("triu", lambda g, k: triu(g, k))


def tril(input, diagonal: int = 0) -> Tensor:
    return apply(TRIL, input, diagonal=diagonal)


def triu(input, diagonal: int = 0) -> Tensor:
    return apply(TRIU, input, diagonal=diagonal)


def _flip_meta(x, dims):
    seen = set()
    for d in dims:
        d = norm_dim(d, x.ndim, "flip")
        if d in seen:
            raise RuntimeError(f"flip: dim {d} appears multiple times in the list of dims")
        seen.add(d)
    return ((x.shape, x.dtype),), None


FLIP = defop("flip", meta=_flip_meta,
             kernel=lambda xp, x, dims: xp.flip(x, axis=tuple(d % x.ndim for d in dims)) if x.ndim else x.copy(),
             backward=lambda ctx, g: flip(g, ctx.attrs["dims"]))


def flip(input, dims) -> Tensor:
    return apply(FLIP, input, dims=tuple(dims))


def repeat(input, sizes) -> Tensor:
    """Tile `input`: composed of unsqueeze, expand and reshape (so autograd is free)."""
    sizes = tuple(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                           "dimensions of tensor")
    x = view(input, (1,) * (len(sizes) - input.ndim) + tuple(input.shape))
    inter, expanded, final = [], [], []
    for r, s in zip(sizes, x.shape):
        inter += [1, s]
        expanded += [r, s]
        final.append(r * s)
    return view(x, inter).expand(expanded).reshape(final)


def sum_to(input, shape) -> Tensor:
    """Sum a broadcast gradient back down to `shape` (the inverse of broadcasting)."""
    shape = tuple(shape)
    if input.shape == shape:
        return input
    lead = input.ndim - len(shape)
    inner = tuple(lead + i for i, s in enumerate(shape) if s == 1 and input.shape[lead + i] != 1)
    if lead and not inner:  # a bias's gradient: summing the leading dims away gives `shape` (one op)
        out = input.sum(dim=tuple(range(lead)))
    else:
        dims = tuple(range(lead)) + inner
        out = input.sum(dim=dims, keepdim=True) if dims else input
    if numel(out.shape) != numel(shape):
        raise RuntimeError(f"sum_to: shape {fmt(input.shape)} is not expandable from {fmt(shape)}")
    return out if out.shape == shape else view(out, shape)
