"""Scalar types and PyTorch's type-promotion rules.

A `dtype` wraps the numpy dtype that stores it; numpy and cupy share those, so the
eager kernels of every device agree on representation. Promotion is PyTorch's, not
numpy's: categories (bool < integer < floating) decide first, then the participants'
*priority*: tensors with dimensions beat zero-dim tensors, which beat Python scalars.
A higher-category scalar lifts the result to the default dtype of its category.
"""
from __future__ import annotations

import numpy as np


class dtype:
    """A gradc scalar type (`gradc.float32`, ...); compare with `is` or `==`."""

    __slots__ = ("name", "np", "is_floating_point", "itemsize", "category")

    def __init__(self, name: str, np_dtype: type, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.category = category  # 0 bool, 1 integer, 2 floating
        self.is_floating_point = category == 2
        self.itemsize = self.np.itemsize

    @property
    def is_signed(self) -> bool:
        return self.name not in ("uint8", "bool")

    def __repr__(self) -> str:
        return f"gradc.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


bool_ = dtype("bool", np.bool_, 0)
uint8 = dtype("uint8", np.uint8, 1)
int8 = dtype("int8", np.int8, 1)
int16 = dtype("int16", np.int16, 1)
int32 = dtype("int32", np.int32, 1)
int64 = dtype("int64", np.int64, 1)
float16 = dtype("float16", np.float16, 2)
float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, float32, float64)
_BY_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_default_float = float32


def _by_name(name: str) -> dtype:
    return _BY_NAME[name]


def from_numpy_dtype(np_dtype) -> dtype:
    """The gradc dtype stored as `np_dtype`; TypeError for types gradc has no name for."""
    d = _BY_NP.get(np.dtype(np_dtype))
    if d is None:
        raise TypeError(f"gradc has no dtype for numpy dtype {np.dtype(np_dtype)}")
    return d


def get_default_dtype() -> dtype:
    return _default_float


def set_default_dtype(d: dtype) -> None:
    global _default_float
    if not d.is_floating_point:
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default_float = d


def promote_types(a: dtype, b: dtype) -> dtype:
    """The smallest type both `a` and `b` convert to without leaving their category."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    return _BY_NP[np.promote_types(a.np, b.np)]


def scalar_dtype(value) -> dtype:
    """The dtype a Python scalar takes when it becomes a tensor on its own."""
    if isinstance(value, bool):
        return bool_
    if isinstance(value, int):
        return int64
    if isinstance(value, float):
        return _default_float
    if isinstance(value, np.generic):
        return from_numpy_dtype(value.dtype)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def result_type(*operands) -> dtype:
    """PyTorch's `result_type` over tensors and Python scalars (see module docstring)."""
    if len(operands) == 2:
        a, b = operands
        da, db = getattr(a, "dtype", None), getattr(b, "dtype", None)
        if da is db and da is not None and a._shape and b._shape:
            return da  # the common case: two dimensioned tensors of one dtype
    dim_t = zero_t = None
    scalar_cat = -1
    for x in operands:
        d = getattr(x, "dtype", None)
        if isinstance(d, dtype):
            if x.ndim:
                dim_t = d if dim_t is None else promote_types(dim_t, d)
            else:
                zero_t = d if zero_t is None else promote_types(zero_t, d)
        elif x is not None:
            scalar_cat = max(scalar_cat, scalar_dtype(x).category)
    result = dim_t
    if zero_t is not None and (result is None or zero_t.category > result.category):
        result = zero_t if result is None else promote_types(result, zero_t)
    if scalar_cat > (result.category if result is not None else -1):
        result = (bool_, int64, _default_float)[scalar_cat]
    if result is None:
        raise TypeError("result_type needs at least one operand")
    return result


def to_dtype(value) -> dtype:
    """Accept a gradc dtype, a numpy dtype or a Python type (`float`, `int`, `bool`)."""
    if isinstance(value, dtype):
        return value
    if value is float:
        return _default_float
    if value is int:
        return int64
    if value is bool:
        return bool_
    return from_numpy_dtype(value)
