"""Dynamic shapes: symbolic sizes compiled once serve every size of a dim, each new size
checked by one capture; a change the symbolic graph does not describe recompiles."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc
import gradc.nn.functional as F
from gradc import nn
from gradc.compiler import counters
from gradc.compiler.symbolic import Sym, c_text, evaluate, same


def test_sym_arithmetic_keeps_polynomials_and_values():
    a, b = Sym.symbol(0, 6), Sym.symbol(1, 4)
    x = (a * b * 3 + a - 2) // 1
    assert int(x) == 76 and evaluate(x, (10, 5)) == 158
    assert c_text(a * 64) == "(64*s0)" and c_text(a) == "s0"
    assert (a * b * 8) // (b * 4) == 12 and same((a * b * 8) // (b * 4), a * 2)
    assert not isinstance(a // 4, Sym) and a // 4 == 1  # inexact: a plain int (baked, then checked)
    assert a == 6 and not same(a, 6) and not same(a * b, b * 4)


def test_auto_dynamic_after_a_second_size_and_one_kernel_serves_all():
    w = gradc.randn(8, 5)
    fn = lambda x: (F.softmax(x @ w, dim=-1) * 2).sum(0) + x.mean()
    compiled = gradc.compile(fn)
    for n in (4, 6, 9, 6, 12, 9, 3):
        x = gradc.randn(n, 8)
        assert_close(compiled(x), fn(x), rtol=1e-5, atol=1e-6)
    # 4: static; 6: second size -> symbolic compile; 9, 12, 3: checked and reused; repeats: hits
    assert counters["compiles"] == 2 and counters["dynamic_reuses"] == 3 and counters["memory_hits"] == 2
    (entry,) = compiled.dynamic_entries
    assert entry.dims == {(0, 0)} and "s0" in entry.source


def test_dynamic_true_is_symbolic_from_the_first_call_with_training_state():
    def make():
        gradc.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 10))

    eager_model, compiled_model = make(), make()
    eager = lambda x, y: F.cross_entropy(eager_model(x), y)
    compiled = gradc.compile(lambda x, y: F.cross_entropy(compiled_model(x), y), dynamic=True)
    for n in (16, 7, 9, 16, 3):
        x, y = gradc.randn(n, 1, 8, 8), gradc.randint(0, 10, (n,))
        gradc.manual_seed(n)
        want = eager(x, y)
        want.backward()
        gradc.manual_seed(n)
        got = compiled(x, y)
        got.backward()
        assert_close(got, want, rtol=1e-5, atol=1e-6)
        for p, q in zip(compiled_model.parameters(), eager_model.parameters()):
            assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
        assert_close(compiled_model[1].running_var, eager_model[1].running_var, rtol=1e-5, atol=1e-7)
    assert counters["compiles"] + counters["disk_hits"] == 2  # one forward and one backward, ever
    assert counters["dynamic_reuses"] == 3 and counters["fallbacks"] == 0


def test_a_size_the_symbolic_graph_cannot_describe_recompiles():
    # the slice length is baked from a Python int computed with `%`: only a check capture at
    # each new size can tell whether the compiled code still applies
    fn = lambda x: x[: x.shape[0] % 5 + 1] * 2
    compiled = gradc.compile(fn, dynamic=True)
    for n in (7, 12, 9, 13):
        x = gradc.randn(n, 3)
        assert np.array_equal(compiled(x).numpy(), fn(x).numpy())
    assert counters["dynamic_reuses"] == 1  # 12 % 5 == 7 % 5; 9 and 13 differ and compile statically
    assert counters["compiles"] == 3


def test_symbolic_reshape_arange_and_sequence_length():
    emb = nn.Embedding(20, 6)

    def fn(idx):
        b, t = idx.shape
        x = emb(idx) + gradc.arange(t).to(gradc.float32).reshape(t, 1)
        return x.reshape(b * t, -1).tanh().sum(0)

    compiled = gradc.compile(fn)
    for t in (5, 8, 11, 8):
        idx = gradc.randint(0, 20, (3, t))
        assert_close(compiled(idx), fn(idx), rtol=1e-5, atol=1e-5)
    assert counters["compiles"] == 4 and counters["dynamic_reuses"] == 1  # forward and backward, twice


@pytest.mark.parametrize("size", [0, 1])
def test_sizes_zero_and_one_are_specialized(size):
    compiled = gradc.compile(lambda x: x.exp().sum(0), dynamic=True)
    compiled(gradc.randn(4, 3))
    x = gradc.randn(size, 3)
    assert_close(compiled(x), x.exp().sum(0))
    assert counters["dynamic_reuses"] == 0  # not served by the (s0, s1) entry
    assert compiled.dynamic_entries[-1].dims == {(0, 1)}  # its own entry: only the size-3 dim is symbolic


def test_results_of_a_symbolic_capture_have_plain_sizes():
    compiled = gradc.compile(lambda x: (x * 2).reshape(-1, 2).sum(1), dynamic=True)
    out = compiled(gradc.randn(6, 4))
    assert not any(isinstance(s, Sym) for s in out.shape) and repr(out.shape) == "gradc.Size([12])"
