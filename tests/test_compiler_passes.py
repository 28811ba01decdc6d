"""Compiler graph passes (`compiler.simplify`): each rewrite fires, and compiled results stay
bitwise equal to eager (dtype, shape, NaN, inf and signed zero included)."""
import math

import numpy as np
import pytest

import gradc
from gradc import OPS, compiler
from gradc.compiler.capture import capture
from gradc.compiler.graph import build_graph, eliminate_dead_code
from gradc.compiler.simplify import same, simplify
from gradc.ops.dispatch import apply
from gradc.ops.indexing import INDEX_SLOT

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
SPECIALS = [0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, math.nan, 3e38, 1e-40]


def _graphs(fn, *args):
    """(graph as captured, graph after simplify and dead-code elimination)."""
    trace = capture(fn, args, {})
    assert not trace.breaks, trace.breaks
    return build_graph(trace), eliminate_dead_code(simplify(build_graph(trace)))


def _ops(g) -> list:
    return sorted(d["op"] for _, d in g.nodes(data=True))


def _bitwise(compiled, eager):
    """Same dtype, shape and values, NaN where eager has NaN, and the same sign elsewhere
    (0.0 and -0.0 differ)."""
    compiled = compiled if isinstance(compiled, tuple) else (compiled,)
    eager = eager if isinstance(eager, tuple) else (eager,)
    assert len(compiled) == len(eager)
    for c, e in zip(compiled, eager):
        assert c.dtype == e.dtype and c.shape == e.shape
        a, b = c.detach().numpy(), e.detach().numpy()
        np.testing.assert_array_equal(a, b)
        if a.dtype.kind == "f":
            real = ~np.isnan(b)
            np.testing.assert_array_equal(np.signbit(a[real]), np.signbit(b[real]))


def _run(fn, *args):
    """Compile `fn`, check it ran compiled code, and compare bitwise with eager."""
    out = gradc.compile(fn, fullgraph=True)(*args)
    assert compiler.counters["fallbacks"] == 0 and compiler.counters["compiles"] >= 1
    _bitwise(out, fn(*args))
    return out


def _specials(dtype=gradc.float32):
    return gradc.tensor(SPECIALS, dtype=dtype)


# ------------------------------------------------------------------ CSE

def test_cse_merges_repeated_pointwise_and_reduction():
    def f(x):
        a = (x.abs() + 1) * (x.abs() + 1)
        return a + x.sum(dim=-1, keepdim=True) - x.sum(dim=-1, keepdim=True)

    x = gradc.randn(4, 5)
    before, after = _graphs(f, x)
    assert _ops(before).count("abs") == 2 and _ops(before).count("sum") == 2
    assert _ops(after).count("abs") == 1 and _ops(after).count("sum") == 1 and _ops(after).count("add") == 2
    mul = next(n for n, d in after.nodes(data=True) if d["op"] == "mul")
    (tag, operand), other = after.nodes[mul]["args"]
    assert other == (tag, operand) and list(after.predecessors(mul)) == [operand]
    assert after.edges[operand, mul]["pos"] == (0, 1)
    _run(f, x)


def test_cse_keeps_nodes_that_differ_in_attrs_constants_or_dtype():
    def f(x):
        return (x.sum(dim=0), x.sum(dim=1), x * 0.0, x * -0.0, x * 2, x * 2.0,
                x.to(gradc.float64) + 1, x.to(gradc.int64) + 1)

    x = gradc.tensor([[1.5, -2.0], [0.0, 3.0]])
    before, after = _graphs(f, x)
    assert _ops(after) == _ops(before)
    _run(f, x)


def test_cse_merges_externs_views_and_fills():
    def f(x, w):
        a = (x @ w.t()) + (x @ w.t())
        return a + gradc.full((3, 4), 2.0) * gradc.full((3, 4), 2.0)

    x, w = gradc.randn(3, 5), gradc.randn(4, 5)
    before, after = _graphs(f, x, w)
    assert _ops(before).count("matmul") == 2 and _ops(before).count("view") == 2
    assert _ops(after).count("matmul") == 1 and _ops(after).count("view") == 1
    assert "mul" not in _ops(after)  # the merged fills fold: 2 * 2 is a fill of 4
    _run(f, x, w)


def test_cse_duplicate_outputs_become_one_computation_and_a_copy():
    def f(x):
        return x @ x.t(), x @ x.t(), (x @ x.t()).relu()

    x = gradc.randn(3, 3)
    _, after = _graphs(f, x)
    outputs = after.graph["outputs"]
    assert len(set(outputs)) == 3 and _ops(after).count("matmul") == 1
    copy = after.nodes[outputs[1]]
    assert copy["op"] == "cast" and copy["args"] == [("value", outputs[0])]
    assert after.nodes[outputs[2]]["args"] == [("value", outputs[0])]
    out = _run(f, x)
    assert out[0] is not out[1]


def test_cse_in_a_training_graph_keeps_saved_values_and_gradients_exact():
    """sin(w) * sin(w): CSE leaves one sin (and one cos) in the forward, and the backward
    recomputes them from w (pointwise values of an input) instead of receiving them, so
    the forward stores nothing but the loss; gradients stay exact."""
    def f(w):
        return (gradc.sin(w) * gradc.sin(w) + gradc.cos(w) * gradc.cos(w)).sum()

    w = gradc.randn(7, requires_grad=True)
    report = gradc.explain(f, w)
    fwd_ops = _ops(report.graph)
    assert fwd_ops.count("sin") == 1 and fwd_ops.count("cos") == 1
    assert len(set(report.graph.graph["outputs"])) == 1
    bwd_ops = _ops(report.backward_graph)
    assert bwd_ops.count("sin") == 1 and bwd_ops.count("cos") == 1
    compiled = gradc.compile(f)(w)
    compiled.backward()
    got, w.grad = w.grad.numpy().copy(), None
    f(w).backward()
    assert compiler.counters["fallbacks"] == 0
    np.testing.assert_allclose(got, w.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_same_never_over_merges():
    assert same((1, slice(0, None, 2), Ellipsis, None, gradc.float32), (1, slice(0, None, 2), Ellipsis, None,
                                                                       gradc.float32))
    assert same({"dim": (0, 1), "keepdim": True}, {"dim": (0, 1), "keepdim": True})
    assert same(math.nan, math.nan) and same(INDEX_SLOT, INDEX_SLOT)
    assert not same(0.0, -0.0) and not same(1, True) and not same(1, 1.0)
    assert not same(gradc.float32, gradc.float64) and not same(slice(0, 2), slice(0, 3))
    assert not same((1, 2), [1, 2]) and not same(object(), object())
    assert not same({"a": 1}, {"b": 1})


# ------------------------------------------------------------------ constant folding

def test_fold_chains_of_constants_into_one_fill():
    def f(x):
        c = (gradc.ones(4) / 3).exp() * 2 - 0.5
        return x + c

    x = gradc.randn(4)
    before, after = _graphs(f, x)
    assert {"div", "exp", "mul", "sub"} <= set(_ops(before))
    assert _ops(after) == ["add", "fill", "input"]
    fill = next(d for _, d in after.nodes(data=True) if d["op"] == "fill")
    eager = ((gradc.ones(4) / 3).exp() * 2 - 0.5).numpy()
    assert np.float32(fill["attrs"]["value"]) == eager[0] and fill["dtype"] == gradc.float32
    _run(f, x)


@pytest.mark.parametrize("dtype", [gradc.float32, gradc.float64, gradc.int8, gradc.int64, gradc.bool])
def test_fold_matches_eager_per_dtype(dtype):
    def f(x):
        a = gradc.full((2, 3), 7, dtype=dtype)
        b = gradc.full((3,), 1, dtype=dtype)
        folded = (a > b) if dtype is gradc.bool else a * a + b
        return x + folded.to(x.dtype)

    x = gradc.zeros(2, 3, dtype=dtype) if dtype is not gradc.bool else gradc.tensor([[True, False, True]] * 2)
    _, after = _graphs(f, x)
    assert not {"mul", "gt"} & set(_ops(after))
    _run(f, x)


def test_fold_wraps_integers_as_eager_and_keeps_signed_zero():
    def f(x):
        wrapped = gradc.full((3,), 127, dtype=gradc.int8) + gradc.full((3,), 1, dtype=gradc.int8)
        nz = -gradc.zeros(3)
        return x + wrapped, x * nz

    x = gradc.tensor([1, 2, 3], dtype=gradc.int8)
    _, after = _graphs(f, x)
    values = sorted(d["attrs"]["value"] for _, d in after.nodes(data=True) if d["op"] == "fill")
    assert -128 in values and "neg" not in _ops(after)
    nz = next(d for _, d in after.nodes(data=True) if d["op"] == "fill" and d["dtype"] == gradc.float32)
    assert math.copysign(1.0, nz["attrs"]["value"]) == -1.0
    _run(f, x)


def test_fold_skips_non_finite_results():
    def f(x):
        return x + gradc.zeros(3).log(), x + gradc.zeros(3) / gradc.zeros(3), x + gradc.full((3,), 1e30) * 1e30

    x = _specials()[:3]
    _, after = _graphs(f, x)
    assert {"log", "div", "mul"} <= set(_ops(after))
    _run(f, x)


# ------------------------------------------------------------------ algebraic simplification

def test_exact_identities_disappear():
    def f(x):
        y = x * 3
        a = y * 1 * gradc.ones(9) / 1
        b = 1 * (y - 0) + (-0.0)
        c = gradc.neg(gradc.neg(y ** 1))
        d = apply(OPS["cast"], y, dtype=gradc.float32) * gradc.ones((), dtype=gradc.float64)
        return a + b + c + d

    x = _specials()
    before, after = _graphs(f, x)
    assert {"mul", "div", "sub", "neg", "pow", "cast"} <= set(_ops(before))
    assert _ops(after) == ["add", "add", "add", "input", "mul"]
    _run(f, x)


def test_inexact_or_shape_changing_identities_stay():
    def f(x, k):
        y, j = x * 2, k * 2
        return (y + 0.0, 0 + y, y - (-0.0), y * gradc.ones(2, 9), j * 1.0, j + 0.0, 1 / y,
                y * gradc.ones(9, dtype=gradc.float64), y * gradc.ones(1, 9))

    x, k = _specials(), gradc.tensor([-3, 0, 5])
    out = _run(f, x, k)
    assert np.signbit(out[0].numpy()[1]) == np.False_ and np.signbit(out[1].numpy()[1]) == np.False_
    before, after = _graphs(f, x, k)
    assert _ops(after) == _ops(before)


def test_integer_identities():
    def f(x):
        return (((x + 0) * 1 - 0 + gradc.zeros(5, dtype=gradc.int64)) * 3, ~~x * 5,
                (gradc.maximum(x, x) & gradc.minimum(x, x) | x) * 7)

    x = gradc.tensor([-(2 ** 63), -1, 0, 7, 2 ** 63 - 1])
    before, after = _graphs(f, x)
    assert {"add", "sub", "bitwise_not", "maximum", "minimum", "bitwise_and", "bitwise_or"} <= set(_ops(before))
    assert _ops(after) == ["input", "mul", "mul", "mul"]
    _run(f, x)


def test_where_on_a_constant_condition_or_equal_branches():
    def f(x, y):
        t = gradc.ones(5, dtype=gradc.bool)
        return gradc.where(t, x, y) * 2, gradc.where(~t, x, y) * 3, gradc.where(x > 0, y, y) * 4

    x, y = _specials()[:5], _specials()[4:]
    _, after = _graphs(f, x, y)
    assert "where" not in _ops(after)
    _run(f, x, y)


def test_outputs_are_never_replaced_by_inputs_and_keep_their_ids():
    def f(x):
        return x * 1, x.abs() * 1

    x = _specials()
    before, after = _graphs(f, x)
    assert after.graph["outputs"] == before.graph["outputs"]
    first, second = (after.nodes[n] for n in after.graph["outputs"])
    assert first["op"] == "mul" and first["args"][0][0] == "value"
    assert second["op"] == "abs" and _ops(after) == ["abs", "input", "mul"]
    _run(f, x)


def test_views_of_a_replaced_root_read_a_computed_value():
    """A view of `x * 1` addresses contiguous memory: its root cannot move to a strided
    input, but may move to a computed value."""
    def f(x):
        return (x.t() * 1).t() * 2, (x.abs() * 1).t() * 2

    x = gradc.randn(4, 3).t()
    _, after = _graphs(f, x)
    roots = {after.nodes[after.nodes[n]["root"]]["op"] for n in after if after.nodes[n]["kind"] == "view"}
    assert roots == {"input", "mul", "abs"}
    _run(f, x)
