"""Op-level tests, parametrized over the sample table in op_db.py.

For every sample: forward against numpy and PyTorch (values, shape, dtype, including
PyTorch's type promotion on integer and bool inputs), gradients by finite differences
(gradcheck, float64) and against PyTorch's `.backward()` (float32), double backward
for the elementwise, reduction and matmul ops. Then error behaviour, and a check that
no op of the table goes untested.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from helpers import assert_close, to_numpy
from op_db import CONTRACT, COVERED_ELSEWHERE, OP_DB

import gradc
from gradc.autograd import gradcheck, gradgradcheck

# PyTorch emits no floating-point warnings (log(0), 0 * inf, ...): neither may gradc's kernels
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


# ---------------------------------------------------------------- helpers
def make_inputs(entry, dtype: str):
    rng = np.random.default_rng(zlib.crc32(entry.name.encode()))
    return entry.make(rng, np.dtype(dtype))


def to_gradc(args, requires_grad: bool = False) -> list:
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            t = gradc.tensor(a)
            assert t.dtype.np == a.dtype
            if requires_grad and t.dtype.is_floating_point:
                t.requires_grad_(True)
            a = t
        out.append(a)
    return out


def to_torch(torch, args, requires_grad: bool = False) -> list:
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            t = torch.from_numpy(a.copy())
            if requires_grad and t.is_floating_point():
                t.requires_grad_(True)
            a = t
        out.append(a)
    return out


def flat(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def cases(pred, with_dtype: bool = True, skip_dtypes=()):
    params = []
    for e in OP_DB:
        if not pred(e):
            continue
        if with_dtype:
            params += [pytest.param(e, dt, id=f"{e.name}-{dt}") for dt in e.dtypes if dt not in skip_dtypes]
        else:
            params.append(pytest.param(e, id=e.name))
    return params


def grad_inputs(tensors) -> list:
    return [t for t in tensors if isinstance(t, gradc.Tensor) and t.requires_grad]


# ---------------------------------------------------------------- forward
@pytest.mark.parametrize("entry,dtype", cases(lambda e: e.torch))
def test_forward_vs_torch(entry, dtype, torch):
    args = make_inputs(entry, dtype)
    expected = flat(entry.torch_call(torch, *to_torch(torch, args)))
    actual = flat(entry.gradc_call(gradc, *to_gradc(args)))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert isinstance(a, gradc.Tensor), type(a)
        assert tuple(a.shape) == tuple(e.shape)
        assert a.dtype.name == str(e.dtype).removeprefix("torch."), f"{a.dtype} != {e.dtype}"
        assert_close(a, e, rtol=entry.rtol, atol=entry.atol)


# values only (dtypes are PyTorch's business): one integer width is enough
@pytest.mark.parametrize("entry,dtype", cases(lambda e: e.np_fn is not None and "int64" not in e.dtypes)
                         + cases(lambda e: e.np_fn is not None and "int64" in e.dtypes, skip_dtypes=("int32",)))
def test_forward_vs_numpy(entry, dtype):
    args = make_inputs(entry, dtype)
    actual = flat(entry.gradc_call(gradc, *to_gradc(args)))
    # the reference computes in float64 from the very same values
    np_args = [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args]
    expected = flat(entry.np_fn(*np_args))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        e = np.asarray(e)
        tol = max(entry.rtol, 2e-6) if a.dtype.name == "float32" else entry.rtol
        assert_close(a, e, rtol=tol, atol=entry.atol, check_dtype=False)


def test_forward_tensor_methods_match_functions():
    x = gradc.tensor([[0.5, -1.0, 2.0], [3.0, -0.25, 1.5]])
    for name in ("exp", "tanh", "sigmoid", "relu", "abs", "neg", "sum", "mean", "var", "std", "prod",
                 "amax", "argmax", "flip"):
        fn = getattr(gradc, name)
        if name == "flip":
            assert_close(x.flip(0), fn(x, [0]))
        else:
            assert_close(getattr(x, name)(), fn(x))
    assert_close(x.softmax(1), gradc.softmax(x, 1))
    assert_close(x.clamp(min=0.0), gradc.clamp(x, min=0.0))


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("entry", cases(lambda e: e.differentiable and e.gradcheck, with_dtype=False))
def test_gradcheck(entry):
    args = to_gradc(make_inputs(entry, "float64"), requires_grad=True)
    assert grad_inputs(args), "a differentiable sample needs a floating input"
    outs = [o for o in flat(entry.gradc_call(gradc, *args)) if o.dtype.is_floating_point]
    assert outs and all(o.requires_grad for o in outs), "the output is not attached to the graph"
    assert gradcheck(lambda *a: entry.gradc_call(gradc, *a), args)


@pytest.mark.parametrize("entry", cases(lambda e: e.differentiable and e.torch and e.torch_grad, with_dtype=False))
def test_grad_vs_torch(entry, torch):
    args = make_inputs(entry, "float32")
    g_args = to_gradc(args, requires_grad=True)
    t_args = to_torch(torch, args, requires_grad=True)
    g_out = [o for o in flat(entry.gradc_call(gradc, *g_args)) if o.dtype.is_floating_point]
    t_out = [o for o in flat(entry.torch_call(torch, *t_args)) if o.is_floating_point()]
    assert len(g_out) == len(t_out) and g_out
    rng = np.random.default_rng(1)
    cot = [rng.standard_normal(tuple(o.shape)).astype(np.float32) for o in t_out]
    gradc.autograd.backward(g_out, [gradc.tensor(c) for c in cot])
    torch.autograd.backward(t_out, [torch.from_numpy(c) for c in cot])
    compared = 0
    for g, t in zip(g_args, t_args):
        if not isinstance(g, gradc.Tensor) or not g.requires_grad:
            continue
        if t.grad is None:
            assert g.grad is None or not np.any(to_numpy(g.grad)), "gradc has a gradient where torch has none"
            continue
        assert g.grad is not None, "torch has a gradient where gradc has none"
        assert_close(g.grad, t.grad, rtol=1e-4, atol=1e-5)
        compared += 1
    assert compared, "no gradient was compared"


_GRADGRAD_REQUIRED = ("exp", "tanh", "sigmoid", "mul", "div", "pow", "sum", "mean", "softmax",
                      "log_softmax", "matmul")


@pytest.mark.parametrize("entry", cases(lambda e: e.gradgrad, with_dtype=False))
def test_gradgradcheck(entry):
    args = to_gradc(make_inputs(entry, "float64"), requires_grad=True)
    assert grad_inputs(args)
    assert gradgradcheck(lambda *a: entry.gradc_call(gradc, *a), args)


def test_gradgradcheck_covers_required_ops():
    ops = {e.op for e in OP_DB if e.gradgrad}
    assert set(_GRADGRAD_REQUIRED) <= ops, set(_GRADGRAD_REQUIRED) - ops


def test_gradcheck_detects_a_wrong_gradient():
    """The checker used above can fail: a Function with a deliberately wrong derivative."""

    class BadSquare(gradc.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x  # should be 2 * g * x

    x = gradc.tensor([0.5, -1.5], dtype=gradc.float64, requires_grad=True)
    assert not gradcheck(BadSquare.apply, (x,), raise_exception=False)


@pytest.mark.parametrize("op,expected", [
    # PyTorch's conventions at the non-differentiable points
    ("relu", [0.0, 0.0, 1.0]), ("abs", [-1.0, 0.0, 1.0]),
    ("clamp", [0.0, 1.0, 0.0]),  # clamp(-1, 1): at x = -1 and 1 the gradient passes
])
def test_gradient_at_kinks(op, expected):
    x = gradc.tensor([-1.0, 0.0, 1.0], requires_grad=True)
    if op == "clamp":
        x = gradc.tensor([-2.0, 1.0, 3.0], requires_grad=True)
        gradc.clamp(x, -1, 1).sum().backward()
    else:
        getattr(gradc, op)(x).sum().backward()
    assert_close(x.grad, np.array(expected, np.float32))


# ---------------------------------------------------------------- errors
_BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "remainder": lambda a, b: a % b,
    "maximum": gradc.maximum, "minimum": gradc.minimum, "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
}


@pytest.mark.parametrize("op", sorted(_BINARY))
def test_broadcast_error_names_op_and_shapes(op):
    a, b = gradc.ones(2, 3), gradc.ones(4)
    with pytest.raises(RuntimeError) as info:
        _BINARY[op](a, b)
    msg = str(info.value)
    assert op in msg and "[2, 3]" in msg and "[4]" in msg, msg


def test_where_broadcast_error():
    with pytest.raises(RuntimeError) as info:
        gradc.where(gradc.ones(2, 3) > 0, gradc.ones(2, 3), gradc.ones(5))
    msg = str(info.value)
    assert "where" in msg and "[2, 3]" in msg and "[5]" in msg, msg


@pytest.mark.parametrize("sa,sb", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (4,)), ((3,), (4, 2)),
                                   ((2, 3, 4), (3, 4, 5)), ((2, 3, 4), (2, 5, 6))])
def test_matmul_error_names_both_shapes(sa, sb):
    with pytest.raises(RuntimeError) as info:
        gradc.matmul(gradc.ones(*sa), gradc.ones(*sb))
    msg = str(info.value)
    fmt = lambda s: "[" + ", ".join(map(str, s)) + "]"  # noqa: E731
    assert fmt(sa) in msg and fmt(sb) in msg, msg


@pytest.mark.parametrize("fn", [
    lambda: gradc.mm(gradc.ones(2, 3), gradc.ones(2, 3)),
    lambda: gradc.mm(gradc.ones(2, 3, 1), gradc.ones(1, 3)),
    lambda: gradc.bmm(gradc.ones(2, 3, 4), gradc.ones(3, 4, 5)),
    lambda: gradc.bmm(gradc.ones(3, 4), gradc.ones(4, 5)),
    lambda: gradc.matmul(gradc.ones(()), gradc.ones(3)),
    lambda: gradc.einsum("ij,jk->ik", gradc.ones(2, 3), gradc.ones(4, 5)),
    lambda: gradc.einsum("ij,jk->ik", gradc.ones(2, 3)),
    lambda: gradc.cat([gradc.ones(2, 3), gradc.ones(2, 4)], 0),
    lambda: gradc.stack([gradc.ones(2, 3), gradc.ones(3, 2)]),
    lambda: gradc.clamp(gradc.ones(3)),
    lambda: gradc.topk(gradc.ones(3), 4),
    lambda: gradc.gelu(gradc.ones(3), approximate="fast"),
    lambda: gradc.masked_fill(gradc.ones(3), gradc.ones(3), 0.0),
    lambda: gradc.where(gradc.ones(3), gradc.ones(3), gradc.ones(3)),
    lambda: gradc.tril(gradc.ones(3)),
    lambda: gradc.ones(3) & gradc.ones(3),
    lambda: gradc.mean(gradc.ones(3, dtype=gradc.int64)),
    lambda: gradc.repeat(gradc.ones(2, 3), (2,)),
    lambda: gradc.flip(gradc.ones(2, 3), [0, -2]),
    lambda: gradc.sum(gradc.ones(2, 3), (1, -1)),
    lambda: gradc.einsum("ij->ii", gradc.ones(2, 2)),
    lambda: gradc.einsum("ij->k", gradc.ones(2, 2)),
    lambda: gradc.tensor([2, 3]) ** -1,
    lambda: gradc.max(gradc.ones(0, 3)),
    lambda: gradc.gather(gradc.ones(3), 0, gradc.tensor([0], dtype=gradc.int16)),
    lambda: gradc.tensor([True, False]) - gradc.tensor([True, True]),
    lambda: -gradc.tensor([True, False]),
], ids=["mm_shapes", "mm_3d", "bmm_batch", "bmm_2d", "matmul_0d", "einsum_shapes", "einsum_operands",
        "cat_sizes", "stack_sizes", "clamp_no_bounds", "topk_k", "gelu_mode", "masked_fill_float_mask",
        "where_float_cond", "tril_1d", "and_float", "mean_int", "repeat_fewer_dims", "flip_repeated_dim",
        "sum_repeated_dim", "einsum_repeated_output", "einsum_unknown_output", "int_negative_power",
        "max_of_empty", "gather_int16_index", "bool_sub", "bool_neg"])
def test_runtime_errors(fn):
    with pytest.raises(RuntimeError):
        fn()


@pytest.mark.parametrize("op", ["amax", "amin", "argmax", "argmin"])
def test_reducing_an_empty_dim_raises_index_error(op):
    with pytest.raises(IndexError):
        getattr(gradc, op)(gradc.ones(0, 3), 0)
    assert tuple(getattr(gradc, op)(gradc.ones(0, 3), 1).shape) == (0,)


_BAD_DIM = {
    "sum": lambda x: gradc.sum(x, 2), "sum_tuple": lambda x: gradc.sum(x, (0, -3)),
    "mean": lambda x: gradc.mean(x, 2), "var": lambda x: gradc.var(x, 2), "std": lambda x: gradc.std(x, -3),
    "prod": lambda x: gradc.prod(x, 2), "amax": lambda x: gradc.amax(x, 2), "amin": lambda x: gradc.amin(x, -3),
    "max": lambda x: gradc.max(x, 2), "min": lambda x: gradc.min(x, -3), "argmax": lambda x: gradc.argmax(x, 2),
    "argmin": lambda x: gradc.argmin(x, 2), "logsumexp": lambda x: gradc.logsumexp(x, 2),
    "softmax": lambda x: gradc.softmax(x, 2), "log_softmax": lambda x: gradc.log_softmax(x, -3),
    "cumsum": lambda x: gradc.cumsum(x, 2), "cat": lambda x: gradc.cat([x, x], 2),
    "stack": lambda x: gradc.stack([x, x], 4),
    "gather": lambda x: gradc.gather(x, 2, gradc.zeros(2, 3, dtype=gradc.int64)),
    "scatter_add": lambda x: gradc.scatter_add(x, 2, gradc.zeros(2, 3, dtype=gradc.int64), x),
    "index_select": lambda x: gradc.index_select(x, 2, gradc.tensor([0])), "flip": lambda x: gradc.flip(x, [2]),
    "sort": lambda x: gradc.sort(x, 2), "topk": lambda x: gradc.topk(x, 1, dim=2),
    "argsort": lambda x: gradc.argsort(x, -3),
}


@pytest.mark.parametrize("op", sorted(_BAD_DIM))
def test_bad_dim_raises_index_error(op):
    with pytest.raises(IndexError, match="(?i)dimension out of range"):
        _BAD_DIM[op](gradc.ones(2, 3))


@pytest.mark.parametrize("op", ["gather", "scatter_add", "index_select", "getitem"])
def test_float_index_raises(op, torch):
    x, fidx = gradc.ones(2, 3), gradc.zeros(2, 3)
    fns = {
        "gather": (lambda m, x, i: m.gather(x, 1, i)),
        "scatter_add": (lambda m, x, i: m.scatter_add(x, 1, i, x)),
        "index_select": (lambda m, x, i: m.index_select(x, 1, i[0])),
        "getitem": (lambda m, x, i: x[i[0]]),
    }
    # the same exception type as PyTorch
    with pytest.raises(Exception) as t_info:
        fns[op](torch, torch.ones(2, 3), torch.zeros(2, 3))
    with pytest.raises(type(t_info.value)):
        fns[op](gradc, x, fidx)


def test_gather_out_of_range_index_raises():
    with pytest.raises(RuntimeError, match="out of bounds"):
        gradc.gather(gradc.ones(2, 3), 1, gradc.tensor([[0, 3]]))


# ---------------------------------------------------------------- the table itself
def test_op_db_names_are_unique():
    names = [e.name for e in OP_DB]
    assert len(names) == len(set(names))


def test_contract_ops_are_in_op_db():
    named = {e.op for e in OP_DB}
    missing = [op for op in CONTRACT if op not in named]
    assert not missing, missing
    for op in named:
        assert hasattr(gradc, op), f"op_db names {op!r}, which is not a public gradc function"


def test_every_op_of_the_table_is_tested():
    """New primitives can't go untested: each is in op_db or listed, with a reason, as covered elsewhere."""
    named = {e.op for e in OP_DB}
    differentiable_named = {e.op for e in OP_DB if e.differentiable and e.gradcheck}
    missing = [n for n in gradc.OPS if n not in named and n not in COVERED_ELSEWHERE]
    assert not missing, f"ops missing from op_db: {missing}"
    no_grad = [n for n, op in gradc.OPS.items()
               if op.differentiable and n not in COVERED_ELSEWHERE and n not in differentiable_named]
    assert not no_grad, f"differentiable ops whose gradient op_db never checks: {no_grad}"
    stale = [n for n in COVERED_ELSEWHERE if n not in gradc.OPS or n in named]
    assert not stale, f"COVERED_ELSEWHERE lists ops that are gone or already in op_db: {stale}"


def test_every_differentiable_primitive_is_reached_by_its_entries():
    """The samples named after a primitive op really record that op on the tape (at least
    one of them: e.g. clamp with tensor bounds legitimately goes through maximum/minimum)."""
    reached, named = set(), set()
    for e in OP_DB:
        op = gradc.OPS.get(e.op)
        if op is None or not op.differentiable or not e.differentiable:
            continue
        named.add(e.op)
        args = to_gradc(make_inputs(e, "float64"), requires_grad=True)
        seen, stack = set(), [o.grad_fn for o in flat(e.gradc_call(gradc, *args))
                              if isinstance(o, gradc.Tensor) and o.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if getattr(node, "op", None) is not None:
                reached.add(node.op.name)
            stack.extend(n for n, _ in node.next_functions)
    assert named <= reached, f"no sample records these ops on the tape: {sorted(named - reached)}"
