"""Matrix products: `matmul` (the primitive, >= 2-D with batch broadcasting) and
`einsum`; `mm`, `bmm`, `outer`, `dot` and 1-D matmul are composed from them."""
from __future__ import annotations

import string

from .. import dtypes
from ..size import Size
from ..tensor import Tensor
from .dispatch import apply
from .registry import defop
from .shapes import broadcast_shapes, fmt


def _matmul_meta(a, b):
    sa, sb = a._shape, b._shape
    if len(sa) == 2 and len(sb) == 2:  # the common case first, without Size's Python indexing
        (m, k), (k2, n) = sa, sb
        dt = a._storage.dtype
        if k == k2 and dt is b._storage.dtype and dt is not dtypes.bool_:
            return ((Size((m, n)), dt),), None
    if a.ndim < 2 or b.ndim < 2:
        raise RuntimeError(f"matmul: both arguments must be at least 2-D, got {fmt(a.shape)} and {fmt(b.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise RuntimeError(f"matmul: mat1 and mat2 shapes cannot be multiplied "
                           f"({'x'.join(map(str, a.shape[-2:]))} and {'x'.join(map(str, b.shape[-2:]))}); "
                           f"shapes {fmt(a.shape)} and {fmt(b.shape)}")
    if a.dtype is not b.dtype:
        raise RuntimeError(f"matmul: expected both arguments to have the same dtype, but got: "
                           f"{a.dtype} != {b.dtype}")
    if a.dtype is dtypes.bool_:
        raise RuntimeError("matmul: not implemented for 'Bool'")
    try:
        batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    except RuntimeError as e:  # name the operands' shapes, not only their batch parts
        raise RuntimeError(f"matmul: the batch dimensions of shapes {fmt(a.shape)} and {fmt(b.shape)} "
                           f"cannot be broadcast ({e})") from None
    return ((tuple(batch) + (a.shape[-2], b.shape[-1]), a.dtype),), None


def _matmul_kernel(xp, a, b):
    """A batch of rows times one matrix (a linear layer on [batch, seq, features]) is one
    GEMM over the flattened rows: array libraries otherwise run one small GEMM per batch
    element (measured 5x slower on a transformer block's projections). When every row of
    `a` is the same memory (a broadcast, as the gradient of a mean is), one row is
    multiplied and its result copied to every row: the same numbers, a vector-matrix
    product instead of a GEMM (4.7 ms -> 0.1 ms for a [256, 1024] x [1024, 1024] one)."""
    if b.ndim == 2 and a.ndim >= 2 and a.shape[-2] > 1 and not any(a.strides[:-1]):
        row = xp.matmul(a[(0,) * (a.ndim - 2)][:1], b)
        return xp.ascontiguousarray(xp.broadcast_to(row, (*a.shape[:-1], b.shape[-1])))
    if b.ndim == 2 and a.ndim > 2:  # written through a 2-D view of a fresh result (not a reshaped copy)
        out = xp.empty((*a.shape[:-1], b.shape[-1]), xp.result_type(a, b))
        xp.matmul(a.reshape(-1, a.shape[-1]), b, out=out.reshape(-1, b.shape[-1]))
        return out
    return xp.matmul(a, b)


def _matmul_bw(ctx, g):
    """A weight shared by every batch element gets its gradient from one GEMM over the
    flattened rows; a weight read transposed (a linear layer's `weight.T`) gets it in its
    own layout, (g^T a)^T, so accumulating it into `.grad` copies no transposed matrix."""
    a, b = ctx.inputs
    need_a, need_b = ctx.needs_input_grad
    grad_b = None
    if need_b:
        sb = tuple(b._shape)
        if len(sb) == 2 and a.ndim > 2:
            a, g_rows = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
        else:
            g_rows = g
        transposed = len(sb) == 2 and sb[0] > 1 and sb[1] > 1 and b.stride() == (1, sb[0])
        grad_b = matmul(g_rows.mT, a).mT if transposed else matmul(a.mT, g_rows)
    return (matmul(g, b.mT) if need_a else None, grad_b)


MATMUL = defop("matmul", meta=_matmul_meta, kernel=_matmul_kernel, backward=_matmul_bw, saves="inputs")


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """PyTorch's matmul: 1-D operands get a dim prepended/appended, then removed."""
    sa, sb = tuple(input._shape), tuple(other._shape)  # plain tuples: Size indexes in Python
    if len(sa) == 2 and len(sb) == 2 and sa[1] == sb[0]:
        return apply(MATMUL, input, other)
    if not sa or not sb:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{input.ndim}D and {other.ndim}D")
    k = sb[-2] if len(sb) > 1 else sb[0]
    if sa[-1] != k:  # checked here so that the error names the shapes as given (1-D too)
        raise RuntimeError(f"matmul: shapes {fmt(input.shape)} and {fmt(other.shape)} cannot be "
                           f"multiplied ({input.shape[-1]} vs {k} in the contracted dimension)")
    a = input.unsqueeze(0) if input.ndim == 1 else input
    b = other.unsqueeze(-1) if other.ndim == 1 else other
    out = apply(MATMUL, a, b)
    if input.ndim == 1:  # first: for 1-D @ 1-D, (1, 1) -> (1,) -> ()
        out = out.squeeze(-2)
    if other.ndim == 1:
        out = out.squeeze(-1)
    return out


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2D tensors, got {input.ndim}D and {mat2.ndim}D")
    return apply(MATMUL, input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: expected 3D tensors, got {input.ndim}D and {mat2.ndim}D")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ: {fmt(input.shape)} and {fmt(mat2.shape)}")
    return apply(MATMUL, input, mat2)


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    return input.unsqueeze(1) * vec2.unsqueeze(0)


def dot(input: Tensor, other: Tensor) -> Tensor:
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


# ---------------------------------------------------------------- einsum
def parse_einsum(equation: str, shapes) -> tuple[list[str], str]:
    """Explicit form of an einsum equation: ellipses become letters, `->` is filled in."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise RuntimeError(f"einsum(): {len(terms)} operands in the equation but {len(shapes)} were given")
    used = set(eq) - set(".,->")
    spare = [c for c in string.ascii_uppercase + string.ascii_lowercase if c not in used]
    ell_n = max((len(s) - (len(t) - 3) for t, s in zip(terms, shapes) if "..." in t), default=0)
    ell = "".join(spare[:ell_n])
    out_terms = []
    for t, s in zip(terms, shapes):
        if "..." in t:
            n = len(s) - (len(t) - 3)
            t = t.replace("...", ell[ell_n - n:] if n else "")
        if len(t) != len(s):
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(t)}) does not "
                               f"match the number of dimensions ({len(s)}) for operand "
                               f"{len(out_terms)}")
        out_terms.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {}
        for t in out_terms:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return out_terms, out


def _einsum_meta(*operands, equation):
    terms, out = parse_einsum(equation, [o.shape for o in operands])
    for i, c in enumerate(out):
        if c in out[:i]:
            raise RuntimeError(f"einsum(): output subscript {c} appears more than once in the output")
        if not any(c in t for t in terms):
            raise RuntimeError(f"einsum(): output subscript {c} does not appear in the equation for "
                               "any input operand")
    sizes = {}
    for t, o in zip(terms, operands):
        for c, n in zip(t, o.shape):
            if sizes.get(c, 1) != 1 and n != 1 and sizes[c] != n:
                raise RuntimeError(f"einsum(): operands do not broadcast with remapped shapes "
                                   f"for subscript '{c}': {sizes[c]} vs {n}")
            sizes[c] = max(sizes.get(c, 1), n)
    dt = dtypes.result_type(*operands)
    return ((tuple(sizes[c] for c in out), dt),), dt


def _einsum_kernel(xp, *arrays, equation):
    terms, out = parse_einsum(equation, [a.shape for a in arrays])
    return xp.einsum(",".join(terms) + "->" + out, *arrays)


def _einsum_bw(ctx, g):
    ops = ctx.inputs
    terms, out = parse_einsum(ctx.attrs["equation"], [o.shape for o in ops])
    grads = []
    for i, (term, need) in enumerate(zip(terms, ctx.needs_input_grad)):
        if not need:
            grads.append(None)
            continue
        uniq = "".join(dict.fromkeys(term))  # a repeated subscript ("ii") is one diagonal
        others = [t for j, t in enumerate(terms) if j != i]
        reachable = set(out).union(*others)
        kept = "".join(c for c in uniq if c in reachable)
        gi = einsum(",".join([out] + others) + "->" + kept, g, *[o for j, o in enumerate(ops) if j != i])
        if kept != uniq:
            shape = [ops[i].shape[term.index(c)] if c not in kept else gi.shape[kept.index(c)] for c in uniq]
            gi = gi.reshape([gi.shape[kept.index(c)] if c in kept else 1 for c in uniq]).expand(shape)
        if uniq != term:
            gi = _embed_diagonals(gi, uniq, term)
        grads.append(gi)
    return tuple(grads)


def _embed_diagonals(g, uniq: str, term: str) -> Tensor:
    """The gradient w.r.t. an operand with repeated subscripts: `g` (indexed by the distinct
    subscripts `uniq`) placed on the diagonals, zero elsewhere. Each repeat of a subscript
    becomes a fresh one tied to the first by an identity matrix."""
    from ..factories import eye

    fresh = iter(c for c in string.ascii_letters if c not in term)
    new_term, ties, eyes = "", [], []
    for c in term:
        if c in new_term:
            f = next(fresh)
            new_term += f
            ties.append(c + f)
            n = g.shape[uniq.index(c)]
            eyes.append(eye(n, dtype=g.dtype, device=g.device))
        else:
            new_term += c
    return einsum(",".join([uniq] + ties) + "->" + new_term, g, *eyes)


EINSUM = defop("einsum", meta=_einsum_meta, kernel=_einsum_kernel, backward=_einsum_bw, saves="inputs")


def einsum(equation: str, *operands) -> Tensor:
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return apply(EINSUM, *operands, equation=equation)
