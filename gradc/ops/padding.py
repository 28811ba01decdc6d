"""Padding (`F.pad`): one primitive for constant padding; the other modes are gathers.

`constant_pad` is its own adjoint up to sign: padding by `p` is undone by padding by
`-p` (a negative pad crops), so its backward is itself with the pads negated, and
double backward comes free. Reflect, replicate and circular padding pick input
positions along each padded dim with `index_select` (its backward scatters the
gradient back, adding where one input feeds several outputs).
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .dispatch import apply
from .indexing import index_select
from .registry import defop
from .shapes import fmt

MODES = ("constant", "reflect", "replicate", "circular")


def pairs(pad, ndim: int) -> tuple[tuple[int, int], ...]:
    """PyTorch's flat pad list (last dim first) as one (before, after) pair per dim."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input dimension "
                           f"but got padding length {len(pad)} and input of dimension {ndim}")
    per_dim = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        per_dim[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return tuple(per_dim)


def _pad_meta(x, pads, value):
    shape = []
    for d, (n, (lo, hi)) in enumerate(zip(x.shape, pads)):
        if n + lo + hi < 0:
            raise RuntimeError(f"The input size {n}, plus negative padding {lo} and {hi} resulted in a "
                               f"negative output size, which is invalid. Check dimension {d} of your input.")
        shape.append(n + lo + hi)
    return ((tuple(shape), x.dtype),), None


def _pad_kernel(xp, x, pads, value):
    crop = tuple(slice(-lo if lo < 0 else 0, n + hi if hi < 0 else n) for n, (lo, hi) in zip(x.shape, pads))
    x = x[crop]
    grow = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)
    return xp.pad(x, grow, mode="constant", constant_values=value)


def _pad_bw(ctx, g):
    return apply(CONSTANT_PAD, g, pads=tuple((-lo, -hi) for lo, hi in ctx.attrs["pads"]), value=0)


CONSTANT_PAD = defop("constant_pad", meta=_pad_meta, kernel=_pad_kernel, backward=_pad_bw)


def constant_pad_nd(input: Tensor, pad, value=0) -> Tensor:
    """Pad with `value` (negative pads crop); `pad` as in F.pad."""
    return apply(CONSTANT_PAD, input, pads=pairs(pad, input.ndim), value=value)


def _source_index(n: int, lo: int, hi: int, mode: str, dim: int, shape) -> np.ndarray:
    """For each output position along one dim, the input position it copies."""
    if lo < 0 or hi < 0:
        raise RuntimeError(f"{mode} padding: negative padding is only supported in constant mode")
    limit = n - 1 if mode == "reflect" else n
    if (mode in ("reflect", "circular") and (lo > limit or hi > limit)) or n == 0:
        raise RuntimeError(f"{mode} padding: padding ({lo}, {hi}) at dimension {dim} of input {fmt(shape)} "
                           f"should be {'less than' if mode == 'reflect' else 'at most'} the size of that "
                           "dimension")
    pos = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(pos, 0, n - 1)
    if mode == "circular":
        return pos % n
    pos = np.abs(pos)
    return np.where(pos > n - 1, 2 * (n - 1) - pos, pos)


def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """PyTorch's F.pad: `pad` lists (before, after) pairs starting from the last dim."""
    if mode not in MODES:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if mode == "constant":
        return constant_pad_nd(input, pad, 0 if value is None else value)
    if value:
        raise RuntimeError(f"Padding mode \"{mode}\" doesn't take in value argument")
    dims = len(pad) // 2
    if dims not in (1, 2, 3) or input.ndim not in (dims + 1, dims + 2):
        raise NotImplementedError(f"Padding size {len(pad)} is not supported for {input.ndim}D input tensor: "
                                  f"{mode} padding pads the last 1, 2 or 3 dims of an input with one or two "
                                  "more dims")
    from ..factories import tensor

    out = input
    for d, (lo, hi) in enumerate(pairs(pad, input.ndim)):
        if lo or hi:
            idx = _source_index(input.shape[d], lo, hi, mode, d, input.shape)
            out = index_select(out, d, tensor(idx, device=input.device))
    return out
