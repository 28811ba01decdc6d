"""Pointwise primitives: one `defop` per op, with broadcasting and PyTorch promotion.

`pointwise(...)` builds the shape/dtype rule shared by all of them; each op then only
states its kernel, its derivative (in gradc ops) and, for the compiler, a C expression
(`lowering`, with `{0}`, `{1}`, ... for the operands).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..tensor import Tensor
from .dispatch import apply
from .registry import defop
from .shapes import broadcast_shapes
from .special import erf as _erf_kernel

FLOAT, BOOL_OUT, INTEGRAL = "float", "bool", "integral"


def pointwise_meta(name: str, kind: str | None = None):
    """The rule of a pointwise op: broadcast the tensor shapes, promote the dtypes.

    kind: None (result = promoted type), FLOAT (integers compute in the default float
    type), BOOL_OUT (compute in the promoted type, return bool), INTEGRAL (bool and
    integer types only, as PyTorch's bitwise ops).
    """

    def meta(*args, **_attrs):  # attrs (gelu's approximate) do not change the rule
        first = args[0]
        if len(args) == 1:
            dt, shape = first._storage.dtype, first._shape
        elif (len(args) == 2 and isinstance(first, Tensor) and isinstance(args[1], Tensor)
              and first._shape == args[1]._shape
              and first._shape and first._storage.dtype is args[1]._storage.dtype):
            dt, shape = first._storage.dtype, first._shape  # same shape, same dtype
        else:
            dt = dtypes.result_type(*args)
            shapes = [a._shape for a in args if isinstance(a, Tensor)]
            shape = shapes[0] if len(shapes) == 1 else broadcast_shapes(name, *shapes)
        if kind is None:
            return ((shape, dt),), dt
        if kind == FLOAT:
            if not dt.is_floating_point:
                dt = dtypes.get_default_dtype()
            return ((shape, dt),), dt
        if kind == BOOL_OUT:
            return ((shape, dtypes.bool_),), dt
        if dt.is_floating_point:
            raise RuntimeError(f"{name}: not implemented for floating-point dtype {dt} "
                               "(bool and integer tensors only)")
        return ((shape, dt),), dt

    return meta


def defpointwise(name, kernel, backward=None, *, kind=None, saves="", lowering=None, quiet=False):
    """Declare a pointwise op; `quiet` silences numpy's floating-point warnings
    (log(0), x/0, ...) which PyTorch does not emit."""
    if quiet:
        raw = kernel

        def kernel(xp, *a, **k):
            with np.errstate(all="ignore"):
                return raw(xp, *a, **k)

    return defop(name, meta=pointwise_meta(name, kind), kernel=kernel, backward=backward,
                 saves=saves, kind="pointwise", lowering=lowering)


# ---------------------------------------------------------------- arithmetic
ADD = defpointwise("add", lambda xp, a, b: a + b, lambda ctx, g: (g, g), lowering="({0} + {1})")
def _no_bool(kernel, message):
    """PyTorch's RuntimeError (numpy raises TypeError) for `-` on bool tensors. The dtype is
    checked first: older cupy computes bool `-` (as xor/not) instead of raising."""
    def checked(xp, *arrays):
        if any(getattr(getattr(a, "dtype", None), "kind", None) == "b" for a in arrays):
            raise RuntimeError(message)
        try:
            return kernel(xp, *arrays)
        except TypeError as e:
            raise RuntimeError(message) from e
    return checked


SUB = defpointwise("sub", _no_bool(lambda xp, a, b: a - b, "Subtraction, the `-` operator, with two bool tensors "
                                   "is not supported. Use the `^` or `logical_xor()` operator instead."),
                   lambda ctx, g: (g, -g), lowering="({0} - {1})")


def _mul_bw(ctx, g):
    a, b = ctx.inputs
    need_a, need_b = ctx.needs_input_grad
    return (g * b if need_a else None, g * a if need_b else None)


MUL = defpointwise("mul", lambda xp, a, b: a * b, _mul_bw, saves="inputs", lowering="({0} * {1})")


def _div_bw(ctx, g):
    a, b = ctx.inputs
    need_a, need_b = ctx.needs_input_grad
    return (g / b if need_a else None, -g * a / (b * b) if need_b else None)


DIV = defpointwise("div", lambda xp, a, b: a / b, _div_bw, kind=FLOAT, saves="inputs",
                   lowering="({0} / {1})", quiet=True)
FLOOR_DIVIDE = defpointwise("floor_divide", lambda xp, a, b: xp.floor_divide(a, b), quiet=True,
                            lowering="gradc_floordiv({0}, {1})")


def _remainder_bw(ctx, g):
    a, b = ctx.inputs
    need_b = ctx.needs_input_grad[1]
    return (g, -g * floor_divide(a, b) if need_b else None)


REMAINDER = defpointwise("remainder", lambda xp, a, b: xp.remainder(a, b), _remainder_bw,
                         saves="inputs", quiet=True, lowering="gradc_remainder({0}, {1})")


def _pow_kernel(xp, a, b):
    if isinstance(b, (int, float)) and b == int(b) and 0 <= b <= 4:
        # small integer powers as products: numpy's float32 x**3 is ~20x slower than x*x*x
        n = int(b)
        if n == 0:
            return xp.ones_like(a)
        out = a
        for _ in range(n - 1):
            out = out * a
        return out
    if xp is not np and _negative_int_power(a, b):  # numpy raises this itself; cupy gives garbage
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    try:
        return a ** b
    except ValueError as e:  # numpy: "Integers to negative integer powers are not allowed."
        raise RuntimeError(str(e)) from None


def _negative_int_power(a, b) -> bool:
    """Whether `a ** b` raises numpy's "Integers to negative integer powers" error."""
    base = a if hasattr(a, "dtype") else b
    if base.dtype.kind not in "iu":
        return False
    if hasattr(b, "dtype"):
        return b.dtype.kind == "i" and b.size > 0 and bool((b < 0).any())
    return isinstance(b, int) and b < 0


def _pow_bw(ctx, g):
    a, b = ctx.inputs
    need_a, need_b = ctx.needs_input_grad
    ga = gb = None
    if need_a:
        if isinstance(b, Tensor):
            zero = b == 0  # derivative 0 there; b -> 1 avoids 0 * 0 ** -1 (a NaN and a warning)
            e = where(zero, 1.0, b)
            ga = where(zero, 0.0, g * e * a ** (e - 1))
        else:
            ga = g * 0.0 if b == 0 else g * b * a ** (b - 1)
    if need_b:
        if isinstance(a, Tensor):
            flat = (a == 0) & (b >= 0)  # 0 ** b: derivative 0 (log(1) there: no 0 * -inf warning)
            gb = where(flat, 0.0, g * a ** b * log(where(flat, 1.0, a)))
        else:
            if a == 0:  # as PyTorch: 0 ** b has derivative 0 w.r.t. b >= 0
                gb = where(b >= 0, 0.0, g * float("-inf"))  # b < 0: inf * log(0)
            else:
                gb = g * a ** b * (math.log(a) if a > 0 else float("nan"))
    return ga, gb


POW = defpointwise("pow", _pow_kernel, _pow_bw, saves="inputs", quiet=True, lowering="pow({0}, {1})")


def _minmax_bw(ctx, g):
    a, b = ctx.inputs
    pick = ctx.op.extra["pick"]  # a > b for maximum, a < b for minimum
    tie = a == b
    half = g * 0.5
    # as PyTorch: an input gets nothing only where the other strictly wins (NaN: both get g)
    ga = where(pick(b, a), 0.0, where(tie, half, g)) if ctx.needs_input_grad[0] else None
    gb = where(pick(a, b), 0.0, where(tie, half, g)) if ctx.needs_input_grad[1] else None
    return ga, gb


MAXIMUM = defpointwise("maximum", lambda xp, a, b: xp.maximum(a, b), _minmax_bw, saves="inputs",
                       lowering="gradc_max({0}, {1})")
MAXIMUM.extra["pick"] = lambda a, b: a > b
MINIMUM = defpointwise("minimum", lambda xp, a, b: xp.minimum(a, b), _minmax_bw, saves="inputs",
                       lowering="gradc_min({0}, {1})")
MINIMUM.extra["pick"] = lambda a, b: a < b

# ---------------------------------------------------------------- comparisons and logic
EQ = defpointwise("eq", lambda xp, a, b: a == b, kind=BOOL_OUT, lowering="({0} == {1})")
NE = defpointwise("ne", lambda xp, a, b: a != b, kind=BOOL_OUT, lowering="({0} != {1})")
LT = defpointwise("lt", lambda xp, a, b: a < b, kind=BOOL_OUT, lowering="({0} < {1})")
LE = defpointwise("le", lambda xp, a, b: a <= b, kind=BOOL_OUT, lowering="({0} <= {1})")
GT = defpointwise("gt", lambda xp, a, b: a > b, kind=BOOL_OUT, lowering="({0} > {1})")
GE = defpointwise("ge", lambda xp, a, b: a >= b, kind=BOOL_OUT, lowering="({0} >= {1})")
BITWISE_AND = defpointwise("bitwise_and", lambda xp, a, b: a & b, kind=INTEGRAL, lowering="({0} & {1})")
BITWISE_OR = defpointwise("bitwise_or", lambda xp, a, b: a | b, kind=INTEGRAL, lowering="({0} | {1})")
BITWISE_XOR = defpointwise("bitwise_xor", lambda xp, a, b: a ^ b, kind=INTEGRAL, lowering="({0} ^ {1})")
BITWISE_NOT = defpointwise("bitwise_not", lambda xp, a: ~a, kind=INTEGRAL, lowering="(~{0})")
LOGICAL_NOT = defpointwise("logical_not", lambda xp, a: xp.logical_not(a), kind=BOOL_OUT,
                           lowering="(!{0})")

# ---------------------------------------------------------------- unary math
NEG = defpointwise("neg", _no_bool(lambda xp, a: -a, "Negation, the `-` operator, on a bool tensor is not "
                                   "supported. If you are trying to invert a mask, use the `~` or "
                                   "`logical_not()` operator instead."),
                   lambda ctx, g: -g, lowering="(-{0})")


def _sign_kernel(xp, a):
    if a.dtype == bool:
        return a.copy()
    # (a > 0) - (a < 0), as PyTorch and the lowering: sign(NaN) is 0, not NaN
    return (a > 0).astype(a.dtype) - (a < 0).astype(a.dtype)


SIGN = defpointwise("sign", _sign_kernel, lambda ctx, g: g * 0.0, lowering="(({0} > 0) - ({0} < 0))")
ABS = defpointwise("abs", lambda xp, a: xp.abs(a), lambda ctx, g: g * sign(ctx.inputs[0]),
                   saves="inputs", lowering="fabs({0})")
EXP = defpointwise("exp", lambda xp, a: xp.exp(a), lambda ctx, g: g * ctx.output, kind=FLOAT,
                   saves="output", lowering="exp({0})", quiet=True)
LOG = defpointwise("log", lambda xp, a: xp.log(a), lambda ctx, g: g / ctx.inputs[0], kind=FLOAT,
                   saves="inputs", lowering="log({0})", quiet=True)
LOG1P = defpointwise("log1p", lambda xp, a: xp.log1p(a), lambda ctx, g: g / (ctx.inputs[0] + 1),
                     kind=FLOAT, saves="inputs", lowering="log1p({0})", quiet=True)
EXPM1 = defpointwise("expm1", lambda xp, a: xp.expm1(a), lambda ctx, g: g * (ctx.output + 1),
                     kind=FLOAT, saves="output", lowering="expm1({0})", quiet=True)
SQRT = defpointwise("sqrt", lambda xp, a: xp.sqrt(a), lambda ctx, g: g / (2 * ctx.output),
                    kind=FLOAT, saves="output", lowering="sqrt({0})", quiet=True)
RSQRT = defpointwise("rsqrt", lambda xp, a: 1 / xp.sqrt(a),
                     lambda ctx, g: -0.5 * g * ctx.output ** 3, kind=FLOAT, saves="output",
                     lowering="(1 / sqrt({0}))", quiet=True)
RECIPROCAL = defpointwise("reciprocal", lambda xp, a: 1 / a,
                          lambda ctx, g: -g * ctx.output * ctx.output, kind=FLOAT, saves="output",
                          lowering="(1 / {0})", quiet=True)
SIN = defpointwise("sin", lambda xp, a: xp.sin(a), lambda ctx, g: g * cos(ctx.inputs[0]),
                   kind=FLOAT, saves="inputs", lowering="sin({0})")
COS = defpointwise("cos", lambda xp, a: xp.cos(a), lambda ctx, g: -g * sin(ctx.inputs[0]),
                   kind=FLOAT, saves="inputs", lowering="cos({0})")
TANH = defpointwise("tanh", lambda xp, a: xp.tanh(a), lambda ctx, g: g * (1 - ctx.output * ctx.output),
                    kind=FLOAT, saves="output", lowering="tanh({0})")


def _sigmoid_kernel(xp, a):
    # exp of -|a| never overflows; this branch-free form is exact on both tails
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))


SIGMOID = defpointwise("sigmoid", _sigmoid_kernel, lambda ctx, g: g * ctx.output * (1 - ctx.output),
                       kind=FLOAT, saves="output", lowering="gradc_sigmoid({0})")
ERF = defpointwise("erf", _erf_kernel,
                   lambda ctx, g: g * (2 / math.sqrt(math.pi)) * exp(-ctx.inputs[0] * ctx.inputs[0]),
                   kind=FLOAT, saves="inputs", lowering="erf({0})")
RELU = defpointwise("relu", lambda xp, a: xp.maximum(a, 0).astype(a.dtype, copy=False),
                    lambda ctx, g: where(ctx.output <= 0, 0.0, g), saves="output",
                    lowering="gradc_max({0}, 0)")
FLOOR = defpointwise("floor", lambda xp, a: xp.floor(a), lambda ctx, g: g * 0.0, lowering="floor({0})")
CEIL = defpointwise("ceil", lambda xp, a: xp.ceil(a), lambda ctx, g: g * 0.0, lowering="ceil({0})")
ROUND = defpointwise("round", lambda xp, a: a.round(), lambda ctx, g: g * 0.0, lowering="rint({0})")

_SQRT1_2 = 1 / math.sqrt(2)
_SQRT2_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


def _gelu_kernel(xp, x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + xp.tanh(_SQRT2_PI * (x + _GELU_C * x * x * x)))
    return 0.5 * x * (1 + _erf_kernel(xp, x * _SQRT1_2))


def _gelu_bw(ctx, g):
    (x,) = ctx.inputs
    if ctx.attrs.get("approximate", "none") == "tanh":
        t = tanh(_SQRT2_PI * (x + _GELU_C * x * x * x))
        dt = _SQRT2_PI * (1 + 3 * _GELU_C * x * x)
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dt)
    cdf = 0.5 * (1 + erf(x * _SQRT1_2))
    pdf = exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return g * (cdf + x * pdf)




def _gelu_lowering(attrs):
    if attrs.get("approximate", "none") == "tanh":
        return f"(0.5 * {{0}} * (1 + tanh({_SQRT2_PI!r} * ({{0}} + {_GELU_C!r} * {{0}} * {{0}} * {{0}}))))"
    return f"(0.5 * {{0}} * (1 + erf({{0}} * {_SQRT1_2!r})))"


GELU = defop("gelu", meta=pointwise_meta("gelu", FLOAT), kernel=_gelu_kernel, backward=_gelu_bw,
             saves="inputs", kind="pointwise", lowering=_gelu_lowering)


def _clamp_meta(x, min=None, max=None):
    if min is None and max is None:
        raise RuntimeError("clamp: At least one of 'min' or 'max' must not be None")
    return pointwise_meta("clamp")(x, *(v for v in (min, max) if v is not None))


def _clamp_kernel(xp, x, min=None, max=None):
    return xp.clip(x, min, max)


def _clamp_bw(ctx, g):
    (x,) = ctx.inputs
    lo, hi = ctx.attrs.get("min"), ctx.attrs.get("max")
    keep = None
    if lo is not None:
        keep = x >= lo
    if hi is not None:
        keep = (x <= hi) if keep is None else keep & (x <= hi)
    return where(keep, g, 0.0)


def _clamp_lowering(attrs):
    out = "{0}"
    if attrs.get("min") is not None:
        out = f"gradc_max({out}, {{min}})"
    if attrs.get("max") is not None:
        out = f"gradc_min({out}, {{max}})"
    return out


CLAMP = defop("clamp", meta=_clamp_meta, kernel=_clamp_kernel, backward=_clamp_bw, saves="inputs",
              kind="pointwise", lowering=_clamp_lowering)


def _where_meta(cond, a, b):
    if not isinstance(cond, Tensor) or cond.dtype is not dtypes.bool_:
        raise RuntimeError(f"where: expected condition to be a bool tensor, but got "
                           f"{getattr(cond, 'dtype', type(cond).__name__)}")
    dt = dtypes.result_type(a, b)
    shapes = [t._shape for t in (cond, a, b) if isinstance(t, Tensor)]
    return ((broadcast_shapes("where", *shapes), dt),), dt


def _where_bw(ctx, g):
    cond = ctx.inputs[0]
    _, need_a, need_b = ctx.needs_input_grad
    return (None, where(cond, g, 0.0) if need_a else None, where(cond, 0.0, g) if need_b else None)


def _where_kernel(xp, cond, a, b):
    if xp is np:
        out = _where_zero(cond, a, b)
        if out is not None:
            return out
    return xp.where(cond, a, b)


_SAME_SIZE_INT = {4: np.int32, 8: np.int64}


def _is_plus_zero(v) -> bool:
    return type(v) in (int, float) and v == 0 and math.copysign(1.0, v) > 0


def _where_zero(cond, a, b):
    """where(cond, x, 0) or where(cond, 0, x), for a float32/64 array x of cond's shape, as x's
    bits anded with a mask word per element (all ones where x is kept): numpy's where with a
    scalar branch takes a data-dependent branch per element, 8x slower on a random mask (a
    ReLU's backward). Bit-exact (NaN payloads and -0.0 kept, +0.0 written). None: not this case."""
    if _is_plus_zero(b):
        x, keep_where_true = a, True
    elif _is_plus_zero(a):
        x, keep_where_true = b, False
    else:
        return None
    if (type(x) is not np.ndarray or type(cond) is not np.ndarray or cond.dtype != np.bool_
            or x.dtype.kind != "f" or x.shape != cond.shape or not x.ndim):  # 0-d: ufuncs return scalars
        return None
    ints = _SAME_SIZE_INT.get(x.dtype.itemsize)
    if ints is None:
        return None
    # 0 - True = -1 (all ones) keeps x where cond; True - 1 = 0 clears it there
    mask = np.subtract(0, cond, dtype=ints) if keep_where_true else np.subtract(cond, 1, dtype=ints)
    np.bitwise_and(mask, x.view(ints), out=mask)
    return mask.view(x.dtype)


WHERE = defop("where", meta=_where_meta, kernel=_where_kernel, backward=_where_bw, saves="inputs",
              kind="pointwise", lowering="({0} ? {1} : {2})", cast_from=1)


# ---------------------------------------------------------------- public functions
def binary(op):
    def fn(input, other):
        return apply(op, input, other)

    fn.__name__ = op.name
    fn.__doc__ = f"Elementwise `{op.name}` with broadcasting and PyTorch type promotion."
    return fn


def _unary(op):
    def fn(input):
        return apply(op, input)

    fn.__name__ = op.name
    fn.__doc__ = f"Elementwise `{op.name}`."
    return fn


def add(input, other, *, alpha=1):
    return apply(ADD, input, other if alpha == 1 else other * alpha)


def sub(input, other, *, alpha=1):
    return apply(SUB, input, other if alpha == 1 else other * alpha)


def div(input, other, *, rounding_mode=None):
    if rounding_mode is None:
        return apply(DIV, input, other)
    if rounding_mode == "floor":
        return apply(FLOOR_DIVIDE, input, other)
    if rounding_mode == "trunc":
        q = apply(DIV, input, other)
        t = where(q < 0, ceil(q), floor(q))
        return t.to(dtypes.result_type(input, other))
    raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found '{rounding_mode}'")


mul = binary(MUL)
true_divide = divide = binary(DIV)
floor_divide = binary(FLOOR_DIVIDE)
remainder = binary(REMAINDER)
pow = binary(POW)
maximum = binary(MAXIMUM)
minimum = binary(MINIMUM)
eq, ne, lt, le, gt, ge = (binary(o) for o in (EQ, NE, LT, LE, GT, GE))
bitwise_and, bitwise_or, bitwise_xor = (binary(o) for o in (BITWISE_AND, BITWISE_OR, BITWISE_XOR))
bitwise_not = _unary(BITWISE_NOT)
logical_not = _unary(LOGICAL_NOT)
(neg, sign, abs, exp, log, log1p, expm1, sqrt, rsqrt, reciprocal, sin, cos, tanh, sigmoid, erf,
 relu, floor, ceil, round) = (_unary(o) for o in (
    NEG, SIGN, ABS, EXP, LOG, LOG1P, EXPM1, SQRT, RSQRT, RECIPROCAL, SIN, COS, TANH, SIGMOID, ERF,
    RELU, FLOOR, CEIL, ROUND))
negative = neg
absolute = abs


def gelu(input, approximate: str = "none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"approximate argument must be either none or tanh, got {approximate!r}")
    return apply(GELU, input, approximate=approximate)


def silu(input):
    return input * sigmoid(input)


def clamp(input, min=None, max=None):
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = input
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    return apply(CLAMP, input, min=min, max=max)


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min)


def clamp_max(input, max):
    return clamp(input, max=max)


def where(condition, input, other):
    return apply(WHERE, condition, input, other)


def square(input):
    return input * input


def logical_and(input, other):
    return bitwise_and(input.bool(), other.bool() if isinstance(other, Tensor) else bool(other))


def logical_or(input, other):
    return bitwise_or(input.bool(), other.bool() if isinstance(other, Tensor) else bool(other))


def isnan(input):
    return input != input


def lerp(input, end, weight):
    return input + weight * (end - input)
