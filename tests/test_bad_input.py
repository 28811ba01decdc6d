"""Bad input to compiled functions fails as eager fails, never as a crash or a wrong result.

- Wrong rank, shape, dtype or device: a new guard key captures the function again, and
  the capture runs it eagerly, so the call raises eager's error. A dynamic capture (the
  second size of a dim) formats its sizes as values while the function runs, so even the
  message is eager's, not "s0".
- Out-of-range indices: no C kernel reads an index from tensor data. Every op that does
  (`index`, which `x[i]`, `index_select` and `embedding` use; `index_put`; `gather`;
  `scatter_add`; `class_index`, the target check of the classification losses) is an
  extern step running eager's range-checked kernel between C segments, so a compiled call
  raises eager's IndexError/RuntimeError, and the compiled backward only ever sees indices
  its forward checked (an index changed in place in between fails the saved-tensor
  version check, as in eager).
- NaN and inf propagate through the compiled lowerings as through eager's kernels.
- More than 2**31 elements: the generated loops count in int64, checked on expanded
  views (no big allocation: eager reduces a stride-0 view without copying it).
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc
import gradc.nn.functional as F
from gradc import nn
from gradc.compiler import counters
from gradc.compiler.capture import EXTERNS
from gradc.device import device
from gradc.tensor import Tensor


def _outcome(fn, *args):
    """("ok", result) or (exception type, message) of one call."""
    try:
        return "ok", fn(*args)
    except Exception as e:  # the point: whatever eager raises, compiled must raise too
        return type(e), str(e)


def _raises_like_eager(fn, compiled, *args) -> tuple:
    expected, got = _outcome(fn, *args), _outcome(compiled, *args)
    assert expected[0] != "ok", "the case must fail in eager"
    assert got == expected
    return got


def test_every_op_reading_indices_from_data_is_an_extern_step():
    assert {"index", "index_put", "gather", "scatter_add", "class_index"} <= EXTERNS


def _put(a, i):
    """index_put in the graph, training included (an in-place write to a tensor that
    requires grad breaks the graph: the written one is detached)."""
    out = a.detach() * 1
    out[i] = 5.0
    return out * a


_linear = nn.Linear(4, 3)
# name, function, argument factories of a good call, of a bad call
INDEX_CASES = [
    ("gather", lambda a, i: a.gather(1, i) * 2, lambda: (gradc.randn(3, 4), gradc.tensor([[0], [1], [3]])),
     lambda: (gradc.randn(3, 4), gradc.tensor([[0], [4], [3]]))),
    ("gather negative", lambda a, i: a.gather(1, i) * 2, lambda: (gradc.randn(3, 4), gradc.tensor([[0], [1], [3]])),
     lambda: (gradc.randn(3, 4), gradc.tensor([[0], [-1], [3]]))),
    ("index_select", lambda a, i: a.index_select(0, i) + 1, lambda: (gradc.randn(3, 4), gradc.tensor([0, 2])),
     lambda: (gradc.randn(3, 4), gradc.tensor([0, 3]))),
    ("embedding", lambda w, i: F.embedding(i, w) * 2, lambda: (gradc.randn(5, 4), gradc.tensor([[0, 4]])),
     lambda: (gradc.randn(5, 4), gradc.tensor([[0, 5]]))),
    ("getitem", lambda a, i: a[i] * 2, lambda: (gradc.randn(5, 4), gradc.tensor([1, -5])),
     lambda: (gradc.randn(5, 4), gradc.tensor([1, -6]))),
    ("index_put", _put, lambda: (gradc.zeros(4), gradc.tensor([0, 3])), lambda: (gradc.zeros(4), gradc.tensor([0, 4]))),
    ("scatter_add", lambda x, i, s: x.scatter_add(0, i, s) * 2,
     lambda: (gradc.zeros(3), gradc.tensor([0, 2]), gradc.ones(2)),
     lambda: (gradc.zeros(3), gradc.tensor([0, 3]), gradc.ones(2))),
    ("cross_entropy target", lambda x, t: F.cross_entropy(x, t), lambda: (gradc.randn(3, 4), gradc.tensor([0, 3, 1])),
     lambda: (gradc.randn(3, 4), gradc.tensor([0, 4, 1]))),
    ("nll_loss negative target", lambda x, t: F.nll_loss(x, t),
     lambda: (gradc.randn(3, 4), gradc.tensor([0, -100, 1])), lambda: (gradc.randn(3, 4), gradc.tensor([0, -1, 1]))),
]


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize(("fn", "good", "bad"), [c[1:] for c in INDEX_CASES], ids=[c[0] for c in INDEX_CASES])
def test_out_of_range_indices_raise_eagers_error_from_the_compiled_code(fn, good, bad, grad):
    """The bad call has the good call's guard key, so it runs the compiled entry (a memory
    hit), not a capture: the error comes from the compiled program's extern step."""
    compiled = gradc.compile(fn)
    args = good()
    args[0].requires_grad_(grad)
    out = compiled(*args)
    assert_close(out, fn(*args), rtol=1e-5, atol=1e-6)
    assert counters["compiles"] == (2 if grad else 1) and counters["fallbacks"] == 0
    bad_args = bad()
    bad_args[0].requires_grad_(grad)
    kind, _ = _raises_like_eager(fn, compiled, *bad_args)
    assert kind in (IndexError, RuntimeError) and counters["memory_hits"] == 1
    if grad:  # the failed call left nothing behind: the entry still trains correctly
        got = compiled(*args)
        got.sum().backward()
        got_grad, args[0].grad = args[0].grad, None
        fn(*args).sum().backward()
        assert_close(got_grad, args[0].grad, rtol=1e-5, atol=1e-6)


def test_compiled_embedding_backward_adds_repeated_indices_and_checks_saved_ones():
    fn = lambda w, i: F.embedding(i, w) * gradc.arange(1.0, 4.0).unsqueeze(1)
    compiled = gradc.compile(fn)
    w = gradc.randn(5, 2, requires_grad=True)
    i = gradc.tensor([4, 0, 4])
    compiled(w, i).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[2, 2], [0, 0], [0, 0], [0, 0], [4, 4]])
    for f in (fn, compiled):  # an index changed between forward and backward is never read
        out = f(w, i)
        i[1] = 7
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()
        i[1] = 0
    assert counters["compiles"] == 2 and counters["memory_hits"] == 1


# name, function, argument factories of the calls compiled first, of the bad call
SHAPE_CASES = [
    ("matmul shapes", lambda a, b: a @ b, [lambda: (gradc.randn(3, 4), gradc.randn(4, 5))],
     lambda: (gradc.randn(3, 4), gradc.randn(3, 5))),
    ("matmul after a dynamic compile", lambda a, b: (a @ b).relu(),
     [lambda: (gradc.randn(3, 4), gradc.randn(4, 5)), lambda: (gradc.randn(3, 6), gradc.randn(6, 5))],
     lambda: (gradc.randn(3, 7), gradc.randn(8, 5))),
    ("broadcast", lambda a, b: (a + b).relu(), [lambda: (gradc.randn(3, 4), gradc.randn(3, 4))],
     lambda: (gradc.randn(3, 4), gradc.randn(5, 4))),
    ("broadcast after a dynamic compile", lambda a, b: (a + b).relu(),
     [lambda: (gradc.randn(3, 4), gradc.randn(3, 4)), lambda: (gradc.randn(6, 4), gradc.randn(6, 4))],
     lambda: (gradc.randn(7, 4), gradc.randn(8, 4))),
    ("rank", lambda a: a.sum(1).exp(), [lambda: (gradc.randn(3, 4),)], lambda: (gradc.randn(3),)),
    ("view size", lambda a: a.view(2, 6) * 2, [lambda: (gradc.randn(3, 4),)], lambda: (gradc.randn(3, 5),)),
    ("view size after a dynamic compile", lambda a: a.view(-1, 6) * 2,
     [lambda: (gradc.randn(3, 4),), lambda: (gradc.randn(6, 4),)], lambda: (gradc.randn(5, 5),)),
    ("index dtype", lambda a, i: a.gather(1, i) * 2, [lambda: (gradc.randn(3, 4), gradc.tensor([[0], [1], [3]]))],
     lambda: (gradc.randn(3, 4), gradc.tensor([[0.0], [1.0], [3.0]]))),
    ("mixed dtypes", lambda a, b: a @ b, [lambda: (gradc.randn(3, 4), gradc.randn(4, 5))],
     lambda: (gradc.randn(3, 4), gradc.ones(4, 5, dtype=gradc.int64))),
    ("module in_features", lambda x: _linear(x).tanh(), [lambda: (gradc.randn(2, 4),)], lambda: (gradc.randn(2, 5),)),
    ("devices", lambda a, b: a + b, [lambda: (gradc.randn(3), gradc.randn(3))],
     lambda: (gradc.randn(3), Tensor._from_array(np, np.ones(3, np.float32), gradc.float32, device("cuda")))),
]


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize(("fn", "warm", "bad"), [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES])
def test_wrong_rank_shape_dtype_or_device_raises_eagers_error_and_message(fn, warm, bad, grad):
    """The devices case puts a CPU and a (stand-in) CUDA tensor in one call: the compiled
    function hands it to eager, whose op raises before any kernel runs."""
    compiled = gradc.compile(fn)
    for make in warm:
        args = make()
        args[0].requires_grad_(grad)
        assert_close(compiled(*args), fn(*args), rtol=1e-5, atol=1e-6)
    compiles = counters["compiles"]
    assert compiles >= 1
    bad_args = bad()
    if bad_args[0].dtype.is_floating_point:
        bad_args[0].requires_grad_(grad)
    _raises_like_eager(fn, compiled, *bad_args)
    assert counters["compiles"] == compiles  # nothing was built for the failing call
    args = warm[0]()
    args[0].requires_grad_(grad)
    hits = counters["memory_hits"]
    assert_close(compiled(*args), fn(*args), rtol=1e-5, atol=1e-6)  # the earlier entries still serve
    assert counters["memory_hits"] == hits + 1


def test_a_dynamic_capture_prints_sizes_as_values_inside_the_function():
    seen = []

    def fn(x):
        seen.append(f"{x.shape[0]} {x.shape}")
        return x * 2

    compiled = gradc.compile(fn)
    compiled(gradc.randn(3, 2))
    compiled(gradc.randn(5, 2))  # second size: the dynamic capture, with x.shape[0] a symbol
    assert seen == ["3 gradc.Size([3, 2])", "5 gradc.Size([5, 2])"]
    assert "s0" in compiled.dynamic_entries[0].source  # the generated code still reads the symbol


_SPECIALS = np.array([[1.0, np.nan, -np.inf, 2.0], [np.inf, -1.0, 0.5, np.nan], [np.inf, -np.inf, 0.0, 1.0],
                      [1.0, 2.0, 3.0, 4.0], [-np.inf] * 4, [np.nan] * 4, [np.inf] * 4, [0.0, -0.0, 3.0, -2.0]],
                     dtype=np.float32)
NAN_CASES = {
    "amax": lambda t: t.amax(1), "amin": lambda t: t.amin(0), "max": lambda t: t.max(), "min": lambda t: t.min(),
    "sum": lambda t: t.sum(1), "mean": lambda t: t.mean(0), "prod": lambda t: t.prod(1),
    "var": lambda t: t.var(1), "logsumexp": lambda t: t.logsumexp(1),
    "softmax": lambda t: F.softmax(t, 1), "softmax dim 0": lambda t: F.softmax(t, 0),
    "log_softmax": lambda t: F.log_softmax(t, 1), "layer_norm": lambda t: F.layer_norm(t, (4,)),
    "relu": lambda t: t.relu() * 1, "leaky_relu": lambda t: F.leaky_relu(t, 0.1), "gelu": F.gelu, "silu": F.silu,
    "elu": F.elu, "softplus": F.softplus, "sigmoid": lambda t: t.sigmoid(), "tanh": lambda t: t.tanh(),
    "clamp": lambda t: t.clamp(-1, 1) + 0, "clamp_min": lambda t: t.clamp(min=0.0) + 0,
    "maximum": lambda t: gradc.maximum(t, t.flip(1)) + 0, "minimum": lambda t: gradc.minimum(t, gradc.zeros_like(t)),
    "exp log sqrt": lambda t: t.exp() + t.log() + t.sqrt(), "abs sign": lambda t: t.abs() * t.sign(),
    "division by zero": lambda t: t / gradc.zeros_like(t), "floor round": lambda t: t.floor() + t.round(),
    "where isnan": lambda t: gradc.where(t.isnan(), 0.0, t), "comparisons": lambda t: (t == t) | (t > 0),
    "argmax": lambda t: t.argmax(1), "cumsum": lambda t: t.cumsum(1) * 1,
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's invalid-value warnings in eager
@pytest.mark.parametrize("fn", NAN_CASES.values(), ids=NAN_CASES.keys())
def test_nan_and_inf_propagate_as_in_eager(fn):
    x = gradc.tensor(_SPECIALS)
    want, got = fn(x).numpy(), gradc.compile(fn)(x).numpy()
    assert counters["compiles"] == 1 and counters["fallbacks"] == 0
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    assert_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", ["relu", "clamp", "amax", "softmax", "layer_norm", "sum"])
def test_nan_and_inf_gradients_match_eager(name):
    fn = NAN_CASES[name]
    x = gradc.tensor(_SPECIALS, requires_grad=True)
    fn(x).sum().backward()
    want, x.grad = x.grad.numpy(), None
    gradc.compile(fn)(x).sum().backward()
    assert counters["compiles"] == 2 and counters["fallbacks"] == 0
    np.testing.assert_array_equal(np.isnan(x.grad.numpy()), np.isnan(want))
    assert_close(x.grad, want, rtol=1e-6, atol=1e-6)


BIG = 2**31 + 10  # elements: past the int32 range


def test_a_reduction_over_more_than_2_to_the_31_elements_counts_them_all():
    x = gradc.ones(1, dtype=gradc.float64).expand(BIG)
    fn = lambda t: t.sum() + t.mean()
    assert fn(x).item() == BIG + 1  # float64 adds these integers exactly
    got = gradc.compile(fn)(x)
    assert counters["compiles"] == 1 and got.item() == BIG + 1


def test_rows_of_a_view_past_2_to_the_31_elements_keep_their_own_values():
    n = BIG // 2
    x = gradc.tensor([[1.0], [3.0]], dtype=gradc.float64).expand(2, n)
    fn = lambda t: t.sum(1) * 2
    got = gradc.compile(fn)(x)
    assert counters["compiles"] == 1
    np.testing.assert_array_equal(got.numpy(), [2.0 * n, 6.0 * n])


def test_a_dynamic_size_past_2_to_the_31_reaches_the_loops_in_int64():
    fn = lambda t: t.sum(1) - 1
    compiled = gradc.compile(fn, dynamic=True)
    base = gradc.tensor([[1.0], [2.0]], dtype=gradc.float64)
    np.testing.assert_array_equal(compiled(base.expand(2, 5)).numpy(), [4.0, 9.0])
    x = base.expand(2, BIG)
    compiled(x)  # checked by an eager capture, whose result it returns
    got = compiled(x)  # the entry compiled at 5 columns runs at 2**31 + 10
    assert counters["compiles"] == 1 and counters["dynamic_reuses"] == 1 and counters["memory_hits"] == 1
    np.testing.assert_array_equal(got.numpy(), [BIG - 1.0, 2.0 * BIG - 1.0])
