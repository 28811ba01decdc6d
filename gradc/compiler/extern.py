"""Extern steps: an op without a C lowering runs its eager kernel between C segments.

The contract mirrors `ops.dispatch.apply` exactly, so an extern step computes what eager
computes: the kernel gets numpy arrays with the operands' real geometry (inputs as the
caller's arrays, views as strided views of their root's buffer, computed values as their
contiguous buffers), cast to the op's compute dtype, plus the captured scalars and attrs.
Its result becomes the step's buffer when it is a fresh C-contiguous array of the planned
dtype (matmul's is), and is copied into one otherwise, so C kernels after it can read it
with contiguous strides and it never aliases an operand.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..ops import OPS
from .schedule import Kernel
from .symbolic import evaluate


def operand_array(g: nx.DiGraph, n: int, arrays: dict, sizes: tuple = (), xp=np):
    """The array of node `n` (an input, a view or a computed value) given the arrays of
    the buffers by node and the dynamic sizes of this call (numpy or cupy arrays)."""
    d = g.nodes[n]
    if d["kind"] != "view":
        return arrays[n]
    root = arrays[d["root"]]
    item = root.itemsize
    offset, shape, strides = evaluate((d["offset"], tuple(d["shape"]), tuple(d["strides"])), sizes)
    if xp is not np:  # a device view from the root's first element
        return xp.ndarray(shape, root.dtype, memptr=root.data + offset * item, strides=[s * item for s in strides])
    start = as_strided(root, shape=(offset + 1,), strides=(item,), writeable=False)[offset:]
    return as_strided(start, shape=shape, strides=[s * item for s in strides], writeable=False)


def kernel_arguments(d: dict, array_of) -> list:
    """An op node's arguments for its eager kernel, as `dispatch.apply` passes them: the
    captured scalars, and each operand's array (`array_of(node)`) cast to the op's compute
    dtype."""
    want = d["compute"].np if d["compute"] is not None else None
    args = []
    for tag, ref in d["args"]:
        if tag == "const":
            args.append(ref)
            continue
        a = array_of(ref)
        args.append(a if want is None or a.dtype == want else a.astype(want))
    return args


def run_extern(g: nx.DiGraph, k: Kernel, arrays: dict, sizes: tuple = (), xp=np):
    """Run extern step `k` at this call's dynamic sizes with array module `xp`; returns the
    C-contiguous array holding its result."""
    n = k.roots[0]
    d = g.nodes[n]
    args = kernel_arguments(d, lambda ref: operand_array(g, ref, arrays, sizes, xp))
    result = xp.asarray(OPS[d["op"]].kernel(xp, *args, **evaluate(d["attrs"], sizes)))
    dtype = d["dtype"].np
    planned = evaluate(tuple(d["shape"]), sizes)
    if result.shape != planned:
        raise RuntimeError(f"gradc.compile: extern step {d['op']} (node {n}) returned shape "
                           f"{result.shape}, planned {planned}")
    if result.dtype == dtype and result.flags.c_contiguous and result.base is None:
        return result
    out = xp.empty(result.shape, dtype=dtype)
    out[...] = result
    return out
