"""`gradc.Size`: the tuple subclass returned by `Tensor.shape` / `Tensor.size()`."""
from __future__ import annotations


class Size(tuple):
    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self) -> str:
        return f"gradc.Size([{', '.join(str(s) for s in self)}])"

    def __getitem__(self, key):
        out = tuple.__getitem__(self, key)
        return Size(out) if isinstance(key, slice) else out

    def __add__(self, other):
        return Size(tuple(self) + tuple(other))


def contiguous_strides(shape) -> tuple[int, ...]:
    """Row-major strides (in elements) of `shape`; size-0 dims count as 1, as PyTorch."""
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))
