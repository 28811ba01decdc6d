"""Sliding-window ops: `unfold` (im2col) and `fold` (col2im), and conv and pooling over them.

`unfold` gathers every kernel window of a (N, C, H, W) batch into the columns of a
(N, C*kh*kw, L) tensor: one strided view of the zero-padded input and one copy, no
loop over pixels. `fold` is its adjoint (it sums columns back into an image, looping
only over the kh*kw kernel offsets), so each is the other's backward and both are
linear: double backward is free.

Convolution is a matrix product over the columns and pooling a reduction over them;
both are composites, so autograd (and its double backward) comes from the primitives.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .dispatch import apply
from .linalg import matmul
from .padding import constant_pad_nd
from .pointwise import where
from .reduction import argmax
from .registry import defop
from .shapes import fmt


def ntuple(value, n: int, name: str = "value") -> tuple[int, ...]:
    """An int or a length-n sequence as an n-tuple of ints (PyTorch's _pair, _single)."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {n} values, "
                           f"but got {list(value)}")
    return value


def blocks(size: int, kernel: int, dilation: int, padding: int, stride: int) -> int:
    """The number of window positions along one dim (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _geometry(attrs) -> tuple:
    return attrs["kernel_size"], attrs["dilation"], attrs["padding"], attrs["stride"]


def _check_blocks(spatial, kernel_size, dilation, padding, stride) -> tuple[int, int]:
    out = tuple(blocks(n, k, d, p, s) for n, k, d, p, s in zip(spatial, kernel_size, dilation, padding, stride))
    if min(out) < 1:
        raise RuntimeError(f"Given input with spatial size {tuple(spatial)}, kernel_size={kernel_size}, "
                           f"dilation={dilation}, padding={padding}, calculated shape of the array of "
                           f"sliding blocks as {out}, but its components must be at least one.")
    return out


# ---------------------------------------------------------------- unfold (im2col)
def _unfold_meta(x, kernel_size, dilation, padding, stride):
    if x.ndim != 4:
        raise RuntimeError(f"unfold: expected a 4-D (N, C, H, W) input, got shape {fmt(x.shape)}")
    oh, ow = _check_blocks(x.shape[2:], kernel_size, dilation, padding, stride)
    n, c = x.shape[:2]
    return (((n, c * kernel_size[0] * kernel_size[1], oh * ow), x.dtype),), None


def _unfold_kernel(xp, x, kernel_size, dilation, padding, stride):
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel_size, dilation, padding, stride
    n, c, h, w = x.shape
    oh, ow = blocks(h, kh, dh, ph, sh), blocks(w, kw, dw, pw, sw)
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    s0, s1, s2, s3 = x.strides
    windows = xp.lib.stride_tricks.as_strided(
        x, (n, c, kh, kw, oh, ow), (s0, s1, dh * s2, dw * s3, sh * s2, sw * s3))
    return windows.reshape(n, c * kh * kw, oh * ow)  # the one copy


def _unfold_bw(ctx, g):
    h, w = ctx.input_shape(0)[2:]
    return fold(g, (h, w), *_geometry(ctx.attrs))


UNFOLD = defop("unfold", meta=_unfold_meta, kernel=_unfold_kernel, backward=_unfold_bw)


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """PyTorch's F.unfold: (N, C, H, W) -> (N, C*kh*kw, L), or (C, H, W) -> (C*kh*kw, L)."""
    if input.ndim == 3:
        return unfold(input.unsqueeze(0), kernel_size, dilation, padding, stride).squeeze(0)
    return apply(UNFOLD, input, kernel_size=ntuple(kernel_size, 2, "kernel_size"),
                 dilation=ntuple(dilation, 2, "dilation"), padding=ntuple(padding, 2, "padding"),
                 stride=ntuple(stride, 2, "stride"))


# ---------------------------------------------------------------- fold (col2im)
def _fold_meta(cols, output_size, kernel_size, dilation, padding, stride):
    if cols.ndim != 3:
        raise RuntimeError(f"fold: expected a 3-D (N, C*kh*kw, L) input, got shape {fmt(cols.shape)}")
    k = kernel_size[0] * kernel_size[1]
    if cols.shape[1] % k:
        raise RuntimeError(f"Expected size of input's dimension 1 to be divisible by the product of "
                           f"kernel_size, but got input.size(1)={cols.shape[1]} and "
                           f"kernel_size={kernel_size}.")
    oh, ow = (blocks(n, kk, d, p, s) for n, kk, d, p, s in
              zip(output_size, kernel_size, dilation, padding, stride))
    if oh * ow != cols.shape[2] or oh < 1 or ow < 1:
        raise RuntimeError(f"Given output_size={output_size}, kernel_size={kernel_size}, "
                           f"dilation={dilation}, padding={padding}, stride={stride}, expected size of "
                           f"input's dimension 2 to match the calculated number of sliding blocks "
                           f"{oh} * {ow} = {oh * ow}, but got input.size(2)={cols.shape[2]}.")
    return (((cols.shape[0], cols.shape[1] // k) + tuple(output_size), cols.dtype),), None


def _fold_kernel(xp, cols, output_size, kernel_size, dilation, padding, stride):
    (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = output_size, kernel_size, dilation, padding, stride
    n, ck, _ = cols.shape
    c = ck // (kh * kw)
    oh, ow = blocks(h, kh, dh, ph, sh), blocks(w, kw, dw, pw, sw)
    out = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            out[:, :, rows, j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    return out[:, :, ph:ph + h, pw:pw + w]


def _fold_bw(ctx, g):
    return apply(UNFOLD, g, kernel_size=ctx.attrs["kernel_size"], dilation=ctx.attrs["dilation"],
                 padding=ctx.attrs["padding"], stride=ctx.attrs["stride"])


FOLD = defop("fold", meta=_fold_meta, kernel=_fold_kernel, backward=_fold_bw)


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """PyTorch's F.fold: sums (N, C*kh*kw, L) columns into (N, C, *output_size)."""
    if input.ndim == 2:
        return fold(input.unsqueeze(0), output_size, kernel_size, dilation, padding, stride).squeeze(0)
    return apply(FOLD, input, output_size=ntuple(output_size, 2, "output_size"),
                 kernel_size=ntuple(kernel_size, 2, "kernel_size"), dilation=ntuple(dilation, 2, "dilation"),
                 padding=ntuple(padding, 2, "padding"), stride=ntuple(stride, 2, "stride"))


# ---------------------------------------------------------------- convolution
def _same_padding(input: Tensor, kernel, dilation) -> tuple[Tensor, tuple[int, int]]:
    """padding='same': total d*(k-1) per dim, the odd element on the bottom/right (as PyTorch).
    Returns the input (padded on that extra side where needed) and the symmetric part."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    extra = [t % 2 for t in total]
    if any(extra):
        input = constant_pad_nd(input, (0, extra[1], 0, extra[0]))
    return input, (total[0] // 2, total[1] // 2)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """PyTorch's conv2d (a cross-correlation): unfold, then one (grouped) matmul."""
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if input.ndim != 4 or weight.ndim != 4:
        raise RuntimeError(f"conv2d: expected a 3-D or 4-D input and a 4-D weight, got input of shape "
                           f"{fmt(input.shape)} and weight of shape {fmt(weight.shape)}")
    out_c, group_c, kh, kw = weight.shape
    if out_c % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
                           f"but got weight of size [{fmt(weight.shape)}] instead")
    if input.shape[1] != group_c * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {fmt(weight.shape)}, expected "
                           f"input{fmt(input.shape)} to have {group_c * groups} channels, but got "
                           f"{input.shape[1]} channels instead")
    stride, dilation = ntuple(stride, 2, "stride"), ntuple(dilation, 2, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            input, padding = _same_padding(input, (kh, kw), dilation)
        else:
            raise RuntimeError(f"Invalid padding string '{padding}', should be one of ['valid', 'same']")
    padding = ntuple(padding, 2, "padding")
    padded = [n + 2 * p for n, p in zip(input.shape[2:], padding)]
    if any(n < d * (k - 1) + 1 for n, k, d in zip(padded, (kh, kw), dilation)):
        raise RuntimeError(f"Calculated padded input size per channel: ({padded[0]} x {padded[1]}). Kernel size: "
                           f"({(kh - 1) * dilation[0] + 1} x {(kw - 1) * dilation[1] + 1}). Kernel size can't "
                           "be greater than actual input size")
    n = input.shape[0]
    cols = apply(UNFOLD, input, kernel_size=(kh, kw), dilation=dilation, padding=padding, stride=stride)
    oh, ow = (blocks(s, k, d, p, st) for s, k, d, p, st in zip(input.shape[2:], (kh, kw), dilation, padding, stride))
    if groups == 1:
        out = matmul(weight.reshape(out_c, group_c * kh * kw), cols)
    else:
        cols = cols.view(n, groups, group_c * kh * kw, oh * ow)
        out = matmul(weight.reshape(groups, out_c // groups, group_c * kh * kw), cols)
    out = out.reshape(n, out_c, oh, ow)
    return out if bias is None else out + bias.reshape(out_c, 1, 1)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """PyTorch's conv1d, as conv2d over a unit height."""
    if weight.ndim != 3 or input.ndim not in (2, 3):
        raise RuntimeError(f"conv1d: expected a 2-D or 3-D input and a 3-D weight, got input of shape "
                           f"{fmt(input.shape)} and weight of shape {fmt(weight.shape)}")
    if not isinstance(padding, str):
        padding = (0, ntuple(padding, 1, "padding")[0])
    out = conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, ntuple(stride, 1, "stride")[0]),
                 padding, (1, ntuple(dilation, 1, "dilation")[0]), groups)
    return out.squeeze(-2)


# ---------------------------------------------------------------- pooling
def pool_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """Output length of a pooling window along one dim (PyTorch's rule: in ceil mode the
    last window must still start inside the input or its left padding)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_args(name, input, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = ntuple(kernel_size, 2, "kernel_size")
    stride = kernel if stride is None or stride == [] or stride == () else ntuple(stride, 2, "stride")
    padding, dilation = ntuple(padding, 2, "padding"), ntuple(dilation, 2, "dilation")
    if input.ndim not in (3, 4):
        raise RuntimeError(f"{name}: expected a 3-D or 4-D input, got shape {fmt(input.shape)}")
    for k, p in zip(kernel, padding):
        if p > k // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={p}, "
                               f"kernel_size={k} and dilation={dilation[0]}")
    out = tuple(pool_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in
                zip(input.shape[-2:], kernel, stride, padding, dilation))
    if min(out) < 1:
        raise RuntimeError(f"{name}: given input size {fmt(input.shape)}, calculated output size "
                           f"{fmt(input.shape[:-2] + out)} is too small")
    # ceil mode can need windows that run past the right padding: pad further there
    extra = tuple(max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for o, s, d, k, n, p in
                  zip(out, stride, dilation, kernel, input.shape[-2:], padding))
    return kernel, stride, padding, dilation, out, extra


def _windows(input, kernel, stride, padding, dilation, extra, value):
    """(N, C, kh*kw, L) windows of `input` padded with `value` (plus the ceil-mode `extra`)."""
    if any(padding) or any(extra):
        input = constant_pad_nd(input, (padding[1], padding[1] + extra[1], padding[0], padding[0] + extra[0]),
                                value)
    n, c = input.shape[:2]
    cols = apply(UNFOLD, input, kernel_size=kernel, dilation=dilation, padding=(0, 0), stride=stride)
    return cols.view(n, c, kernel[0] * kernel[1], cols.shape[-1])


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """PyTorch's max_pool2d. The gradient goes to the first maximum of each window, as
    PyTorch's (not split among ties); `return_indices` gives flat H*W positions."""
    if input.ndim == 3:
        out = max_pool2d(input.unsqueeze(0), kernel_size, stride, padding, dilation, ceil_mode, return_indices)
        return tuple(o.squeeze(0) for o in out) if return_indices else out.squeeze(0)
    kernel, stride, padding, dilation, (oh, ow), extra = _pool_args(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    dt = input.dtype
    low = float("-inf") if dt.is_floating_point else int(np.iinfo(dt.np).min)
    windows = _windows(input, kernel, stride, padding, dilation, extra, low)
    first = argmax(windows, dim=2, keepdim=True)
    from ..factories import arange

    k = windows.shape[2]
    pick = arange(k, device=input.device).view(k, 1) == first
    n, c = input.shape[:2]
    out = where(pick, windows, 0).sum(dim=2, dtype=dt).view(n, c, oh, ow)
    if not return_indices:
        return out
    first = first.view(n, c, oh, ow)
    row = (arange(oh, device=input.device) * stride[0] - padding[0]).view(oh, 1) + (first // kernel[1]) * dilation[0]
    col = arange(ow, device=input.device) * stride[1] - padding[1] + (first % kernel[1]) * dilation[1]
    return out, row * input.shape[3] + col


def _window_counts(size, kernel, stride, padding, out, include_pad) -> np.ndarray:
    """Per output position along one dim, how many elements its window averages over:
    in count_include_pad mode the padding counts but the ceil-mode overhang does not."""
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return end - start


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """PyTorch's avg_pool2d: a sum over zero-padded windows over a per-window divisor."""
    if input.ndim == 3:
        return avg_pool2d(input.unsqueeze(0), kernel_size, stride, padding, ceil_mode, count_include_pad,
                          divisor_override).squeeze(0)
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"avg_pool2d\" not implemented for '{input.dtype.name}'")
    kernel, stride, padding, _, (oh, ow), extra = _pool_args(
        "avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    windows = _windows(input, kernel, stride, padding, (1, 1), extra, 0)
    n, c = input.shape[:2]
    total = windows.sum(dim=2).view(n, c, oh, ow)
    if divisor_override:
        return total / divisor_override
    rows, cols = (_window_counts(s, k, st, p, o, count_include_pad) for s, k, st, p, o in
                  zip(input.shape[2:], kernel, stride, padding, (oh, ow)))
    from ..factories import tensor

    return total / tensor(np.outer(rows, cols), dtype=input.dtype, device=input.device)


def _adaptive_matrix(size: int, out: int, dtype, device) -> Tensor:
    """(out, size) averaging matrix: row i averages [floor(i*size/out), ceil((i+1)*size/out))."""
    from ..factories import tensor

    m = np.zeros((out, size))
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, start:end] = 1 / (end - start)
    return tensor(m, dtype=dtype, device=device)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """PyTorch's adaptive_avg_pool2d. Its windows are products of a row range and a column
    range, so the pooling is A_h @ x @ A_w^T with two small averaging matrices."""
    if input.ndim not in (3, 4):
        raise RuntimeError(f"adaptive_avg_pool2d: expected a 3-D or 4-D input, got shape {fmt(input.shape)}")
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"adaptive_avg_pool2d\" not implemented for '{input.dtype.name}'")
    h, w = input.shape[-2:]
    sizes = (output_size, output_size) if isinstance(output_size, (int, np.integer)) or output_size is None \
        else tuple(output_size)
    oh, ow = (n if o is None else int(o) for o, n in zip(sizes, (h, w)))
    out = input if oh == h else matmul(_adaptive_matrix(h, oh, input.dtype, input.device), input)
    return out if ow == w else matmul(out, _adaptive_matrix(w, ow, input.dtype, input.device).mT)


def _as_2d(fn_name, input):
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{fn_name}: expected a 2-D or 3-D input, got shape {fmt(input.shape)}")
    return input.unsqueeze(-2)


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """PyTorch's max_pool1d, as max_pool2d over a unit height."""
    stride = None if stride is None or stride == [] or stride == () else (1, ntuple(stride, 1, "stride")[0])
    out = max_pool2d(_as_2d("max_pool1d", input), (1, ntuple(kernel_size, 1)[0]), stride,
                     (0, ntuple(padding, 1)[0]), (1, ntuple(dilation, 1)[0]), ceil_mode, return_indices)
    return tuple(o.squeeze(-2) for o in out) if return_indices else out.squeeze(-2)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """PyTorch's avg_pool1d, as avg_pool2d over a unit height."""
    stride = None if stride is None or stride == [] or stride == () else (1, ntuple(stride, 1, "stride")[0])
    return avg_pool2d(_as_2d("avg_pool1d", input), (1, ntuple(kernel_size, 1)[0]), stride,
                      (0, ntuple(padding, 1)[0]), ceil_mode, count_include_pad).squeeze(-2)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """PyTorch's adaptive_avg_pool1d, as adaptive_avg_pool2d over a unit height."""
    size = ntuple(output_size, 1, "output_size")[0]
    return adaptive_avg_pool2d(_as_2d("adaptive_avg_pool1d", input), (1, size)).squeeze(-2)

