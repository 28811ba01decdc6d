"""gradc's ops: the op table (`registry.OPS`) and the public functions over it.

Importing this package declares every primitive (each module calls `defop`) and binds
the Tensor methods and operators to the same functions, so `gradc.exp(x)`, `x.exp()`
and `x.exp_()` all run the one definition.
"""
from __future__ import annotations

from ..tensor import Tensor
from . import inplace as _inplace
from . import pointwise as _pointwise
from .conv import conv1d, conv2d, max_pool2d
from .indexing import (
    cat,
    concat,
    concatenate,
    flip,
    gather,
    getitem,
    index_put,
    index_select,
    masked_fill,
    repeat,
    scatter_add,
    setitem,
    stack,
    sum_to,
    tril,
    triu,
)
from .linalg import bmm, dot, einsum, matmul, mm, outer
from .padding import constant_pad_nd
from .pointwise import (
    abs,
    absolute,
    add,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bitwise_xor,
    ceil,
    clamp,
    clamp_max,
    clamp_min,
    clip,
    cos,
    div,
    divide,
    eq,
    erf,
    exp,
    expm1,
    floor,
    floor_divide,
    ge,
    gelu,
    gt,
    isnan,
    le,
    lerp,
    log,
    log1p,
    logical_and,
    logical_not,
    logical_or,
    lt,
    maximum,
    minimum,
    mul,
    ne,
    neg,
    negative,
    pow,
    reciprocal,
    relu,
    remainder,
    round,
    rsqrt,
    sigmoid,
    sign,
    silu,
    sin,
    sqrt,
    square,
    sub,
    tanh,
    true_divide,
    where,
)
from .reduction import (
    amax,
    amin,
    argmax,
    argmin,
    argsort,
    cumsum,
    log_softmax,
    logsumexp,
    max,
    mean,
    min,
    prod,
    softmax,
    sort,
    std,
    sum,
    topk,
    var,
)
from .registry import OPS, Op, defop
from .views import (
    as_strided,
    broadcast_to,
    cast,
    chunk,
    clone,
    contiguous,
    expand,
    flatten,
    movedim,
    narrow,
    permute,
    reshape,
    select,
    split,
    squeeze,
    strided_scatter,
    swapaxes,
    swapdims,
    to_device,
    transpose,
    unbind,
    unflatten,
    unsqueeze,
    view,
)

multiply = mul
subtract = sub
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def _bind_methods() -> None:
    """Tensor methods, operators and in-place variants, all from the functions above."""
    g = globals()
    same_name = """abs absolute add amax amin argmax argmin argsort bitwise_and bitwise_not bitwise_or
        bitwise_xor ceil chunk clamp clamp_max clamp_min clip clone contiguous cos cumsum div
        divide eq erf exp expm1 flatten floor floor_divide gather ge gelu gt index_select isnan le
        lerp log log1p log_softmax logical_and logical_not logical_or logsumexp lt matmul max
        maximum mean min minimum movedim mm bmm mul multiply narrow ne neg negative outer pow prod
        reciprocal relu remainder round rsqrt scatter_add select sigmoid sign silu sin softmax sort
        split sqrt square squeeze std sub subtract sum swapaxes swapdims tanh topk transpose tril
        triu true_divide unbind unflatten unsqueeze var masked_fill dot sum_to""".split()
    for name in same_name:
        setattr(Tensor, name, g[name])
    Tensor.as_strided = as_strided

    def rev(fn):
        return lambda self, other: fn(other, self)

    operators = {
        "__add__": _pointwise.binary(_pointwise.ADD), "__radd__": rev(add),
        "__sub__": _pointwise.binary(_pointwise.SUB), "__rsub__": rev(sub),
        "__mul__": mul, "__rmul__": rev(mul), "__truediv__": div, "__rtruediv__": rev(div),
        "__floordiv__": floor_divide, "__rfloordiv__": rev(floor_divide),
        "__mod__": remainder, "__rmod__": rev(remainder), "__pow__": pow, "__rpow__": rev(pow),
        "__matmul__": matmul, "__rmatmul__": rev(matmul), "__eq__": eq, "__ne__": ne,
        "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
        "__and__": bitwise_and, "__rand__": rev(bitwise_and), "__or__": bitwise_or,
        "__ror__": rev(bitwise_or), "__xor__": bitwise_xor, "__rxor__": rev(bitwise_xor),
        "__neg__": neg, "__abs__": abs, "__invert__": bitwise_not, "__pos__": lambda self: self,
    }
    for name, fn in operators.items():
        setattr(Tensor, name, fn)

    inplace_of = {
        "add_": add, "sub_": sub, "mul_": mul, "div_": div, "pow_": pow, "clamp_": clamp,
        "clamp_min_": clamp_min, "clamp_max_": clamp_max, "exp_": exp, "log_": log, "neg_": neg,
        "relu_": relu, "sigmoid_": sigmoid, "tanh_": tanh, "sqrt_": sqrt, "abs_": abs,
        "masked_fill_": masked_fill, "remainder_": remainder, "floor_divide_": floor_divide,
        "tril_": tril, "triu_": triu, "scatter_add_": scatter_add, "lerp_": lerp,
        "bitwise_and_": bitwise_and, "bitwise_or_": bitwise_or, "bitwise_not_": bitwise_not,
    }
    ufuncs = {"add_": "add", "sub_": "subtract", "mul_": "multiply", "div_": "true_divide"}
    for name, fn in inplace_of.items():
        setattr(Tensor, name, _inplace._method(name, fn, ufuncs.get(name)))
    Tensor.copy_ = _inplace.copy_
    Tensor.fill_ = _inplace.fill_
    Tensor.zero_ = _inplace.zero_
    for dunder, name in (("__iadd__", "add_"), ("__isub__", "sub_"), ("__imul__", "mul_"),
                         ("__itruediv__", "div_"), ("__ipow__", "pow_"), ("__imod__", "remainder_"),
                         ("__ifloordiv__", "floor_divide_"), ("__iand__", "bitwise_and_"),
                         ("__ior__", "bitwise_or_")):
        setattr(Tensor, dunder, getattr(Tensor, name))


_bind_methods()
