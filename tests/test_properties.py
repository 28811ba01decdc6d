"""Property-based gradient tests: random expression trees over gradc's op table.

A hypothesis strategy composes random expressions from generators (one per kind of
node: unary, binary, reduction, view) over 1-3 float64 inputs of small broadcastable
shapes. Each expression is checked three ways:

- `gradcheck` (autograd against central finite differences);
- every primitive a node declares is really recorded on the autograd graph;
- forward values and gradients against the same expression run in PyTorch (if installed).

Inputs stay well-conditioned: log/sqrt/div get positive arguments, exp a bounded one,
and ops with kinks or jumps (relu, abs, max/min, amax/amin, clamp, floor, remainder, ...)
are only used where their argument is at least `TOL` away from the kink at the
expression's actual inputs (an exact tie is allowed: it can only come from the
expression's structure, e.g. `amax` over an expanded dim, where the derivative exists).

`test_generators_cover_the_op_table` fails when a differentiable pointwise, reduction
or view primitive is added to `gradc.OPS` without a generator here (or an entry in
`EXCLUDED` saying why it cannot be one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

import gradc
from gradc.autograd import gradcheck

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the torch comparison is skipped; gradcheck still runs
    torch = F = None

TOL = 1e-3  # how far from a kink (or jump) the argument of a non-smooth op must be
MAX_DEPTH = 5
MAX_NUMEL = 48

# Differentiable primitives of the checked kinds that no generator exercises, with why.
EXCLUDED = {
    "cast": "only converts dtypes; a float64 -> float32 -> float64 round trip makes finite "
            "differences meaningless, and float64 -> float64 does not call the op",
}


# ----------------------------------------------------------------------------- libraries
class _Torch:
    """torch under gradc's names (gelu and silu live in torch.nn.functional)."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def gelu(x, approximate="none"):
        return F.gelu(x, approximate=approximate)

    @staticmethod
    def silu(x):
        return F.silu(x)


TORCH = _Torch()


# ----------------------------------------------------------------------------- expressions
@dataclass(eq=False)
class Expr:
    """A node: `op(lib, *child values)`; a leaf (op None) is input `args[0]`.

    `value` is the node's gradc value at the drawn inputs (used to pick shapes and to keep
    non-smooth ops away from their kinks); `declared` the gradc primitives the node's
    generator claims to record on the autograd graph (see DECLARED).
    """

    text: str
    op: object
    args: tuple
    value: np.ndarray
    declared: frozenset = frozenset()

    def __repr__(self):
        return self.text


def evaluate(e: Expr, lib, inputs):
    if e.op is None:
        return inputs[e.args[0]]
    return e.op(lib, *(evaluate(c, lib, inputs) for c in e.args))


def node(text: str, op, *children: Expr) -> Expr:
    with gradc.no_grad():
        value = op(gradc, *(gradc.tensor(c.value, dtype=gradc.float64) for c in children))
    return Expr(text, op, children, value.numpy().copy())


def clear_of_kinks(distance) -> bool:
    """True when every element is exactly at a kink (structural) or at least TOL away."""
    d = np.abs(np.asarray(distance, dtype=np.float64))
    return bool(np.all((d == 0) | (d > TOL)))


def frac_distance(v):
    """Distance of each element to the nearest integer."""
    return v - np.round(v)


def dims_of(draw, ndim: int) -> tuple:
    """A non-empty set of dims (as a tuple, some negative) to reduce over."""
    dims = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in dims)


def reduced_numel(shape, dims) -> int:
    return int(np.prod([shape[d] for d in dims]))


# ----------------------------------------------------------------------------- unary nodes
# Each generator takes (draw, child) and returns a node, or None where it does not apply
# (wrong rank, too close to a kink); the tree builder then uses tanh instead.
def simple(name):
    def gen(draw, a):
        return node(f"{name}({a})", lambda L, x: getattr(x, name)(), a)

    return gen


def g_exp(draw, a):
    return node(f"exp(tanh({a}))", lambda L, x: x.tanh().exp(), a)


def g_positive(name):
    """`name(a*a + c)`: log, sqrt, rsqrt, reciprocal of a positive argument."""

    def gen(draw, a):
        c = draw(st.sampled_from([0.5, 1.0, 2.0]))
        return node(f"{name}({a}*{a} + {c})", lambda L, x: getattr(x * x + c, name)(), a)

    return gen


def g_log1p(draw, a):
    return node(f"log1p({a}*{a})", lambda L, x: (x * x).log1p(), a)


def g_expm1(draw, a):
    return node(f"expm1(tanh({a}))", lambda L, x: x.tanh().expm1(), a)


def g_kinked(name):
    """relu/abs of `a + c`, away from 0."""

    def gen(draw, a):
        c = draw(st.sampled_from([0.0, 0.25, -0.3]))
        if not clear_of_kinks(a.value + c):
            return None
        return node(f"{name}({a} + {c})", lambda L, x: getattr(x + c, name)(), a)

    return gen


def g_step(name, distance):
    """`a * step(2a)` for the piecewise-constant ops (their derivative is 0 away from jumps)."""

    def gen(draw, a):
        if not clear_of_kinks(distance(2 * a.value)):
            return None
        return node(f"{a} * {name}(2*{a})", lambda L, x: x * getattr(x * 2, name)(), a)

    return gen


def g_gelu(draw, a):
    approximate = draw(st.sampled_from(["none", "tanh"]))
    return node(f"gelu({a}, approximate={approximate!r})",
                lambda L, x: L.gelu(x, approximate=approximate), a)


def g_silu(draw, a):
    return node(f"silu({a})", lambda L, x: L.silu(x), a)


def g_clamp(draw, a):
    lo = draw(st.sampled_from([None, -0.5, 0.1]))
    hi = draw(st.sampled_from([None, 0.7, 1.2] if lo is not None else [0.7, 1.2]))
    if not all(clear_of_kinks(a.value - b) for b in (lo, hi) if b is not None):
        return None
    return node(f"clamp({a}, min={lo}, max={hi})", lambda L, x: x.clamp(min=lo, max=hi), a)


def g_along_dim(name):
    """softmax / log_softmax / cumsum over a random dim."""

    def gen(draw, a):
        if a.value.ndim == 0:
            return None
        d = draw(st.integers(-a.value.ndim, a.value.ndim - 1))
        return node(f"{name}({a}, dim={d})", lambda L, x: getattr(x, name)(d), a)

    return gen


# ----------------------------------------------------------------------------- reductions
def g_reduce(name, min_numel=1):
    """sum / mean / var / logsumexp / amax / amin over random dims, keepdim random."""

    def gen(draw, a):
        shape = a.value.shape
        if not shape:
            return None
        dims, keepdim = dims_of(draw, len(shape)), draw(st.booleans())
        if reduced_numel(shape, dims) < min_numel:
            return None
        if name in ("amax", "amin"):
            v = np.moveaxis(a.value, [d % len(shape) for d in dims], range(-len(dims), 0))
            v = v.reshape(v.shape[: v.ndim - len(dims)] + (-1,))
            if not clear_of_kinks(v - getattr(np, name)(v, axis=-1, keepdims=True)):
                return None
        return node(f"{name}({a}, dim={dims}, keepdim={keepdim})",
                    lambda L, x: getattr(x, name)(dim=dims, keepdim=keepdim), a)

    return gen


def g_prod(draw, a):
    if a.value.ndim == 0 or draw(st.booleans()):
        return node(f"prod({a})", lambda L, x: x.prod(), a)
    d, keepdim = draw(st.integers(-a.value.ndim, a.value.ndim - 1)), draw(st.booleans())
    return node(f"prod({a}, dim={d}, keepdim={keepdim})", lambda L, x: x.prod(d, keepdim=keepdim), a)


# ----------------------------------------------------------------------------- views
def g_transpose(draw, a):
    n = a.value.ndim
    if n < 2:
        return None
    d0, d1 = draw(st.integers(-n, n - 1)), draw(st.integers(-n, n - 1))
    return node(f"transpose({a}, {d0}, {d1})", lambda L, x: x.transpose(d0, d1), a)


def g_permute(draw, a):
    if a.value.ndim < 2:
        return None
    perm = tuple(draw(st.permutations(range(a.value.ndim))))
    return node(f"permute({a}, {perm})", lambda L, x: x.permute(*perm), a)


def g_reshape(draw, a):
    shape = a.value.shape
    new = draw(st.sampled_from([(-1,), shape[::-1], (1, *shape), (*shape, 1)]))
    return node(f"reshape({a}, {new})", lambda L, x: x.reshape(new), a)


def g_unsqueeze(draw, a):
    if a.value.ndim >= 4:
        return None
    d = draw(st.integers(-a.value.ndim - 1, a.value.ndim))
    return node(f"unsqueeze({a}, {d})", lambda L, x: x.unsqueeze(d), a)


def g_squeeze(draw, a):
    ones = [d for d, s in enumerate(a.value.shape) if s == 1]
    if not ones:
        return None
    d = draw(st.sampled_from(ones))
    return node(f"squeeze({a}, {d})", lambda L, x: x.squeeze(d), a)


def g_slice(draw, a):
    shape = a.value.shape
    if not shape:
        return None
    d = draw(st.integers(0, len(shape) - 1))
    if draw(st.booleans()):
        item = draw(st.integers(-shape[d], shape[d] - 1))
    else:
        start = draw(st.integers(0, shape[d] - 1))
        item = slice(start, draw(st.integers(start + 1, shape[d])), draw(st.sampled_from([1, 2])))
    key = (slice(None),) * d + (item,)
    return node(f"{a}[{key}]", lambda L, x: x[key], a)


def g_expand(draw, a):
    shape = a.value.shape
    if a.value.size * 3 > MAX_NUMEL or len(shape) >= 4:
        return None
    sizes = [draw(st.sampled_from([2, 3])) if s == 1 else s for s in shape]
    if sizes == list(shape):
        sizes = [2, *sizes]
    return node(f"expand({a}, {tuple(sizes)})", lambda L, x: x.expand(*sizes), a)


def g_as_strided(draw, a):
    n = a.value.size
    if n < 2:
        return None
    w = draw(st.integers(1, min(n, 3)))
    size, stride = (n - w + 1, w), (1, 1)  # overlapping sliding windows over the flat data
    return node(f"as_strided(contiguous({a}), {size}, {stride})",
                lambda L, x: x.contiguous().as_strided(size, stride), a)


def g_clone(draw, a):
    return node(f"clone({a})", lambda L, x: x.clone(), a)


# ----------------------------------------------------------------------------- binary nodes
def g_arith(name, symbol):
    def gen(draw, a, b):
        return node(f"({a} {symbol} {b})", lambda L, x, y: getattr(L, name)(x, y), a, b)

    return gen


def g_div(draw, a, b):
    c = draw(st.sampled_from([0.5, 1.0]))
    return node(f"({a} / ({b}*{b} + {c}))", lambda L, x, y: x / (y * y + c), a, b)


def g_minmax(name):
    def gen(draw, a, b):
        c = draw(st.sampled_from([0.125, -0.2, 0.3]))
        if not clear_of_kinks(a.value - (b.value + c)) or np.any(a.value == b.value + c):
            return None
        return node(f"{name}({a}, {b} + {c})", lambda L, x, y: getattr(L, name)(x, y + c), a, b)

    return gen


def g_pow(draw, a, b):
    return node(f"pow(sigmoid({a}) + 0.5, tanh({b}))",
                lambda L, x, y: L.pow(x.sigmoid() + 0.5, y.tanh()), a, b)


def g_pow_scalar(draw, a):
    """Scalar exponents (the small-integer kernel path included) and a scalar base."""
    form = draw(st.sampled_from(["int", "frac", "base"]))
    if form == "int":
        n = draw(st.sampled_from([2, 3]))
        return node(f"({a} ** {n})", lambda L, x: x**n, a)
    if form == "frac":
        p = draw(st.sampled_from([0.5, -1.5, 2.5]))
        return node(f"(({a}*{a} + 0.5) ** {p})", lambda L, x: (x * x + 0.5) ** p, a)
    return node(f"(1.7 ** tanh({a}))", lambda L, x: 1.7 ** x.tanh(), a)


def g_remainder(draw, a, b):
    divisor = 0.5 + 1 / (1 + np.exp(-b.value))
    if not clear_of_kinks(frac_distance(a.value / divisor)):
        return None
    return node(f"remainder({a}, sigmoid({b}) + 0.5)",
                lambda L, x, y: L.remainder(x, y.sigmoid() + 0.5), a, b)


def g_where(draw, a, b):
    shape = np.broadcast_shapes(a.value.shape, b.value.shape)
    mask = np.random.default_rng(draw(st.integers(0, 2**16))).random(shape) < 0.5
    return node(f"where({mask.astype(int).tolist()}, {a}, {b})",
                lambda L, x, y: L.where(L.tensor(mask), x, y), a, b)


def g_matmul(draw, a, b):
    """matmul(a, b) if shapes allow, else matmul(a, b^T), else the Gram matrix of a."""
    if a.value.ndim == 0:
        return None

    def fits(x, y):
        try:
            out = np.matmul(np.zeros(x), np.zeros(y))
        except ValueError:
            return False
        return out.size <= MAX_NUMEL

    sa, sb = a.value.shape, b.value.shape
    if b.value.ndim and fits(sa, sb):
        return node(f"matmul({a}, {b})", lambda L, x, y: L.matmul(x, y), a, b)
    if b.value.ndim >= 2 and fits(sa, sb[:-2] + sb[:-3:-1]):
        return node(f"matmul({a}, transpose({b}, -1, -2))",
                    lambda L, x, y: L.matmul(x, y.transpose(-1, -2)), a, b)
    if a.value.ndim >= 2 and fits(sa, sa[:-2] + sa[:-3:-1]):
        return node(f"matmul({a}, transpose({a}, -1, -2))",
                    lambda L, x: L.matmul(x, x.transpose(-1, -2)), a)
    if a.value.ndim == 1:
        return node(f"matmul({a}, {a})", lambda L, x: L.matmul(x, x), a)
    return None


UNARY = {
    "tanh": simple("tanh"), "neg": simple("neg"), "sin": simple("sin"), "cos": simple("cos"),
    "sigmoid": simple("sigmoid"), "erf": simple("erf"), "exp": g_exp, "log": g_positive("log"),
    "sqrt": g_positive("sqrt"), "rsqrt": g_positive("rsqrt"), "reciprocal": g_positive("reciprocal"),
    "log1p": g_log1p, "expm1": g_expm1, "relu": g_kinked("relu"), "abs": g_kinked("abs"),
    "gelu": g_gelu, "silu": g_silu, "clamp": g_clamp, "clone": g_clone,
    "sign": g_step("sign", lambda v: v), "floor": g_step("floor", frac_distance),
    "ceil": g_step("ceil", frac_distance), "round": g_step("round", lambda v: frac_distance(v - 0.5)),
    "softmax": g_along_dim("softmax"), "log_softmax": g_along_dim("log_softmax"),
    "cumsum": g_along_dim("cumsum"), "pow_scalar": g_pow_scalar,
}
REDUCTIONS = {
    "sum": g_reduce("sum"), "mean": g_reduce("mean"),
    "amax": g_reduce("amax"), "amin": g_reduce("amin"), "prod": g_prod,
    "logsumexp": g_reduce("logsumexp"),
    "var": g_reduce("var", min_numel=2),
}
VIEWS = {
    "transpose": g_transpose, "permute": g_permute, "reshape": g_reshape, "unsqueeze": g_unsqueeze,
    "squeeze": g_squeeze, "slice": g_slice, "expand": g_expand, "as_strided": g_as_strided,
}
BINARY = {
    "add": g_arith("add", "+"), "sub": g_arith("sub", "-"), "mul": g_arith("mul", "*"), "div": g_div,
    "maximum": g_minmax("maximum"), "minimum": g_minmax("minimum"), "pow": g_pow,
    "remainder": g_remainder, "where": g_where, "matmul": g_matmul,
}

# The primitives each generator records; checked on every drawn example (see the tests).
DECLARED = {
    "tanh": {"tanh"}, "neg": {"neg"}, "sin": {"sin"}, "cos": {"cos"}, "sigmoid": {"sigmoid"},
    "erf": {"erf"}, "exp": {"exp", "tanh"}, "log": {"log"}, "sqrt": {"sqrt"}, "rsqrt": {"rsqrt"},
    "reciprocal": {"reciprocal"}, "log1p": {"log1p"}, "expm1": {"expm1"}, "relu": {"relu"},
    "abs": {"abs"}, "gelu": {"gelu"}, "silu": {"sigmoid", "mul"}, "clamp": {"clamp"},
    "clone": {"clone"}, "sign": {"sign"}, "floor": {"floor"}, "ceil": {"ceil"}, "round": {"round"},
    "softmax": {"softmax"}, "log_softmax": {"log_softmax"}, "cumsum": {"cumsum"},
    "sum": {"sum"}, "mean": {"sum", "div"}, "amax": {"amax"}, "amin": {"amin"}, "prod": {"prod"},
    "logsumexp": {"exp", "sum", "log"}, "var": {"sum", "sub", "mul", "div"},
    "transpose": {"permute"}, "permute": {"permute"}, "reshape": {"view"}, "unsqueeze": set(),
    "squeeze": set(),  # (un)squeeze: implementation-defined, a view or a basic index
    "slice": {"basic_index"}, "expand": {"expand"}, "as_strided": {"as_strided"},
    "add": {"add"}, "sub": {"sub"}, "mul": {"mul"}, "div": {"div"}, "maximum": {"maximum"},
    "minimum": {"minimum"}, "pow": {"pow"}, "pow_scalar": {"pow"}, "remainder": {"remainder"},
    "where": {"where"}, "matmul": {"matmul"},
}


# ----------------------------------------------------------------------------- the strategy
@dataclass
class Case:
    expr: Expr
    inputs: list  # float64 numpy arrays

    def __repr__(self):
        shapes = ", ".join(f"x{i}: {tuple(a.shape)}" for i, a in enumerate(self.inputs))
        return f"Case({self.expr.text}; {shapes})"


def input_shapes(draw) -> list:
    """1-3 broadcast-compatible shapes: a base shape with some dims 1 and leading dims dropped."""
    base = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    shapes = []
    for _ in range(draw(st.integers(1, 3))):
        shape = [1 if draw(st.booleans()) and draw(st.booleans()) else s for s in base]
        shapes.append(tuple(shape[draw(st.integers(0, (len(shape) + 1) // 2)):]))
    return shapes


KINDS = {"unary": UNARY, "binary": BINARY, "reduction": REDUCTIONS, "view": VIEWS}


def build(draw, leaves, order, depth, top=False) -> Expr:
    """A random tree of at most `depth` op levels; `order` lists each kind's generators in
    a per-example random order, so that hypothesis's bias towards the first element of
    `sampled_from` does not favour one op (it still shrinks towards order[kind][0])."""
    if depth == 0 or (not top and draw(st.integers(0, 5)) == 5):
        return draw(st.sampled_from(leaves))
    kind = draw(st.sampled_from(order["kinds"]))
    names = order[kind]
    start = names.index(draw(st.sampled_from(names)))
    a = build(draw, leaves, order, depth - 1)
    if kind == "binary":
        b = build(draw, leaves, order, depth - 1)
        try:
            np.broadcast_shapes(a.value.shape, b.value.shape)
        except ValueError:
            b = node(f"sum({b})", lambda L, x: x.sum(), b)
    for name in names[start:] + names[:start]:  # the first generator that applies here
        out = KINDS[kind][name](draw, a, b) if kind == "binary" else KINDS[kind][name](draw, a)
        if out is not None:
            break
    else:
        return node(f"tanh({a})", lambda L, x: x.tanh(), a)
    out.declared = frozenset(DECLARED[name])
    assume(np.all(np.isfinite(out.value)) and np.abs(out.value).max(initial=0) < 1e3)
    return out


@st.composite
def cases(draw) -> Case:
    shapes = input_shapes(draw)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    inputs = [rng.uniform(-1.5, 1.5, s) for s in shapes]
    leaves = [Expr(f"x{i}", None, (i,), v) for i, v in enumerate(inputs)]
    order = {kind: list(rng.permutation(sorted(table))) for kind, table in KINDS.items()}
    order["kinds"] = list(rng.permutation(["binary", "binary", "reduction", "unary", "view"]))
    expr = build(draw, leaves, order, draw(st.integers(2, MAX_DEPTH)), top=True)
    assume(expr.value.size <= MAX_NUMEL)
    return Case(expr, inputs)


def gradc_inputs(case):
    return [gradc.tensor(a, dtype=gradc.float64, requires_grad=True) for a in case.inputs]


def recorded_primitives(out) -> set:
    """Names of the op-table primitives on the autograd graph of `out`."""
    names, seen, stack = set(), set(), [out.grad_fn]
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        if getattr(n, "op", None) is not None:
            names.add(n.op.name)
        stack.extend(f for f, _ in n.next_functions)
    return names


def describe(case) -> str:
    lines = [f"expression: {case.expr.text}"]
    lines += [f"x{i} = np.array({a.tolist()!r})  # {a.shape}" for i, a in enumerate(case.inputs)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- tests
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                           HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_generators_cover_the_op_table():
    required = {name for name, op in gradc.OPS.items()
                if op.differentiable and op.kind in ("pointwise", "reduction", "view")}
    covered = set().union(*DECLARED.values())
    missing = required - covered - set(EXCLUDED)
    assert not missing, (f"no expression generator in tests/test_properties.py exercises {sorted(missing)}: "
                         "add one, or list the op in EXCLUDED with the reason")
    assert not set(EXCLUDED) & covered, "an EXCLUDED op is covered after all: drop it from EXCLUDED"
    assert set(EXCLUDED) <= set(gradc.OPS), "EXCLUDED names an op that is not in gradc.OPS"
    assert set(DECLARED) == set(UNARY) | set(REDUCTIONS) | set(VIEWS) | set(BINARY)


@settings(SETTINGS, max_examples=200)
@given(case=cases())
def test_random_expressions_pass_gradcheck(case):
    note(describe(case))
    inputs = gradc_inputs(case)
    fn = lambda *xs: evaluate(case.expr, gradc, xs)
    out = fn(*inputs)
    assert isinstance(out, gradc.Tensor) and out.dtype is gradc.float64
    assert tuple(out.shape) == case.expr.value.shape
    declared = set().union(*(e.declared for e in walk(case.expr)))
    missing = declared - recorded_primitives(out)
    assert not missing, f"primitives {sorted(missing)} were declared but not recorded on the graph"
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def walk(e: Expr):
    yield e
    if e.op is not None:
        for c in e.args:
            yield from walk(c)


@pytest.mark.skipif(torch is None, reason="needs PyTorch as the reference")
@settings(SETTINGS, max_examples=200)
@given(case=cases(), seed=st.integers(0, 2**16))
def test_random_expressions_match_torch(case, seed):
    note(describe(case))
    g_inputs = gradc_inputs(case)
    t_inputs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in case.inputs]
    g_out = evaluate(case.expr, gradc, g_inputs)
    t_out = evaluate(case.expr, TORCH, t_inputs)
    assert tuple(g_out.shape) == tuple(t_out.shape)
    np.testing.assert_allclose(g_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-12)

    cotangent = np.random.default_rng(seed).standard_normal(tuple(t_out.shape))
    g_grads = gradc.autograd.grad(g_out, g_inputs, gradc.tensor(cotangent, dtype=gradc.float64), allow_unused=True)
    t_grads = torch.autograd.grad(t_out, t_inputs, torch.tensor(cotangent), allow_unused=True)
    for i, (g, t) in enumerate(zip(g_grads, t_grads, strict=True)):
        g = np.zeros(case.inputs[i].shape) if g is None else g.numpy()
        t = np.zeros(case.inputs[i].shape) if t is None else t.numpy()
        np.testing.assert_allclose(g, t, rtol=1e-8, atol=1e-10, err_msg=f"gradient of x{i}")
