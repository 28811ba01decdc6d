"""Shape arithmetic shared by the shape rules: broadcasting, dims, reductions."""
from __future__ import annotations

from ..size import Size


def fmt(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def broadcast_shapes(op: str, *shapes) -> Size:
    """NumPy/PyTorch broadcasting; the error names the op and every shape."""
    first = shapes[0]
    if len(shapes) == 2 and first == shapes[1]:
        return first if type(first) is Size else Size(first)
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(-ndim, 0):
        size = 1
        for s in shapes:
            if -i <= len(s):
                d = s[i]
                if d != 1:
                    if size != 1 and d != size:
                        raise RuntimeError(
                            f"{op}: shapes {', '.join(fmt(s) for s in shapes)} cannot be broadcast "
                            f"(size {size} vs {d} at dimension {ndim + i})")
                    size = d
        out.append(size)
    return Size(out)


def norm_dim(dim: int, ndim: int, op: str = "") -> int:
    """Wrap a negative dim; IndexError worded as PyTorch's."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op + ': ' if op else ''}Dimension out of range "
                         f"(expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def norm_dims(dim, ndim: int, op: str = "") -> tuple[int, ...]:
    """`dim` (None, int or sequence) as a sorted tuple of non-negative dims; None = all."""
    if dim is None or (isinstance(dim, (tuple, list)) and not dim):
        return tuple(range(ndim))  # as PyTorch's reductions, an empty dim list means all dims
    if isinstance(dim, int):
        dim = (dim,)
    dims = tuple(sorted({norm_dim(d, ndim, op) for d in dim}))
    if len(dims) != len(tuple(dim)):
        raise RuntimeError(f"{op}: dim {tuple(dim)} appears multiple times in the list of dims")
    return dims if ndim else ()


def reduced_shape(shape, dims, keepdim: bool) -> Size:
    if not keepdim and len(dims) == len(shape):
        return Size()
    if keepdim:
        return Size(1 if i in dims else s for i, s in enumerate(shape))
    return Size(s for i, s in enumerate(shape) if i not in dims)


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
