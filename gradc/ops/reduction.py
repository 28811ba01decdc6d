"""Reductions and scans: sum, prod, amax/amin, argmax/argmin, cumsum, softmax.

Composite reductions (mean, var, std, logsumexp, max/min with dim, ...) are written
in terms of these primitives and live at the bottom of the file.
"""
from __future__ import annotations

import math
from collections import namedtuple

from .. import dtypes
from ..tensor import Tensor
from .dispatch import apply
from .pointwise import exp, log, maximum, minimum, where
from .registry import defop
from .shapes import norm_dim, norm_dims, reduced_shape


def _reduce_meta(name, *, to_int64=False, float_only=False, index=False):
    def meta(x, dim=None, keepdim=False, dtype=None):
        shape = x._shape
        dims = norm_dims(dim, len(shape), name)
        dt = x._storage.dtype
        if dtype is not None:
            dt = dtype
        elif index:
            dt = dtypes.int64
        elif to_int64 and not dt.is_floating_point:
            dt = dtypes.int64
        elif float_only and not dt.is_floating_point:
            dt = dtypes.get_default_dtype()
        if name in ("amax", "amin", "argmax", "argmin") and any(shape[d] == 0 for d in dims):
            raise IndexError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0")
        return ((reduced_shape(shape, dims, keepdim), dt),), (dt if not index else None)

    return meta


def _axis(x, dim):
    if dim is None:
        return None
    dims = norm_dims(dim, x.ndim)
    return dims if len(dims) != x.ndim else None


def _expand_back(ctx, g):
    """Broadcast a reduced gradient back over the reduced dims of the input."""
    shape = ctx.input_shape(0)
    dims = norm_dims(ctx.attrs.get("dim"), len(shape))
    if not ctx.attrs.get("keepdim", False):
        g = g.reshape(reduced_shape(shape, dims, True))
    return g.expand(shape)


SUM = defop("sum", meta=_reduce_meta("sum", to_int64=True),
            kernel=lambda xp, x, dim=None, keepdim=False, dtype=None:
                x.sum(axis=_axis(x, dim), keepdims=keepdim),
            backward=_expand_back, kind="reduction")


def _prod_bw(ctx, g):
    (x,) = ctx.inputs
    out = ctx.output
    attrs = ctx.attrs
    dim, keepdim = attrs.get("dim"), attrs.get("keepdim", False)
    g = _expand_back(ctx, g)
    if not keepdim:
        out = out.reshape(reduced_shape(x.shape, norm_dims(dim, x.ndim), True))
    zero = x == 0
    safe = where(zero, 1.0, x)
    n_zero = zero.sum(dim=dim, keepdim=True)
    others = prod(safe, dim=dim, keepdim=True)
    # at a zero x_i the gradient is the product of the rest: `others` when x_i is the only
    # zero, else 0; with exactly two zeros written as x_j * others (x_j the other zero) so
    # that its derivative w.r.t. x_j (double backward) is right
    other_zero = where(zero, x, 0.0).sum(dim=dim, keepdim=True) - x
    at_zero = where(n_zero == 1, others, where(n_zero == 2, other_zero * others, 0.0))
    return g * where(zero, at_zero, out / safe)


PROD = defop("prod", meta=_reduce_meta("prod", to_int64=True),
             kernel=lambda xp, x, dim=None, keepdim=False, dtype=None:
                 x.prod(axis=_axis(x, dim), keepdims=keepdim),
             backward=_prod_bw, saves="both", kind="reduction")


def _extreme_bw(ctx, g):
    (x,) = ctx.inputs
    out = ctx.output
    if not ctx.attrs.get("keepdim", False):
        out = out.reshape(reduced_shape(x.shape, norm_dims(ctx.attrs.get("dim"), x.ndim), True))
    hit = x == out
    return _expand_back(ctx, g) * hit / hit.sum(dim=ctx.attrs.get("dim"), keepdim=True)


AMAX = defop("amax", meta=_reduce_meta("amax"),
             kernel=lambda xp, x, dim=None, keepdim=False: xp.max(x, axis=_axis(x, dim), keepdims=keepdim),
             backward=_extreme_bw, saves="both", kind="reduction")
AMIN = defop("amin", meta=_reduce_meta("amin"),
             kernel=lambda xp, x, dim=None, keepdim=False: xp.min(x, axis=_axis(x, dim), keepdims=keepdim),
             backward=_extreme_bw, saves="both", kind="reduction")


def _arg_kernel(fn):
    def kernel(xp, x, dim=None, keepdim=False):
        if dim is None:
            idx = getattr(xp, fn)(x.reshape(-1))
            return xp.asarray(idx).reshape((1,) * x.ndim if keepdim else ())
        return getattr(xp, fn)(x, axis=norm_dim(dim, x.ndim), keepdims=keepdim)

    return kernel


ARGMAX = defop("argmax", meta=_reduce_meta("argmax", index=True), kernel=_arg_kernel("argmax"),
               kind="reduction")
ARGMIN = defop("argmin", meta=_reduce_meta("argmin", index=True), kernel=_arg_kernel("argmin"),
               kind="reduction")


def _dim_meta(name, *, float_only=False, to_int64=False):
    def meta(x, dim, dtype=None):
        norm_dim(dim, x.ndim, name)
        dt = dtype or x.dtype
        if dtype is None and float_only and not dt.is_floating_point:
            dt = dtypes.get_default_dtype()
        if dtype is None and to_int64 and not dt.is_floating_point:
            dt = dtypes.int64
        return ((x.shape, dt),), dt

    return meta


def _cumsum_bw(ctx, g):
    dim = ctx.attrs["dim"]
    # reversed cumulative sum, without a flip: total - prefix + own
    return g.sum(dim=dim, keepdim=True) - cumsum(g, dim) + g


CUMSUM = defop("cumsum", meta=_dim_meta("cumsum", to_int64=True),
               kernel=lambda xp, x, dim, dtype=None:
                   xp.cumsum(x, axis=norm_dim(dim, x.ndim)) if x.ndim else x.copy(),
               backward=_cumsum_bw, kind="reduction")


def _softmax_kernel(xp, x, dim, dtype=None):
    ax = norm_dim(dim, x.ndim)
    e = xp.exp(x - xp.max(x, axis=ax, keepdims=True))
    e /= xp.sum(e, axis=ax, keepdims=True)
    return e


def _log_softmax_kernel(xp, x, dim, dtype=None):
    ax = norm_dim(dim, x.ndim)
    shifted = x - xp.max(x, axis=ax, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=ax, keepdims=True))


def _softmax_bw(ctx, g):
    y = ctx.output
    return y * (g - (g * y).sum(dim=ctx.attrs["dim"], keepdim=True))


def _log_softmax_bw(ctx, g):
    y = ctx.output
    return g - exp(y) * g.sum(dim=ctx.attrs["dim"], keepdim=True)


SOFTMAX = defop("softmax", meta=_dim_meta("softmax", float_only=True), kernel=_softmax_kernel,
                backward=_softmax_bw, saves="output", kind="reduction")
LOG_SOFTMAX = defop("log_softmax", meta=_dim_meta("log_softmax", float_only=True),
                    kernel=_log_softmax_kernel, backward=_log_softmax_bw, saves="output",
                    kind="reduction")


def _sort_meta(x, dim=-1, descending=False, stable=False):
    norm_dim(dim, x.ndim, "sort")
    return ((x.shape, dtypes.int64),), None


def _argsort_kernel(xp, x, dim=-1, descending=False, stable=False):
    ax = norm_dim(dim, x.ndim)
    if x.ndim == 0:
        return xp.zeros((), dtype=xp.int64)
    if descending:
        # stable and descending: sort the reversed axis ascending, then reverse back
        idx = xp.argsort(xp.flip(x, axis=ax), axis=ax, kind="stable")
        return x.shape[ax] - 1 - xp.flip(idx, axis=ax)
    return xp.argsort(x, axis=ax, kind="stable")


ARGSORT = defop("argsort", meta=_sort_meta, kernel=_argsort_kernel, kind="other")


# ---------------------------------------------------------------- public functions
def _as(out, dtype):
    """The result in the `dtype=` asked for (the op's rule widens integers to int64)."""
    return out if dtype is None or out.dtype is dtypes.to_dtype(dtype) else out.to(dtype)


def sum(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is None:
        return apply(SUM, input, dim=dim, keepdim=keepdim)
    return _as(apply(SUM, input.to(dtype), dim=dim, keepdim=keepdim), dtype)


def prod(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return _as(apply(PROD, input, dim=dim, keepdim=keepdim), dtype)


def amax(input, dim=(), keepdim=False):
    return apply(AMAX, input, dim=None if dim == () else dim, keepdim=keepdim)


def amin(input, dim=(), keepdim=False):
    return apply(AMIN, input, dim=None if dim == () else dim, keepdim=keepdim)


def argmax(input, dim=None, keepdim=False):
    return apply(ARGMAX, input, dim=dim, keepdim=keepdim)


def argmin(input, dim=None, keepdim=False):
    return apply(ARGMIN, input, dim=dim, keepdim=keepdim)


def cumsum(input, dim, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return _as(apply(CUMSUM, input, dim=dim), dtype)


def softmax(input, dim, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return apply(SOFTMAX, input, dim=dim)


def log_softmax(input, dim, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return apply(LOG_SOFTMAX, input, dim=dim)


def argsort(input, dim=-1, descending=False, stable=False):
    return apply(ARGSORT, input, dim=dim, descending=descending)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a "
                           f"floating point or complex dtype. Got: {input.dtype}")
    dims = norm_dims(dim, input.ndim, "mean")
    n = math.prod(input.shape[d] for d in dims)  # a product of sizes (symbolic ones stay symbolic)
    return sum(input, dim, keepdim) / n if n else sum(input, dim, keepdim) * float("nan")


def var(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    if unbiased is not None:
        correction = 1 if unbiased else 0
    dims = norm_dims(dim, input.ndim, "var")
    n = math.prod(input.shape[d] for d in dims)
    centered = input - mean(input, dim, keepdim=True)
    return sum(centered * centered, dim, keepdim) / (n - correction if n > correction else 0)


def std(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    v = var(input, dim, correction=correction, keepdim=keepdim, unbiased=unbiased)
    # as PyTorch: where the variance is 0 the gradient is 0, not the inf * 0 of sqrt's
    zero = v == 0
    return where(zero, 0.0, where(zero, 1.0, v).sqrt())


def logsumexp(input, dim, keepdim=False):
    m = amax(input, dim, keepdim=True).detach()
    m = where(m.abs() == float("inf"), 0.0, m)
    out = log(sum(exp(input - m), dim, keepdim=True)) + m
    return out if keepdim else out.squeeze(dim)


_values_indices = {}


def _return_type(name):
    if name not in _values_indices:
        _values_indices[name] = namedtuple(name, ["values", "indices"])
    return _values_indices[name]


def _extreme(name, reducer, arg, pairwise):
    def fn(input, dim=None, keepdim=False):
        if isinstance(dim, Tensor):
            return pairwise(input, dim)
        if dim is None:
            if input.numel() == 0:
                raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                                   "Specify the reduction dim with the 'dim' argument.")
            return reducer(input)
        idx = arg(input, dim, keepdim=True)
        values = input.gather(dim, idx)
        if not keepdim:
            values, idx = values.squeeze(dim), idx.squeeze(dim)
        return _return_type(name)(values, idx)

    fn.__name__ = name
    return fn


def sort(input, dim=-1, descending=False, stable=False):
    idx = argsort(input, dim, descending)
    return _return_type("sort")(input.gather(dim, idx) if input.ndim else input.clone(), idx)


def topk(input, k, dim=-1, largest=True, sorted=True):
    d = norm_dim(dim, input.ndim, "topk")
    if not 0 <= k <= (input.shape[d] if input.ndim else 1):
        raise RuntimeError(f"topk: selected index k ({k}) out of range for dimension {d} "
                           f"of size {input.shape[d] if input.ndim else 1}")
    if input.ndim == 0:
        return _return_type("topk")(*sort(input))
    idx = argsort(input, d, descending=largest).narrow(d, 0, k)
    return _return_type("topk")(input.gather(d, idx), idx)


max = _extreme("max", amax, argmax, maximum)
min = _extreme("min", amin, argmin, minimum)
