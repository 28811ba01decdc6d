"""The op sample table that tests/test_ops.py is parametrized over.

One `OpInfo` per sample: the callable is written once against a module `m` (gradc or
torch, which share the API; `torch_fn` overrides it where torch spells it otherwise),
`make(rng, dtype)` builds the inputs as numpy arrays (floating arrays take the dtype
under test; index tensors and masks keep int64 / bool) and Python scalars.

Inputs are chosen away from non-differentiable points (positive for log/sqrt, no ties
for max/sort, away from clamp bounds) unless the sample exists to check PyTorch's
convention at such a point (`gradcheck=False`: gradients are compared to torch only).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FLOAT = ("float32",)
INT = ("int32", "int64")
F_INT = FLOAT + INT


@dataclass(frozen=True)
class OpInfo:
    name: str  # unique sample id, e.g. "add/broadcast"
    op: str  # the public op it exercises
    fn: Callable  # fn(m, *inputs) with m = gradc (or torch unless torch_fn is given)
    make: Callable  # make(rng, np.dtype) -> tuple of numpy arrays / Python scalars
    torch_fn: Callable | None = None  # torch_fn(torch, *inputs), when torch spells it otherwise
    np_fn: Callable | None = None  # numpy reference on the float64/int inputs
    torch: bool = True  # compare with torch
    torch_grad: bool = True  # compare gradients with torch (False where torch's backward fails)
    dtypes: tuple = FLOAT  # dtypes of the forward tests
    differentiable: bool = True
    gradcheck: bool = True  # False at points where only torch's convention is checked
    gradgrad: bool = False
    rtol: float = 1e-5
    atol: float = 1e-5

    def __repr__(self) -> str:
        return self.name

    def gradc_call(self, gradc, *args):
        return self.fn(gradc, *args)

    def torch_call(self, torch, *args):
        return (self.torch_fn or self.fn)(torch, *args)


OP_DB: list[OpInfo] = []


def add(name, fn, make, **kw) -> None:
    op = kw.pop("op", name.split("/")[0])
    OP_DB.append(OpInfo(name, op, fn, make, **kw))


# ---------------------------------------------------------------- input generators
def arr(rng, shape, dt, low=-2.0, high=2.0):
    """Random values of dtype `dt` in [low, high] (integers: rounded bounds; bool: coin flips)."""
    dt = np.dtype(dt)
    if dt == np.bool_:
        return rng.random(shape) > 0.5
    if dt.kind in "iu":
        return rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1, size=shape).astype(dt)
    return np.asarray(rng.uniform(low, high, size=shape)).astype(dt)


def nonzero(rng, shape, dt, low=0.5, high=2.0):
    """Values with |x| in [low, high] and random signs."""
    mag = arr(rng, shape, dt, low, high)
    return (mag * np.where(rng.random(shape) > 0.5, 1, -1)).astype(dt)


def distinct(rng, shape, dt, spacing=0.3):
    """Pairwise distinct values (no ties), spaced at least `spacing` apart."""
    dt = np.dtype(dt)
    n = int(np.prod(shape))
    vals = rng.permutation(n) - n // 2
    if dt.kind == "f":
        vals = vals * spacing + rng.uniform(0, spacing / 3, n)
    return vals.reshape(shape).astype(dt)


def away(x, points, margin=0.1):
    """Push the values of `x` at least `margin` away from each of `points`."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin)
    return x


def frac(rng, shape, dt):
    """Non-integral values away from integers and half-integers (floor/round/remainder)."""
    return (rng.integers(-3, 3, size=shape) + rng.uniform(0.1, 0.4, size=shape)).astype(dt)


def idx(rng, shape, n):
    return rng.integers(0, n, size=shape).astype(np.int64)


def mask(rng, shape):
    return rng.random(shape) > 0.5


def _gelu_np(x, tanh=False):
    from math import erf

    if tanh:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def _torch_F(torch):
    return torch.nn.functional


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_logsumexp(x, axis, keepdims=False):
    m = x.max(axis=axis, keepdims=True)
    out = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_take_along(x, index, axis):
    return np.take_along_axis(x, index, axis=axis)


def _np_scatter_add(x, axis, index, src):
    out = x.copy()
    grids = list(np.ogrid[tuple(slice(0, n) for n in index.shape)])
    grids[axis] = index
    np.add.at(out, tuple(grids), src[tuple(slice(0, n) for n in index.shape)])
    return out


S = (3, 4)
S3 = (2, 3, 4)

# ---------------------------------------------------------------- unary pointwise
UNARY = [
    # name, fn, numpy, make, dtypes, gradgrad
    ("neg", lambda m, x: m.neg(x), np.negative, lambda r, d: (arr(r, S, d),), F_INT, False),
    ("neg/operator", lambda m, x: -x, np.negative, lambda r, d: (arr(r, S3, d),), F_INT, False),
    ("abs", lambda m, x: m.abs(x), np.abs, lambda r, d: (nonzero(r, S, d),), F_INT, False),
    ("exp", lambda m, x: m.exp(x), np.exp, lambda r, d: (arr(r, S, d),), F_INT, True),
    ("log", lambda m, x: m.log(x), np.log, lambda r, d: (arr(r, S, d, 0.5, 3),), F_INT, True),
    ("log1p", lambda m, x: m.log1p(x), np.log1p, lambda r, d: (arr(r, S, d, -0.5, 2),), FLOAT, False),
    ("expm1", lambda m, x: m.expm1(x), np.expm1, lambda r, d: (arr(r, S, d),), F_INT, False),
    ("sqrt", lambda m, x: m.sqrt(x), np.sqrt, lambda r, d: (arr(r, S, d, 0.5, 4),), F_INT, True),
    ("rsqrt", lambda m, x: m.rsqrt(x), lambda x: 1 / np.sqrt(x), lambda r, d: (arr(r, S, d, 0.5, 4),),
     F_INT, True),
    ("sin", lambda m, x: m.sin(x), np.sin, lambda r, d: (arr(r, S, d, -3, 3),), F_INT, True),
    ("cos", lambda m, x: m.cos(x), np.cos, lambda r, d: (arr(r, S, d, -3, 3),), F_INT, True),
    ("tanh", lambda m, x: m.tanh(x), np.tanh, lambda r, d: (arr(r, S, d),), F_INT, True),
    ("sigmoid", lambda m, x: m.sigmoid(x), lambda x: 1 / (1 + np.exp(-x)),
     lambda r, d: (arr(r, S, d, -4, 4),), F_INT, True),
    ("sigmoid/tails", lambda m, x: m.sigmoid(x), lambda x: 1 / (1 + np.exp(-x)),
     lambda r, d: (np.array([-100.0, -20.0, -1.0, 0.0, 1.0, 20.0, 100.0], dtype=d),), FLOAT, False),
    ("relu", lambda m, x: m.relu(x), lambda x: np.maximum(x, 0), lambda r, d: (nonzero(r, S, d, 0.1),),
     F_INT, True),
    ("erf", lambda m, x: m.erf(x), None, lambda r, d: (arr(r, S, d, -3.5, 3.5),), F_INT, True),
    ("sign", lambda m, x: m.sign(x), np.sign, lambda r, d: (nonzero(r, S, d),), F_INT, False),
    ("floor", lambda m, x: m.floor(x), np.floor, lambda r, d: (frac(r, S, d),), F_INT, False),
    ("ceil", lambda m, x: m.ceil(x), np.ceil, lambda r, d: (frac(r, S, d),), F_INT, False),
    ("round", lambda m, x: m.round(x), np.round, lambda r, d: (frac(r, S, d),), F_INT, False),
    ("reciprocal", lambda m, x: m.reciprocal(x), lambda x: 1 / x, lambda r, d: (nonzero(r, S, d),),
     F_INT, True),
    ("square", lambda m, x: m.square(x), np.square, lambda r, d: (arr(r, S, d),), F_INT, True),
]
for _name, _fn, _np, _make, _dts, _gg in UNARY:
    add(_name, _fn, _make, np_fn=_np, dtypes=_dts, gradgrad=_gg)

add("exp/0d", lambda m, x: m.exp(x), lambda r, d: (arr(r, (), d),), np_fn=np.exp)
add("exp/empty", lambda m, x: m.exp(x), lambda r, d: (arr(r, (0, 3), d),), np_fn=np.exp)
add("gelu/none", lambda m, x: m.gelu(x), lambda r, d: (arr(r, S, d, -4, 4),),
    torch_fn=lambda t, x: _torch_F(t).gelu(x), np_fn=_gelu_np, gradgrad=True)
add("gelu/tanh", lambda m, x: m.gelu(x, approximate="tanh"), lambda r, d: (arr(r, S, d, -4, 4),),
    torch_fn=lambda t, x: _torch_F(t).gelu(x, approximate="tanh"),
    np_fn=lambda x: _gelu_np(x, tanh=True), gradgrad=True)
add("silu", lambda m, x: m.silu(x), lambda r, d: (arr(r, S, d, -4, 4),),
    torch_fn=lambda t, x: _torch_F(t).silu(x), np_fn=lambda x: x / (1 + np.exp(-x)), gradgrad=True)

# ---------------------------------------------------------------- binary arithmetic
for _op, _sym in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply)):
    _f = {"add": lambda m, a, b: m.add(a, b), "sub": lambda m, a, b: m.sub(a, b),
          "mul": lambda m, a, b: m.mul(a, b)}[_op]
    add(f"{_op}", _f, lambda r, d: (arr(r, S, d), arr(r, S, d)), np_fn=_sym, dtypes=F_INT + ("bool",)
        if _op != "sub" else F_INT, gradgrad=_op == "mul")
    add(f"{_op}/broadcast", _f, lambda r, d: (arr(r, (3, 1), d), arr(r, (4,), d)), np_fn=_sym,
        dtypes=F_INT, gradgrad=_op == "mul")
    add(f"{_op}/broadcast3d", _f, lambda r, d: (arr(r, (2, 1, 4), d), arr(r, (3, 1), d)), np_fn=_sym,
        dtypes=F_INT)
    add(f"{_op}/0d", _f, lambda r, d: (arr(r, S, d), arr(r, (), d)), np_fn=_sym, dtypes=F_INT)

add("add/operator", lambda m, a, b: a + b, lambda r, d: (arr(r, S, d), arr(r, S, d)), np_fn=np.add,
    dtypes=F_INT)
add("add/scalar_right", lambda m, a: a + 2.5, lambda r, d: (arr(r, S, d),), np_fn=lambda a: a + 2.5,
    dtypes=F_INT + ("bool",))
add("add/scalar_left", lambda m, a: 2.5 + a, lambda r, d: (arr(r, S, d),), np_fn=lambda a: 2.5 + a,
    dtypes=F_INT)
add("add/int_scalar", lambda m, a: a + 3, lambda r, d: (arr(r, S, d),), np_fn=lambda a: a + 3,
    dtypes=F_INT)
add("add/alpha", lambda m, a, b: m.add(a, b, alpha=2), lambda r, d: (arr(r, S, d), arr(r, S, d)),
    np_fn=lambda a, b: a + 2 * b, dtypes=F_INT)
add("add/int32_int64", lambda m, a, b: a + b.long(), lambda r, d: (arr(r, S, d), arr(r, S, d)),
    dtypes=INT, differentiable=False)
add("add/int_float_tensor", lambda m, a, b: a.int() + b, lambda r, d: (arr(r, S, d), arr(r, S, d)))
add("add/float_0d_double", lambda m, a, b: a + b.double(), lambda r, d: (arr(r, S, d), arr(r, (), d)))
add("add/int_0d_float", lambda m, a, b: a + b.float(), lambda r, d: (arr(r, S, d), arr(r, (), d)),
    dtypes=INT, differentiable=False)
add("sub/operator", lambda m, a, b: a - b, lambda r, d: (arr(r, S, d), arr(r, (4,), d)),
    np_fn=np.subtract, dtypes=F_INT)
add("sub/scalar_left", lambda m, a: 1.5 - a, lambda r, d: (arr(r, S, d),), np_fn=lambda a: 1.5 - a,
    dtypes=F_INT)
add("sub/scalar_right", lambda m, a: a - 1.5, lambda r, d: (arr(r, S, d),), np_fn=lambda a: a - 1.5,
    dtypes=F_INT)
add("sub/alpha", lambda m, a, b: m.sub(a, b, alpha=0.5), lambda r, d: (arr(r, S, d), arr(r, S, d)),
    np_fn=lambda a, b: a - 0.5 * b)
add("mul/operator", lambda m, a, b: a * b, lambda r, d: (arr(r, S3, d), arr(r, S, d)),
    np_fn=np.multiply, dtypes=F_INT)
add("mul/scalar_left", lambda m, a: 3 * a, lambda r, d: (arr(r, S, d),), np_fn=lambda a: 3 * a,
    dtypes=F_INT + ("bool",))
add("mul/float_scalar", lambda m, a: a * 0.5, lambda r, d: (arr(r, S, d),), np_fn=lambda a: a * 0.5,
    dtypes=F_INT + ("bool",))
add("mul/self", lambda m, a: a * a, lambda r, d: (arr(r, S, d),), np_fn=lambda a: a * a, gradgrad=True)

_div = lambda m, a, b: m.div(a, b)  # noqa: E731
add("div", _div, lambda r, d: (arr(r, S, d), nonzero(r, S, d)), np_fn=np.divide, dtypes=F_INT,
    gradgrad=True)
add("div/broadcast", lambda m, a, b: a / b, lambda r, d: (arr(r, (2, 1, 4), d), nonzero(r, (3, 1), d)),
    np_fn=np.divide, dtypes=F_INT, gradgrad=True)
add("div/scalar_right", lambda m, a: a / 2, lambda r, d: (arr(r, S, d),), np_fn=lambda a: a / 2,
    dtypes=F_INT)
add("div/scalar_left", lambda m, a: 2 / a, lambda r, d: (nonzero(r, S, d),), np_fn=lambda a: 2 / a,
    dtypes=F_INT, gradgrad=True)
add("div/int_by_int", lambda m, a, b: a / b, lambda r, d: (arr(r, S, d, -9, 9), nonzero(r, S, d, 1, 4)),
    np_fn=np.divide, dtypes=INT, differentiable=False)
add("div/true_divide", lambda m, a, b: m.true_divide(a, b), lambda r, d: (arr(r, S, d), nonzero(r, S, d)),
    np_fn=np.divide, dtypes=F_INT)
for _mode, _np in (("trunc", lambda a, b: np.trunc(a / b)), ("floor", lambda a, b: np.floor(a / b))):
    add(f"div/{_mode}", lambda m, a, b, _mode=_mode: m.div(a, b, rounding_mode=_mode),
        lambda r, d: (arr(r, S, d, -7, 7), nonzero(r, S, d, 1, 3)), np_fn=_np, dtypes=F_INT,
        differentiable=False)
    add(f"div/{_mode}_scalar", lambda m, a, _mode=_mode: m.div(a, 2, rounding_mode=_mode),
        lambda r, d: (arr(r, S, d, -7, 7),), np_fn=lambda a, _np=_np: _np(a, 2), dtypes=F_INT,
        differentiable=False)
add("floor_divide", lambda m, a, b: m.floor_divide(a, b),
    lambda r, d: (arr(r, S, d, -7, 7), nonzero(r, S, d, 1, 3)), np_fn=np.floor_divide, dtypes=F_INT,
    differentiable=False)
add("floor_divide/operator_scalar", lambda m, a: a // 2, lambda r, d: (arr(r, S, d, -7, 7),),
    np_fn=lambda a: a // 2, dtypes=F_INT, differentiable=False)
add("remainder", lambda m, a, b: m.remainder(a, b),
    lambda r, d: (frac(r, S, d) * 2, nonzero(r, S, d, 1, 3)) if np.dtype(d).kind == "f"
    else (arr(r, S, d, -7, 7), nonzero(r, S, d, 1, 3)), np_fn=np.remainder, dtypes=F_INT)
add("remainder/operator_scalar", lambda m, a: a % 1.5, lambda r, d: (frac(r, S, d),),
    np_fn=lambda a: np.remainder(a, 1.5), dtypes=F_INT)
add("remainder/int_scalar", lambda m, a: a % 3, lambda r, d: (arr(r, S, d, -7, 7),),
    np_fn=lambda a: np.remainder(a, 3), dtypes=INT, differentiable=False)

# pow: tensor ** scalar, tensor ** tensor, scalar ** tensor
for _e in (2, 3, 0, -1, 0.5, -1.5, 2.5):
    _pos = not float(_e).is_integer()
    _dts = INT if (_e in (2, 3, 0)) else ()
    add(f"pow/scalar_{_e}", lambda m, a, _e=_e: a ** _e,
        lambda r, d, _pos=_pos: (arr(r, S, d, 0.5, 2.5) if _pos else nonzero(r, S, d, 0.3, 2),),
        np_fn=lambda a, _e=_e: np.power(a, float(_e)), dtypes=FLOAT + _dts,
        gradgrad=_e in (3, 0.5, -1.5))
add("pow/int_tensor_float_exponent", lambda m, a: a ** 0.5, lambda r, d: (arr(r, S, d, 1, 9),),
    np_fn=np.sqrt, dtypes=INT, differentiable=False)
add("pow/tensor", lambda m, a, b: m.pow(a, b), lambda r, d: (arr(r, S, d, 0.5, 2.5), arr(r, S, d)),
    np_fn=np.power, gradgrad=True)
add("pow/tensor_broadcast", lambda m, a, b: a ** b, lambda r, d: (arr(r, (3, 1), d, 0.5, 2.5), arr(r, (4,), d)),
    np_fn=np.power, gradgrad=True)
add("pow/tensor_int", lambda m, a, b: a ** b, lambda r, d: (arr(r, S, d, -3, 3), arr(r, S, d, 0, 3)),
    np_fn=np.power, dtypes=INT, differentiable=False)
add("pow/scalar_base", lambda m, a: 2.0 ** a, lambda r, d: (arr(r, S, d),), np_fn=lambda a: 2.0 ** a,
    dtypes=F_INT, gradgrad=True)
add("pow/int_scalar_base", lambda m, a: 2 ** a, lambda r, d: (arr(r, S, d, 0, 5),),
    np_fn=lambda a: 2 ** a, dtypes=F_INT)
add("pow/function_scalar_base", lambda m, a: m.pow(3.0, a), lambda r, d: (arr(r, S, d),),
    np_fn=lambda a: 3.0 ** a)

# maximum / minimum: no ties, then ties (torch splits the gradient evenly)
for _op, _np in (("maximum", np.maximum), ("minimum", np.minimum)):
    def _pair(r, d, shape=S):
        v = distinct(r, (2,) + shape, d)
        return v[0], v[1]

    add(_op, lambda m, a, b, _op=_op: getattr(m, _op)(a, b), _pair, np_fn=_np, dtypes=F_INT,
        gradgrad=True)
    add(f"{_op}/broadcast", lambda m, a, b, _op=_op: getattr(m, _op)(a, b),
        lambda r, d: (distinct(r, S, d), distinct(r, (4,), d, 0.17)), np_fn=_np, dtypes=F_INT)
    add(f"{_op}/ties", lambda m, a, b, _op=_op: getattr(m, _op)(a, b),
        lambda r, d: (np.array([1.0, 2.0, 3.0, -1.0], d), np.array([1.0, 0.5, 3.0, 4.0], d)),
        np_fn=_np, gradcheck=False)
add("max/binary", lambda m, a, b: m.max(a, b), lambda r, d: tuple(distinct(r, (2,) + S, d)),
    np_fn=np.maximum, dtypes=F_INT)
add("min/binary", lambda m, a, b: m.min(a, b), lambda r, d: tuple(distinct(r, (2,) + S, d)),
    np_fn=np.minimum, dtypes=F_INT)

# clamp: bounds away from the values (the derivative jumps there), then exactly on them
_clamp_x = lambda r, d: (away(arr(r, S, d), (-0.5, 0.7)) if np.dtype(d).kind == "f"  # noqa: E731
                         else arr(r, S, d, -3, 3),)
add("clamp", lambda m, x: m.clamp(x, -0.5, 0.7), _clamp_x, np_fn=lambda x: np.clip(x, -0.5, 0.7),
    dtypes=F_INT, gradgrad=True)
add("clamp/min_only", lambda m, x: m.clamp(x, min=-0.5), _clamp_x, np_fn=lambda x: np.maximum(x, -0.5),
    dtypes=F_INT)
add("clamp/max_only", lambda m, x: m.clamp(x, max=0.7), _clamp_x, np_fn=lambda x: np.minimum(x, 0.7),
    dtypes=F_INT)
add("clamp/int_bounds", lambda m, x: m.clamp(x, -1, 1), _clamp_x, np_fn=lambda x: np.clip(x, -1, 1),
    dtypes=F_INT)
add("clamp/method_min", lambda m, x: x.clamp_min(0.2), _clamp_x, np_fn=lambda x: np.maximum(x, 0.2))
add("clamp/method_max", lambda m, x: x.clamp_max(0.2), _clamp_x, np_fn=lambda x: np.minimum(x, 0.2))
add("clamp/on_bounds", lambda m, x: m.clamp(x, -0.5, 0.5),
    lambda r, d: (np.array([-1.0, -0.5, 0.0, 0.5, 1.0], d),), np_fn=lambda x: np.clip(x, -0.5, 0.5),
    gradcheck=False)


def _bounds(r, d):
    v = distinct(r, (3,) + S, d)
    return v[2], np.minimum(v[0], v[1]), np.maximum(v[0], v[1])


add("clamp/tensor_bounds", lambda m, x, lo, hi: m.clamp(x, lo, hi), _bounds,
    np_fn=lambda x, lo, hi: np.clip(x, lo, hi))
add("clamp/tensor_min_only", lambda m, x, lo: m.clamp(x, min=lo), lambda r, d: _bounds(r, d)[:2],
    np_fn=np.maximum)

# where
add("where", lambda m, c, a, b: m.where(c, a, b), lambda r, d: (mask(r, S), arr(r, S, d), arr(r, S, d)),
    np_fn=np.where, dtypes=F_INT + ("bool",))
add("where/broadcast", lambda m, c, a, b: m.where(c, a, b),
    lambda r, d: (mask(r, (3, 1)), arr(r, (4,), d), arr(r, S, d)), np_fn=np.where, dtypes=F_INT)
add("where/scalar_other", lambda m, c, a: m.where(c, a, 0.0), lambda r, d: (mask(r, S), arr(r, S, d)),
    np_fn=lambda c, a: np.where(c, a, 0.0), dtypes=F_INT)
add("where/scalar_input", lambda m, c, a: m.where(c, 2.0, a), lambda r, d: (mask(r, S), arr(r, S, d)),
    np_fn=lambda c, a: np.where(c, 2.0, a), dtypes=F_INT)
add("where/mixed_dtypes", lambda m, c, a, b: m.where(c, a.int(), b),
    lambda r, d: (mask(r, S), arr(r, S, d), arr(r, S, d)),
    np_fn=lambda c, a, b: np.where(c, np.trunc(a), b))

# ---------------------------------------------------------------- reductions
for _op, _np in (("sum", np.sum), ("mean", np.mean)):
    _dts = F_INT + ("bool",) if _op == "sum" else FLOAT
    add(f"{_op}/all", lambda m, x, _op=_op: getattr(m, _op)(x), lambda r, d: (arr(r, S3, d),),
        np_fn=_np, dtypes=_dts, gradgrad=True)
    add(f"{_op}/dim", lambda m, x, _op=_op: getattr(m, _op)(x, 1), lambda r, d: (arr(r, S3, d),),
        np_fn=lambda x, _np=_np: _np(x, axis=1), dtypes=_dts, gradgrad=True)
    add(f"{_op}/neg_dim_keepdim", lambda m, x, _op=_op: getattr(m, _op)(x, -1, keepdim=True),
        lambda r, d: (arr(r, S3, d),), np_fn=lambda x, _np=_np: _np(x, axis=-1, keepdims=True),
        dtypes=_dts)
    add(f"{_op}/tuple", lambda m, x, _op=_op: getattr(m, _op)(x, (0, 2)), lambda r, d: (arr(r, S3, d),),
        np_fn=lambda x, _np=_np: _np(x, axis=(0, 2)), dtypes=_dts, gradgrad=True)
    add(f"{_op}/tuple_keepdim", lambda m, x, _op=_op: getattr(m, _op)(x, (-1, 0), keepdim=True),
        lambda r, d: (arr(r, S3, d),), np_fn=lambda x, _np=_np: _np(x, axis=(0, 2), keepdims=True),
        dtypes=_dts)
    add(f"{_op}/none_keepdim", lambda m, x, _op=_op: getattr(m, _op)(x, None, keepdim=True),
        lambda r, d: (arr(r, S, d),), np_fn=lambda x, _np=_np: _np(x, keepdims=True), dtypes=_dts)
    add(f"{_op}/0d", lambda m, x, _op=_op: getattr(m, _op)(x), lambda r, d: (arr(r, (), d),), np_fn=_np)
    add(f"{_op}/method", lambda m, x, _op=_op: getattr(x, _op)(dim=0), lambda r, d: (arr(r, S, d),),
        np_fn=lambda x, _np=_np: _np(x, axis=0))
add("sum/dtype", lambda m, x: m.sum(x, 0, dtype=m.float64), lambda r, d: (arr(r, S, d),),
    np_fn=lambda x: x.sum(0), dtypes=F_INT)
add("sum/empty", lambda m, x: m.sum(x, 0), lambda r, d: (arr(r, (0, 3), d),), np_fn=lambda x: x.sum(0),
    dtypes=F_INT)
add("sum/int32_all", lambda m, x: x.int().sum(), lambda r, d: (arr(r, S, d, -9, 9),),
    np_fn=lambda x: np.trunc(x).sum(), differentiable=False)

for _op, _np in (("var", np.var), ("std", np.std)):
    add(f"{_op}/all", lambda m, x, _op=_op: getattr(m, _op)(x), lambda r, d: (arr(r, S3, d),),
        np_fn=lambda x, _np=_np: _np(x, ddof=1), gradgrad=True)
    add(f"{_op}/dim", lambda m, x, _op=_op: getattr(m, _op)(x, 1), lambda r, d: (arr(r, S3, d),),
        np_fn=lambda x, _np=_np: _np(x, axis=1, ddof=1))
    add(f"{_op}/tuple_keepdim", lambda m, x, _op=_op: getattr(m, _op)(x, (0, 2), keepdim=True),
        lambda r, d: (arr(r, S3, d),), np_fn=lambda x, _np=_np: _np(x, axis=(0, 2), ddof=1, keepdims=True))
    for _c in (0, 2):
        add(f"{_op}/correction{_c}", lambda m, x, _op=_op, _c=_c: getattr(m, _op)(x, -1, correction=_c),
            lambda r, d: (arr(r, S3, d),), np_fn=lambda x, _np=_np, _c=_c: _np(x, axis=-1, ddof=_c))
    add(f"{_op}/unbiased_false", lambda m, x, _op=_op: getattr(m, _op)(x, 0, unbiased=False),
        lambda r, d: (arr(r, S, d),), np_fn=lambda x, _np=_np: _np(x, axis=0))
    add(f"{_op}/none_correction0", lambda m, x, _op=_op: getattr(m, _op)(x, None, correction=0),
        lambda r, d: (arr(r, S, d),), np_fn=_np)

add("prod/all", lambda m, x: m.prod(x), lambda r, d: (nonzero(r, S, d, 0.5, 1.5),), np_fn=np.prod,
    dtypes=F_INT + ("bool",), gradgrad=True)
add("prod/dim", lambda m, x: m.prod(x, 1), lambda r, d: (nonzero(r, S3, d, 0.5, 1.5),),
    np_fn=lambda x: np.prod(x, axis=1), dtypes=F_INT, gradgrad=True)
add("prod/keepdim", lambda m, x: m.prod(x, -1, keepdim=True), lambda r, d: (nonzero(r, S3, d, 0.5, 1.5),),
    np_fn=lambda x: np.prod(x, axis=-1, keepdims=True), dtypes=F_INT)


def _zeros_in(r, d):
    x = nonzero(r, S, d, 0.5, 1.5)
    x[0, 1] = 0  # row 0: one zero
    x[1, 0] = x[1, 2] = 0  # row 1: two zeros
    return (x,)


add("prod/one_zero_all", lambda m, x: m.prod(x), lambda r, d: (np.array([[1.5, 0.0], [-2.0, 0.7]], d),),
    np_fn=np.prod, dtypes=F_INT, gradgrad=True)
add("prod/two_zeros_all", lambda m, x: m.prod(x), lambda r, d: (np.array([[1.5, 0.0], [0.0, 0.7]], d),),
    np_fn=np.prod, dtypes=F_INT, gradgrad=True)
add("prod/three_zeros_all", lambda m, x: m.prod(x), lambda r, d: (np.array([[1.5, 0.0, 0.0], [0.0, 0.7, -2.0]], d),),
    np_fn=np.prod, gradgrad=True)
add("prod/zeros_dim", lambda m, x: m.prod(x, 1), _zeros_in, np_fn=lambda x: np.prod(x, axis=1),
    dtypes=F_INT, gradgrad=True)
add("prod/zeros_dim_keepdim", lambda m, x: m.prod(x, 1, keepdim=True), _zeros_in,
    np_fn=lambda x: np.prod(x, axis=1, keepdims=True))

for _op, _np, _arg in (("max", np.max, np.argmax), ("min", np.min, np.argmin)):
    add(f"{_op}/all", lambda m, x, _op=_op: getattr(m, _op)(x), lambda r, d: (distinct(r, S3, d),),
        np_fn=_np, dtypes=F_INT)
    add(f"{_op}/dim", lambda m, x, _op=_op: getattr(m, _op)(x, 1), lambda r, d: (distinct(r, S3, d),),
        np_fn=lambda x, _np=_np, _arg=_arg: (_np(x, axis=1), _arg(x, axis=1)), dtypes=F_INT)
    add(f"{_op}/dim_keepdim", lambda m, x, _op=_op: getattr(m, _op)(x, -1, keepdim=True),
        lambda r, d: (distinct(r, S3, d),),
        np_fn=lambda x, _np=_np, _arg=_arg: (_np(x, axis=-1, keepdims=True), _arg(x, axis=-1, keepdims=True)),
        dtypes=F_INT)
    add(f"{_op}/dim_fields", lambda m, x, _op=_op: getattr(m, _op)(x, dim=0).values * 2,
        lambda r, d: (distinct(r, S, d),), np_fn=lambda x, _np=_np: _np(x, axis=0) * 2)
    # ties: torch's max() (no dim) splits evenly like amax; max(dim) routes to the returned index
    add(f"{_op}/all_ties", lambda m, x, _op=_op: getattr(m, _op)(x),
        lambda r, d: (np.array([[1.0, 3.0, 3.0], [-2.0, 3.0, -2.0]], d),), np_fn=_np, gradcheck=False)
    add(f"{_op}/dim_ties", lambda m, x, _op=_op: getattr(m, _op)(x, 1),
        lambda r, d: (np.array([[1.0, 3.0, 3.0], [-2.0, 0.0, -2.0]], d),),
        np_fn=lambda x, _np=_np, _arg=_arg: (_np(x, axis=1), _arg(x, axis=1)), gradcheck=False)

for _op, _np in (("amax", np.max), ("amin", np.min)):
    add(f"{_op}/all", lambda m, x, _op=_op: getattr(m, _op)(x), lambda r, d: (distinct(r, S3, d),),
        np_fn=_np, dtypes=F_INT)
    add(f"{_op}/dim", lambda m, x, _op=_op: getattr(m, _op)(x, 1), lambda r, d: (distinct(r, S3, d),),
        np_fn=lambda x, _np=_np: _np(x, axis=1), dtypes=F_INT + ("bool",), gradgrad=True)
    add(f"{_op}/tuple_keepdim", lambda m, x, _op=_op: getattr(m, _op)(x, (0, -1), keepdim=True),
        lambda r, d: (distinct(r, S3, d),), np_fn=lambda x, _np=_np: _np(x, axis=(0, 2), keepdims=True),
        dtypes=F_INT)
    add(f"{_op}/ties", lambda m, x, _op=_op: getattr(m, _op)(x, 1),
        lambda r, d: (np.array([[1.0, 3.0, 3.0], [-2.0, 0.0, -2.0]], d),),
        np_fn=lambda x, _np=_np: _np(x, axis=1), gradcheck=False)
    add(f"{_op}/all_ties", lambda m, x, _op=_op: getattr(m, _op)(x),
        lambda r, d: (np.array([[1.0, 3.0, 3.0], [-2.0, 3.0, -2.0]], d),), np_fn=_np, gradcheck=False)

for _op, _np in (("argmax", np.argmax), ("argmin", np.argmin)):
    add(f"{_op}/all", lambda m, x, _op=_op: getattr(m, _op)(x), lambda r, d: (distinct(r, S3, d),),
        np_fn=_np, dtypes=F_INT, differentiable=False)
    add(f"{_op}/dim", lambda m, x, _op=_op: getattr(m, _op)(x, 1), lambda r, d: (distinct(r, S3, d),),
        np_fn=lambda x, _np=_np: _np(x, axis=1), dtypes=F_INT, differentiable=False)
    add(f"{_op}/dim_keepdim", lambda m, x, _op=_op: getattr(m, _op)(x, -1, keepdim=True),
        lambda r, d: (distinct(r, S3, d),), np_fn=lambda x, _np=_np: _np(x, axis=-1, keepdims=True),
        dtypes=F_INT, differentiable=False)
    add(f"{_op}/ties_first", lambda m, x, _op=_op: getattr(m, _op)(x, 1),
        lambda r, d: (np.array([[1.0, 3.0, 3.0], [-2.0, 0.0, -2.0]], d),),
        np_fn=lambda x, _np=_np: _np(x, axis=1), dtypes=F_INT, differentiable=False)

add("logsumexp/dim", lambda m, x: m.logsumexp(x, 1), lambda r, d: (arr(r, S3, d),),
    np_fn=lambda x: _np_logsumexp(x, 1), gradgrad=True)
add("logsumexp/keepdim", lambda m, x: m.logsumexp(x, -1, keepdim=True), lambda r, d: (arr(r, S3, d),),
    np_fn=lambda x: _np_logsumexp(x, -1, True))
add("logsumexp/tuple", lambda m, x: m.logsumexp(x, (0, 2)), lambda r, d: (arr(r, S3, d),),
    np_fn=lambda x: _np_logsumexp(x, (0, 2)))
add("logsumexp/large", lambda m, x: m.logsumexp(x, 1), lambda r, d: (arr(r, S, d, 500, 520),),
    np_fn=lambda x: _np_logsumexp(x, 1), rtol=1e-6)
add("logsumexp/int", lambda m, x: m.logsumexp(x, 1), lambda r, d: (arr(r, S, d, -3, 3),),
    np_fn=lambda x: _np_logsumexp(x.astype(np.float64), 1), dtypes=INT, differentiable=False)

for _op in ("softmax", "log_softmax"):
    _ref = _np_softmax if _op == "softmax" else (lambda x, axis: np.log(_np_softmax(x, axis)))
    add(f"{_op}/last", lambda m, x, _op=_op: getattr(m, _op)(x, -1), lambda r, d: (arr(r, S3, d),),
        np_fn=lambda x, _ref=_ref: _ref(x, -1), gradgrad=True)
    add(f"{_op}/dim0", lambda m, x, _op=_op: getattr(m, _op)(x, 0), lambda r, d: (arr(r, S, d),),
        np_fn=lambda x, _ref=_ref: _ref(x, 0), gradgrad=True)
    add(f"{_op}/large", lambda m, x, _op=_op: getattr(m, _op)(x, 1), lambda r, d: (arr(r, S, d, -300, 300),),
        np_fn=lambda x, _ref=_ref: _ref(x, 1), gradcheck=False, atol=1e-4)
    add(f"{_op}/int", lambda m, x, _op=_op: getattr(m, _op)(x, 1), lambda r, d: (arr(r, S, d, -3, 3),),
        np_fn=lambda x, _ref=_ref: _ref(x.astype(np.float64), 1), dtypes=INT, differentiable=False,
        torch=False)  # torch has no integer softmax kernel ("not implemented for 'Int'")
    add(f"{_op}/method", lambda m, x, _op=_op: getattr(x, _op)(dim=1), lambda r, d: (arr(r, S, d),),
        np_fn=lambda x, _ref=_ref: _ref(x, 1))

add("cumsum/dim0", lambda m, x: m.cumsum(x, 0), lambda r, d: (arr(r, S3, d),),
    np_fn=lambda x: np.cumsum(x, axis=0), dtypes=F_INT + ("bool",), gradgrad=True)
add("cumsum/last", lambda m, x: m.cumsum(x, -1), lambda r, d: (arr(r, S3, d),),
    np_fn=lambda x: np.cumsum(x, axis=-1), dtypes=F_INT)
add("cumsum/dtype", lambda m, x: m.cumsum(x, 1, dtype=m.float64), lambda r, d: (arr(r, S, d),),
    np_fn=lambda x: np.cumsum(x, axis=1), dtypes=F_INT)

# ---------------------------------------------------------------- matrix products
for _nm, _sa, _sb in (("1d_1d", (4,), (4,)), ("1d_2d", (3,), (3, 4)), ("2d_1d", (3, 4), (4,)),
                      ("2d_2d", (3, 4), (4, 2)), ("3d_3d", (2, 3, 4), (2, 4, 5)),
                      ("3d_2d", (2, 3, 4), (4, 5)), ("1d_3d", (3,), (2, 3, 4)), ("3d_1d", (2, 3, 4), (4,)),
                      ("broadcast_batch", (2, 1, 3, 4), (3, 4, 2)), ("2d_4d", (3, 4), (2, 2, 4, 3))):
    add(f"matmul/{_nm}", lambda m, a, b: m.matmul(a, b),
        lambda r, d, _sa=_sa, _sb=_sb: (arr(r, _sa, d), arr(r, _sb, d)),
        np_fn=np.matmul, dtypes=F_INT, gradgrad=_nm in ("1d_1d", "2d_1d", "2d_2d", "3d_3d", "broadcast_batch"),
        rtol=1e-4)
add("matmul/operator", lambda m, a, b: a @ b, lambda r, d: (arr(r, (3, 4), d), arr(r, (4, 2), d)),
    np_fn=np.matmul, rtol=1e-4)
add("mm", lambda m, a, b: m.mm(a, b), lambda r, d: (arr(r, (3, 4), d), arr(r, (4, 2), d)),
    np_fn=np.matmul, dtypes=F_INT, gradgrad=True, rtol=1e-4)
add("mm/transposed", lambda m, a, b: m.mm(a.t(), b), lambda r, d: (arr(r, (4, 3), d), arr(r, (4, 2), d)),
    np_fn=lambda a, b: a.T @ b, rtol=1e-4)
add("bmm", lambda m, a, b: m.bmm(a, b), lambda r, d: (arr(r, (2, 3, 4), d), arr(r, (2, 4, 5), d)),
    np_fn=np.matmul, dtypes=F_INT, gradgrad=True, rtol=1e-4)
add("outer", lambda m, a, b: m.outer(a, b), lambda r, d: (arr(r, (3,), d), arr(r, (4,), d)),
    np_fn=np.outer, dtypes=F_INT, gradgrad=True)
add("outer/method", lambda m, a, b: a.outer(b), lambda r, d: (arr(r, (2,), d), arr(r, (5,), d)),
    np_fn=np.outer)

for _eq, _shapes in (("ij,jk->ik", ((3, 4), (4, 2))), ("bij,bjk->bik", ((2, 3, 4), (2, 4, 5))),
                     ("ij->ji", ((3, 4),)), ("ij->j", ((3, 4),)), ("ij,ij->", ((3, 4), (3, 4))),
                     ("i,j->ij", ((3,), (4,))), ("ij,jk", ((3, 4), (4, 2))), ("ba", ((3, 4),)),
                     ("ij,kj", ((3, 4), (2, 4))), ("...ij,...jk->...ik", ((2, 3, 4), (2, 4, 5))),
                     ("...ij,jk->...ik", ((2, 2, 3, 4), (4, 2))), ("b...,b->...", ((2, 3, 4), (2,))),
                     ("...i,i", ((2, 3, 4), (4,))), ("i...->...", ((3, 2, 4),)),
                     ("bi,bj,bk->bijk", ((2, 3), (2, 2), (2, 4))), ("i i , j -> j", ((3, 3), (2,)))):
    add(f"einsum/{_eq.replace(' ', '')}", lambda m, *ops, _eq=_eq: m.einsum(_eq, *ops),
        lambda r, d, _shapes=_shapes: tuple(arr(r, s, d) for s in _shapes),
        np_fn=lambda *ops, _eq=_eq: np.einsum(_eq.replace(" ", ""), *ops), dtypes=FLOAT + ("int64",),
        gradgrad=_eq in ("ij,jk->ik", "...ij,...jk->...ik"), rtol=1e-4)
add("einsum/list_operands", lambda m, a, b: m.einsum("ij,jk->ik", [a, b]),
    lambda r, d: (arr(r, (3, 4), d), arr(r, (4, 2), d)), np_fn=lambda a, b: a @ b, rtol=1e-4)
add("einsum/diagonal", lambda m, a: m.einsum("ii->i", a), lambda r, d: (arr(r, (3, 3), d),),
    np_fn=lambda a: np.einsum("ii->i", a), dtypes=FLOAT + ("int64",))
add("einsum/trace", lambda m, a: m.einsum("ii", a), lambda r, d: (arr(r, (3, 3), d),),
    np_fn=lambda a: np.einsum("ii", a), dtypes=FLOAT + ("int64",))

# ---------------------------------------------------------------- joining, indexing, data movement
add("cat/dim0", lambda m, a, b, c: m.cat([a, b, c]), lambda r, d: (arr(r, (2, 3), d), arr(r, (1, 3), d),
                                                                   arr(r, (3, 3), d)),
    np_fn=lambda a, b, c: np.concatenate([a, b, c]), dtypes=F_INT + ("bool",))
add("cat/dim1", lambda m, a, b: m.cat((a, b), dim=1), lambda r, d: (arr(r, (2, 3), d), arr(r, (2, 2), d)),
    np_fn=lambda a, b: np.concatenate([a, b], 1), dtypes=F_INT)
add("cat/neg_dim", lambda m, a, b: m.cat([a, b], -1), lambda r, d: (arr(r, (2, 2, 3), d), arr(r, (2, 2, 1), d)),
    np_fn=lambda a, b: np.concatenate([a, b], -1))
add("cat/promote", lambda m, a, b: m.cat([a.int(), b], 0), lambda r, d: (arr(r, (2, 3), d), arr(r, (1, 3), d)),
    np_fn=lambda a, b: np.concatenate([np.trunc(a), b]))
add("cat/empty_1d", lambda m, a, b: m.cat([a, b, a], 0), lambda r, d: (arr(r, (0,), d), arr(r, (2, 3), d)),
    np_fn=lambda a, b: b)
add("stack/dim0", lambda m, a, b: m.stack([a, b]), lambda r, d: (arr(r, S, d), arr(r, S, d)),
    np_fn=lambda a, b: np.stack([a, b]), dtypes=F_INT + ("bool",))
add("stack/dim1", lambda m, a, b, c: m.stack([a, b, c], 1), lambda r, d: tuple(arr(r, S, d) for _ in range(3)),
    np_fn=lambda a, b, c: np.stack([a, b, c], 1), dtypes=F_INT)
add("stack/last", lambda m, a, b: m.stack((a, b), dim=-1), lambda r, d: (arr(r, S, d), arr(r, S, d)),
    np_fn=lambda a, b: np.stack([a, b], -1))

add("gather/dim1", lambda m, x, i: m.gather(x, 1, i), lambda r, d: (arr(r, S, d), idx(r, (3, 5), 4)),
    np_fn=lambda x, i: _np_take_along(x, i, 1), dtypes=F_INT + ("bool",))
add("gather/dim0_smaller", lambda m, x, i: m.gather(x, 0, i), lambda r, d: (arr(r, S, d), idx(r, (2, 3), 3)),
    torch_fn=lambda t, x, i: t.gather(x, 0, i), dtypes=F_INT)
add("gather/method_neg_dim", lambda m, x, i: x.gather(-1, i), lambda r, d: (arr(r, S3, d), idx(r, (2, 3, 2), 4)),
    np_fn=lambda x, i: _np_take_along(x, i, -1))
add("scatter_add/dim0", lambda m, x, i, s: m.scatter_add(x, 0, i, s),
    lambda r, d: (arr(r, S, d), idx(r, (5, 4), 3), arr(r, (5, 4), d)),
    np_fn=lambda x, i, s: _np_scatter_add(x, 0, i, s), dtypes=F_INT)
add("scatter_add/dim1_partial", lambda m, x, i, s: m.scatter_add(x, 1, i, s),
    lambda r, d: (arr(r, S, d), idx(r, (2, 3), 4), arr(r, (3, 5), d)),
    np_fn=lambda x, i, s: _np_scatter_add(x, 1, i, s), dtypes=F_INT,
    torch_grad=False)  # torch's backward returns an index-shaped gradient for the larger src and fails
add("scatter_add/method", lambda m, x, i, s: x.scatter_add(-1, i, s),
    lambda r, d: (arr(r, S, d), idx(r, (3, 6), 4), arr(r, (3, 6), d)),
    np_fn=lambda x, i, s: _np_scatter_add(x, 1, i, s))
add("index_select/dim0", lambda m, x, i: m.index_select(x, 0, i), lambda r, d: (arr(r, S, d), np.array([2, 0, 2])),
    np_fn=lambda x, i: x[i], dtypes=F_INT + ("bool",))
add("index_select/dim1", lambda m, x, i: m.index_select(x, 1, i),
    lambda r, d: (arr(r, S3, d), np.array([2, 1, 1, 0])), np_fn=lambda x, i: x[:, i], dtypes=F_INT)
add("index_select/neg_dim", lambda m, x, i: x.index_select(-1, i), lambda r, d: (arr(r, S, d), np.array([1])),
    np_fn=lambda x, i: x[:, i])
add("index_select/0d_index", lambda m, x, i: m.index_select(x, 0, i), lambda r, d: (arr(r, S, d), np.array(1)),
    np_fn=lambda x, i: x[[int(i)]])
add("masked_fill", lambda m, x, k: m.masked_fill(x, k, -1.5), lambda r, d: (arr(r, S, d), mask(r, S)),
    np_fn=lambda x, k: np.where(k, -1.5, x).astype(x.dtype), dtypes=F_INT)
add("masked_fill/broadcast", lambda m, x, k: x.masked_fill(k, 0.0), lambda r, d: (arr(r, S3, d), mask(r, (3, 1))),
    np_fn=lambda x, k: np.where(k, 0.0, x), dtypes=F_INT + ("bool",))
add("masked_fill/tensor_value", lambda m, x, k, v: m.masked_fill(x, k, v),
    lambda r, d: (arr(r, S, d), mask(r, S), arr(r, (), d)), np_fn=lambda x, k, v: np.where(k, v, x))
add("masked_fill/int_value_on_float", lambda m, x, k: m.masked_fill(x, k, 3), lambda r, d: (arr(r, S, d), mask(r, S)),
    np_fn=lambda x, k: np.where(k, 3, x), dtypes=F_INT)
for _op in ("tril", "triu"):
    _np = getattr(np, _op)
    add(f"{_op}", lambda m, x, _op=_op: getattr(m, _op)(x), lambda r, d: (arr(r, (4, 4), d),), np_fn=_np,
        dtypes=F_INT + ("bool",))
    for _k in (1, -1):
        add(f"{_op}/diag{_k}", lambda m, x, _op=_op, _k=_k: getattr(m, _op)(x, _k),
            lambda r, d: (arr(r, (3, 5), d),), np_fn=lambda x, _np=_np, _k=_k: _np(x, _k), dtypes=F_INT)
    add(f"{_op}/batched", lambda m, x, _op=_op: getattr(x, _op)(diagonal=1), lambda r, d: (arr(r, (2, 3, 3), d),),
        np_fn=lambda x, _np=_np: _np(x, 1))

add("sort/last", lambda m, x: m.sort(x), lambda r, d: (distinct(r, S3, d),),
    np_fn=lambda x: (np.sort(x, -1), np.argsort(x, -1)), dtypes=F_INT)
add("sort/dim0_descending", lambda m, x: m.sort(x, 0, descending=True), lambda r, d: (distinct(r, S, d),),
    np_fn=lambda x: (-np.sort(-x, 0), np.argsort(-x, 0)), dtypes=F_INT)
add("sort/method", lambda m, x: x.sort(dim=1), lambda r, d: (distinct(r, S, d),),
    np_fn=lambda x: (np.sort(x, 1), np.argsort(x, 1)))
add("sort/ties_stable", lambda m, x: m.sort(x, stable=True),
    lambda r, d: (np.array([[2.0, 1.0, 2.0, 1.0, 0.0], [3.0, 3.0, 3.0, -1.0, 3.0]], d),),
    np_fn=lambda x: (np.sort(x, -1), np.argsort(x, -1, kind="stable")), dtypes=F_INT, gradcheck=False)
add("sort/ties_stable_descending", lambda m, x: m.sort(x, descending=True, stable=True),
    lambda r, d: (np.array([[2.0, 1.0, 2.0, 1.0, 0.0], [3.0, 3.0, 3.0, -1.0, 3.0]], d),),
    dtypes=F_INT, gradcheck=False)
add("argsort", lambda m, x: m.argsort(x), lambda r, d: (distinct(r, S3, d),),
    np_fn=lambda x: np.argsort(x, -1), dtypes=F_INT, differentiable=False)
add("argsort/dim0_descending", lambda m, x: m.argsort(x, 0, descending=True), lambda r, d: (distinct(r, S, d),),
    np_fn=lambda x: np.argsort(-x, 0), dtypes=F_INT, differentiable=False)
add("topk", lambda m, x: m.topk(x, 2), lambda r, d: (distinct(r, S3, d),),
    np_fn=lambda x: (-np.sort(-x, -1)[..., :2], np.argsort(-x, -1)[..., :2]), dtypes=F_INT)
add("topk/smallest_dim0", lambda m, x: m.topk(x, 2, dim=0, largest=False), lambda r, d: (distinct(r, S, d),),
    np_fn=lambda x: (np.sort(x, 0)[:2], np.argsort(x, 0)[:2]), dtypes=F_INT)
add("topk/method_k0", lambda m, x: x.topk(0, dim=1), lambda r, d: (distinct(r, S, d),))
add("topk/full", lambda m, x: m.topk(x, 4, dim=1), lambda r, d: (distinct(r, S, d),),
    np_fn=lambda x: (-np.sort(-x, 1), np.argsort(-x, 1)))
add("flip", lambda m, x: m.flip(x, [0]), lambda r, d: (arr(r, S3, d),), np_fn=lambda x: np.flip(x, 0),
    dtypes=F_INT + ("bool",))
add("flip/multi", lambda m, x: m.flip(x, (0, -1)), lambda r, d: (arr(r, S3, d),),
    np_fn=lambda x: np.flip(x, (0, 2)), dtypes=F_INT)
add("flip/method", lambda m, x: x.flip(1), lambda r, d: (arr(r, S, d),), np_fn=lambda x: np.flip(x, 1))
add("repeat", lambda m, x: x.repeat(2, 1), lambda r, d: (arr(r, S, d),), np_fn=lambda x: np.tile(x, (2, 1)),
    dtypes=F_INT + ("bool",))
add("repeat/more_dims", lambda m, x: x.repeat(2, 1, 3), lambda r, d: (arr(r, S, d),),
    np_fn=lambda x: np.tile(x, (2, 1, 3)), dtypes=F_INT)
add("repeat/tuple", lambda m, x: x.repeat((3, 2)), lambda r, d: (arr(r, (2,), d),),
    np_fn=lambda x: np.tile(x, (3, 2)))

# ---------------------------------------------------------------- comparisons and bitwise logic
_CMP = (("eq", lambda a, b: a == b, np.equal), ("ne", lambda a, b: a != b, np.not_equal),
        ("lt", lambda a, b: a < b, np.less), ("le", lambda a, b: a <= b, np.less_equal),
        ("gt", lambda a, b: a > b, np.greater), ("ge", lambda a, b: a >= b, np.greater_equal))
for _op, _f, _np in _CMP:
    # small values, so that equal elements are frequent
    add(f"{_op}", lambda m, a, b, _f=_f: _f(a, b),
        lambda r, d: (np.round(arr(r, S, d)), np.round(arr(r, S, d))) if np.dtype(d).kind == "f"
        else (arr(r, S, d, -2, 2), arr(r, S, d, -2, 2)),
        np_fn=_np, dtypes=F_INT + ("bool",), differentiable=False)
    add(f"{_op}/broadcast", lambda m, a, b, _f=_f: _f(a, b), lambda r, d: (arr(r, (3, 1), d), arr(r, (4,), d)),
        np_fn=_np, dtypes=F_INT, differentiable=False)
    add(f"{_op}/scalar", lambda m, a, _f=_f: _f(a, 1), lambda r, d: (arr(r, S, d, -2, 2),),
        np_fn=lambda a, _np=_np: _np(a, 1), dtypes=F_INT, differentiable=False)
    add(f"{_op}/int_vs_float_scalar", lambda m, a, _f=_f: _f(a, 0.5), lambda r, d: (arr(r, S, d, -2, 2),),
        np_fn=lambda a, _np=_np: _np(a, 0.5), dtypes=INT, differentiable=False)
    add(f"{_op}/function", lambda m, a, b, _op=_op: getattr(m, _op)(a, b),
        lambda r, d: (arr(r, S, d, -2, 2), arr(r, S, d, -2, 2)), np_fn=_np, dtypes=F_INT,
        differentiable=False)
_BITS = (("bitwise_and", lambda a, b: a & b, np.bitwise_and), ("bitwise_or", lambda a, b: a | b, np.bitwise_or),
         ("bitwise_xor", lambda a, b: a ^ b, np.bitwise_xor))
for _op, _f, _np in _BITS:
    add(f"{_op}", lambda m, a, b, _f=_f: _f(a, b), lambda r, d: (arr(r, S, d, -8, 8), arr(r, S, d, -8, 8)),
        np_fn=_np, dtypes=("bool",) + INT, differentiable=False)
    add(f"{_op}/broadcast", lambda m, a, b, _f=_f: _f(a, b),
        lambda r, d: (arr(r, (3, 1), d, 0, 9), arr(r, (4,), d, 0, 9)),
        np_fn=_np, dtypes=("bool",) + INT, differentiable=False)
    add(f"{_op}/scalar", lambda m, a, _f=_f: _f(a, True), lambda r, d: (arr(r, S, d, 0, 9),),
        np_fn=lambda a, _np=_np: _np(a, True), dtypes=("bool",) + INT, differentiable=False)
add("bitwise_not", lambda m, a: ~a, lambda r, d: (arr(r, S, d, -8, 8),), np_fn=np.invert,
    dtypes=("bool",) + INT, differentiable=False)
add("bitwise_not/function", lambda m, a: m.bitwise_not(a), lambda r, d: (arr(r, S, d, -8, 8),),
    np_fn=np.invert, dtypes=("bool",) + INT, differentiable=False)
add("logical_not", lambda m, a: m.logical_not(a), lambda r, d: (arr(r, S, d, -2, 2),), np_fn=np.logical_not,
    dtypes=("bool",) + F_INT, differentiable=False)
add("logical_and", lambda m, a, b: m.logical_and(a, b), lambda r, d: (arr(r, S, d, -1, 1), arr(r, S, d, -1, 1)),
    np_fn=np.logical_and, dtypes=("bool",) + F_INT, differentiable=False)
add("logical_or", lambda m, a, b: m.logical_or(a, b), lambda r, d: (arr(r, S, d, -1, 1), arr(r, S, d, -1, 1)),
    np_fn=np.logical_or, dtypes=("bool",) + F_INT, differentiable=False)

# ---------------------------------------------------------------- contract
# the public ops this table must cover (the op-level contract of gradc)
CONTRACT = """neg abs exp log log1p expm1 sqrt rsqrt sin cos tanh sigmoid relu gelu silu erf pow maximum
minimum clamp where add sub mul div floor_divide remainder sum mean var std prod max min amax amin argmax
argmin logsumexp softmax log_softmax cumsum matmul mm bmm einsum outer cat stack gather scatter_add
index_select masked_fill tril triu sort topk flip repeat eq ne lt le gt ge bitwise_and bitwise_or
bitwise_not""".split()

# primitives with a backward that this table does not name, and where they are tested
COVERED_ELSEWHERE = {
    "class_index": "loss tests (out-of-range class targets of nll_loss/cross_entropy)",
    "basic_index": "view/indexing tests (x[1:, None, ...])",
    "as_strided": "view/indexing tests",
    "strided_scatter": "view/indexing tests (backward of basic indexing and in-place writes to views)",
    "index": "view/indexing tests (advanced indexing); also reached here through index_select",
    "index_put": "view/indexing tests (setitem, backward of advanced indexing)",
    "cast": "view/indexing tests (Tensor.to); also reached here through .int()/.double()",
    "clone": "view/indexing tests (clone/contiguous)",
    "view": "view/indexing tests (view/reshape); also reached here through matmul/repeat",
    "permute": "view/indexing tests (permute/transpose); also reached here through mm(a.t(), b)",
    "expand": "view/indexing tests (expand/broadcast_to); also reached here through repeat",
    "to_device": "device tests (needs a second device)",
    "constant_pad": "test_functional.py (F.pad vs torch, gradcheck, gradgradcheck)",
    "unfold": "test_functional.py (F.unfold vs torch, gradcheck); also reached through conv and pooling",
    "fold": "test_functional.py (F.fold vs torch, gradcheck); the backward of unfold",
}

# ---------------------------------------------------------------- 0-d inputs and edge values
X0 = lambda r, d: (arr(r, (), d),)  # noqa: E731
add("cumsum/0d", lambda m, x: m.cumsum(x, 0), X0, np_fn=lambda x: x, dtypes=F_INT)
add("softmax/0d", lambda m, x: m.softmax(x, 0), X0, np_fn=lambda x: np.ones_like(x))
add("log_softmax/0d", lambda m, x: m.log_softmax(x, -1), X0, np_fn=lambda x: np.zeros_like(x))
add("sort/0d", lambda m, x: m.sort(x), X0, np_fn=lambda x: (x, np.array(0)))
add("topk/0d", lambda m, x: m.topk(x, 1), X0, np_fn=lambda x: (x, np.array(0)))
add("max/dim_0d", lambda m, x: m.max(x, 0), X0, np_fn=lambda x: (x, np.array(0)))
add("amax/dim_0d", lambda m, x: m.amax(x, 0), X0, np_fn=lambda x: x)
add("argmax/dim_0d", lambda m, x: m.argmax(x, 0), X0, np_fn=lambda x: np.array(0), differentiable=False)
add("prod/0d", lambda m, x: m.prod(x, 0), X0, np_fn=lambda x: x)
add("logsumexp/0d", lambda m, x: m.logsumexp(x, 0), X0, np_fn=lambda x: x)
add("flip/0d", lambda m, x: m.flip(x, [0]), X0, np_fn=lambda x: x)
add("sum/empty_tuple_dim", lambda m, x: m.sum(x, ()), lambda r, d: (arr(r, S, d),), np_fn=np.sum, dtypes=F_INT)
add("mean/empty_tuple_dim", lambda m, x: m.mean(x, dim=[]), lambda r, d: (arr(r, S, d),), np_fn=np.mean)
add("sum/dtype_narrower", lambda m, x: m.sum(x, 1, dtype=m.int32), lambda r, d: (arr(r, S, d, -9, 9),),
    np_fn=lambda x: x.sum(1), dtypes=("int64",), differentiable=False)
add("prod/dtype_narrower", lambda m, x: m.prod(x, dtype=m.int32), lambda r, d: (arr(r, (5,), d, -3, 3),),
    np_fn=np.prod, dtypes=("int64",), differentiable=False)
add("cumsum/dtype_narrower", lambda m, x: m.cumsum(x, 0, dtype=m.int32), lambda r, d: (arr(r, (5,), d, -3, 3),),
    np_fn=np.cumsum, dtypes=("int64",), differentiable=False)
add("std/zero_variance", lambda m, x: m.std(x, 0), lambda r, d: (np.ones((3, 2), d) * np.array([1.5, -2.0], d),),
    np_fn=lambda x: np.std(x, 0, ddof=1))  # PyTorch's gradient there is 0 (not sqrt's inf * 0)
add("logsumexp/neg_inf", lambda m, x: m.logsumexp(x, 1),
    lambda r, d: (np.array([[-np.inf, 0.5, 1.0], [0.0, -np.inf, -np.inf]], d),), gradcheck=False)
add("logsumexp/all_neg_inf_row", lambda m, x: m.logsumexp(x, 1),
    lambda r, d: (np.array([[-np.inf, -np.inf], [0.0, 1.0]], d),), differentiable=False)
add("softmax/masked_neg_inf", lambda m, x: m.softmax(x, -1),
    lambda r, d: (np.array([[-np.inf, 1.0, 2.0], [0.0, -np.inf, 3.0]], d),), gradcheck=False)
add("log_softmax/masked_neg_inf", lambda m, x: m.log_softmax(x, -1),
    lambda r, d: (np.array([[-np.inf, 1.0, 2.0], [0.0, -np.inf, 3.0]], d),), differentiable=False)
add("pow/scalar_zero_base", lambda m, a: 0.0 ** a, lambda r, d: (np.array([0.0, 0.5, 2.0, 3.0], d),),
    np_fn=lambda a: 0.0 ** a, gradcheck=False)  # d/da 0 ** a is 0 for a >= 0, as PyTorch
add("pow/zero_base_tensor", lambda m, a, b: a ** b, lambda r, d: (np.array([0.0, 0.0, 0.0, 2.0], d),
                                                                   np.array([0.0, 2.0, 3.0, 0.0], d)),
    np_fn=np.power, gradcheck=False)
add("pow/zero_base_scalar_exp", lambda m, a: a ** 2, lambda r, d: (np.array([0.0, 1.0, -2.0], d),),
    np_fn=lambda a: a ** 2)
add("pow/zero_exponent_at_zero", lambda m, a: a ** 0, lambda r, d: (np.array([0.0, 1.0, -2.0], d),),
    np_fn=lambda a: a ** 0, gradcheck=False)
add("maximum/nan", lambda m, a, b: m.maximum(a, b),
    lambda r, d: (np.array([np.nan, 1.0, 2.0], d), np.array([0.0, np.nan, 1.0], d)), gradcheck=False)
add("minimum/nan", lambda m, a, b: m.minimum(a, b),
    lambda r, d: (np.array([np.nan, 1.0, 2.0], d), np.array([0.0, np.nan, 1.0], d)), gradcheck=False)
add("sign/nan_and_zeros", lambda m, a: m.sign(a), lambda r, d: (np.array([np.nan, -0.0, 0.0, -3.0, 2.0], d),),
    differentiable=False)
add("clamp/nan", lambda m, a: m.clamp(a, -1.0, 1.0), lambda r, d: (np.array([np.nan, 4.0, 0.5], d),),
    gradcheck=False)
add("amax/nan", lambda m, a: m.amax(a, 0), lambda r, d: (np.array([[np.nan, 1.0], [2.0, 0.0]], d),),
    gradcheck=False)
add("max/dim_nan", lambda m, a: m.max(a, 0), lambda r, d: (np.array([[1.0, np.nan], [2.0, 0.0]], d),),
    gradcheck=False)
add("relu/nan", lambda m, a: m.relu(a), lambda r, d: (np.array([np.nan, -1.0, 1.0], d),), gradcheck=False)
add("exp/overflow", lambda m, a: m.exp(a), lambda r, d: (np.array([100.0, -1e4, 0.0], d),), gradcheck=False)
add("gather/int32_index", lambda m, x, i: m.gather(x, 1, i),
    lambda r, d: (arr(r, S, d), idx(r, (3, 2), 4).astype(np.int32)),
    np_fn=lambda x, i: _np_take_along(x, i, 1))
add("scatter_add/int32_index", lambda m, x, i, s: m.scatter_add(x, 0, i, s),
    lambda r, d: (arr(r, S, d), idx(r, (2, 4), 3).astype(np.int32), arr(r, (2, 4), d)),
    np_fn=lambda x, i, s: _np_scatter_add(x, 0, i, s))
add("index_select/int32_index", lambda m, x, i: m.index_select(x, 1, i),
    lambda r, d: (arr(r, S, d), np.array([3, 0, 3], np.int32)), np_fn=lambda x, i: x[:, i])

# ---------------------------------------------------------------- non-contiguous inputs (transposed, strided)
add("exp/transposed", lambda m, x: m.exp(x.t()), lambda r, d: (arr(r, S, d),), np_fn=lambda x: np.exp(x.T))
add("add/strided", lambda m, a, b: a[:, ::2] + b.t(), lambda r, d: (arr(r, (3, 4), d), arr(r, (2, 3), d)),
    np_fn=lambda a, b: a[:, ::2] + b.T, dtypes=F_INT)
add("sum/transposed", lambda m, x: m.sum(x.transpose(0, 2), 1), lambda r, d: (arr(r, S3, d),),
    np_fn=lambda x: x.transpose(2, 1, 0).sum(1), dtypes=F_INT)
add("prod/strided", lambda m, x: m.prod(x[::2], 0), lambda r, d: (nonzero(r, (5, 3), d, 0.5, 1.5),),
    np_fn=lambda x: x[::2].prod(0))
add("amax/transposed", lambda m, x: m.amax(x.t(), 1), lambda r, d: (distinct(r, S, d),), np_fn=lambda x: x.T.max(1))
add("cumsum/strided", lambda m, x: m.cumsum(x[:, 1::2], 1), lambda r, d: (arr(r, (3, 6), d),),
    np_fn=lambda x: np.cumsum(x[:, 1::2], 1), dtypes=F_INT)
add("softmax/transposed", lambda m, x: m.softmax(x.t(), -1), lambda r, d: (arr(r, S, d),),
    np_fn=lambda x: _np_softmax(x.T, -1))
add("matmul/transposed", lambda m, a, b: m.matmul(a.mT, b.mT),
    lambda r, d: (arr(r, (2, 4, 3), d), arr(r, (2, 5, 4), d)),
    np_fn=lambda a, b: np.swapaxes(a, -1, -2) @ np.swapaxes(b, -1, -2), rtol=1e-4, gradgrad=True)
add("einsum/transposed", lambda m, a, b: m.einsum("ij,jk->ik", a.t(), b[:, ::2]),
    lambda r, d: (arr(r, (4, 3), d), arr(r, (4, 4), d)), np_fn=lambda a, b: a.T @ b[:, ::2], rtol=1e-4)
add("gather/transposed", lambda m, x, i: m.gather(x.t(), 0, i), lambda r, d: (arr(r, S, d), idx(r, (2, 3), 4)),
    np_fn=lambda x, i: _np_take_along(x.T, i, 0))
add("scatter_add/transposed", lambda m, x, i, s: m.scatter_add(x.t(), 1, i, s.t()),
    lambda r, d: (arr(r, S, d), idx(r, (4, 2), 3), arr(r, (2, 4), d)),
    np_fn=lambda x, i, s: _np_scatter_add(x.T, 1, i, s.T))
add("cat/transposed", lambda m, a, b: m.cat([a.t(), b], 1), lambda r, d: (arr(r, (2, 3), d), arr(r, (3, 2), d)),
    np_fn=lambda a, b: np.concatenate([a.T, b], 1))
add("where/transposed", lambda m, c, a, b: m.where(c.t(), a.t(), b),
    lambda r, d: (mask(r, (4, 3)), arr(r, (4, 3), d), arr(r, S, d)),
    np_fn=lambda c, a, b: np.where(c.T, a.T, b))
add("sort/transposed", lambda m, x: m.sort(x.t(), 1), lambda r, d: (distinct(r, S, d),),
    np_fn=lambda x: (np.sort(x.T, 1), np.argsort(x.T, 1)))
add("tril/transposed", lambda m, x: m.tril(x.t()), lambda r, d: (arr(r, S, d),), np_fn=lambda x: np.tril(x.T))
add("flip/strided", lambda m, x: m.flip(x[::2], [0, 1]), lambda r, d: (arr(r, (5, 3), d),),
    np_fn=lambda x: x[::2][::-1, ::-1])
add("index_select/transposed", lambda m, x, i: m.index_select(x.t(), 0, i),
    lambda r, d: (arr(r, S, d), np.array([3, 1])),
    np_fn=lambda x, i: x.T[i])
add("masked_fill/transposed", lambda m, x, k: m.masked_fill(x.t(), k, 2.0),
    lambda r, d: (arr(r, S, d), mask(r, (4, 3))),
    np_fn=lambda x, k: np.where(k, 2.0, x.T))
