"""The softmax kernel's row loops (block sums, chunks of rows, the next row's max taken
in the exp loop, the runtime's exp for x <= 0) and a compiled function's fast path
(`guards.key_check`, `runner.Module.runner`) against numpy, eager and the slow path."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import gradc
from gradc import compiler
from gradc.compiler import build
from gradc.compiler.guards import guard_key, key_check

F = gradc.nn.functional
LENGTHS = [1, 3, 7, 17, 255, 256, 257, 1000, 1029]


def _reference(x: np.ndarray, dim: int, log: bool) -> np.ndarray:
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        shifted = x - x.max(axis=dim, keepdims=True)
        total = np.exp(shifted).sum(axis=dim, keepdims=True)
        return shifted - np.log(total) if log else np.exp(shifted) / total


def _check(x: gradc.Tensor, dim: int, log: bool) -> None:
    op = F.log_softmax if log else F.softmax
    got = gradc.compile(lambda t: op(t, dim=dim))(x)
    assert compiler.counters["fallbacks"] == 0
    tol = 2e-6 if x.dtype == gradc.float32 else 1e-12
    want = _reference(x.numpy(), dim, log)
    np.testing.assert_allclose(got.numpy(), want, rtol=tol, atol=tol)
    eager = op(x, dim=dim).numpy()
    np.testing.assert_array_equal(np.isnan(got.numpy()), np.isnan(eager))


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [gradc.float32, gradc.float64])
@pytest.mark.parametrize("length", LENGTHS)
def test_softmax_rows_of_any_length(length, dtype, log):
    rows = max(3, 70_000 // length)  # big enough for the threads and several chunks of rows
    x = gradc.randn(rows, length, dtype=dtype) * 4
    _check(x, -1, log)
    _check(gradc.randn(5, length, dtype=dtype), 1, log)  # one thread, fewer rows than a chunk


@pytest.mark.parametrize("log", [False, True])
def test_softmax_non_contiguous_and_inner_dims(log):
    x = gradc.randn(1029, 67)
    _check(x, 0, log)  # rows strided, along the leading dim
    _check(x.t(), 1, log)  # a transposed view
    _check(gradc.randn(6, 257, 9), 1, log)  # rows in the middle: two outer dims
    _check(gradc.randn(40, 2000)[:, ::2], 1, log)  # a stepped slice
    _check(gradc.randn(1, 1, 3), 0, log)  # rows of length 1 along a size-1 dim


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # eager's inf - inf
@pytest.mark.parametrize("log", [False, True])
def test_softmax_special_rows(log):
    x = np.random.default_rng(1).standard_normal((64, 1029)).astype(np.float32)
    x[0] = -np.inf  # all -inf: NaN, as numpy
    x[1, 500] = np.nan  # one NaN: the whole row NaN
    x[2, 3] = np.inf  # +inf: inf - inf, NaN
    x[3, ::2] = -np.inf  # some -inf: exactly 0 there
    x[4] *= 1e30  # huge values: one 1, the rest 0
    x[5, 1:] = -200.0  # exp underflows to 0 (or a subnormal) after the max
    x[5, 7] = -90.0  # a subnormal exp
    x[6, -1] = np.nan  # NaN in the last vector tail
    _check(gradc.tensor(x), 1, log)
    got = gradc.compile(lambda t: F.softmax(t, dim=1))(gradc.tensor(x)).numpy()
    assert np.isnan(got[:3]).all() and not np.isnan(got[3:6]).any()
    assert (got[3, ::2] == 0).all() and got[5, 0] == 1


def test_softmax_dynamic_sizes():
    f = gradc.compile(lambda t: F.softmax(t, dim=-1), dynamic=True)
    for shape in [(3, 17), (300, 1029), (129, 1)]:
        x = gradc.randn(*shape)
        np.testing.assert_allclose(f(x).numpy(), _reference(x.numpy(), -1, False), rtol=2e-6, atol=2e-6)


def test_nonpositive_exp_is_gradc_expf_bit_for_bit(tmp_path):
    """The runtime's exp for x <= 0 against gradc_expf on a sample of every non-positive
    float (and all of [-105, 0] densely), vectorised as kernels are built."""
    source = """#include "gradc_runtime.h"
void gradc_segment_0(void **buf, const int64_t *sz)
{
    const float *x = (const float *)buf[0];
    float *a = (float *)buf[1], *b = (float *)buf[2];
    #pragma omp simd
    for (int64_t i = 0; i < sz[0]; ++i) {
        a[i] = gradc_expf(x[i]);
        b[i] = gradc_expf_nonpositive(x[i]);
    }
}
"""
    target = tmp_path / "exp.so"
    build.compile_source(source, target)
    library = build.Library(target, ["gradc_segment_0"])
    bits = np.arange(0x80000000, 0x100000000, 997, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), np.linspace(-105, 0, 2_000_001, dtype=np.float32),
                        np.float32([0.0, -0.0, -np.inf, np.nan, -np.nan, -103.972076, -103.97208, -87.33655,
                                    -1e-45])])
    a, b = np.empty_like(x), np.empty_like(x)
    table = library.pointers(3)
    for slot, arr in enumerate((x, a, b)):
        table[slot] = library.address(arr)
    library.run(0, table, library.sizes((len(x),)))
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    np.testing.assert_array_equal(a[~nan].view(np.uint32), b[~nan].view(np.uint32))


def _chain(x, y, scale, flag):
    z = (x * scale + y).exp() - x
    return (z.tanh() if flag else z), z * 2


def test_fast_path_runs_and_matches_eager():
    f = gradc.compile(lambda t: (t + 1.0).exp().tanh() * t)
    x = gradc.randn(1024)
    first = f(x)
    second = f(x)  # a hit through the slow path installs the fast path
    assert f.fast is not None
    third = f(x)
    want = ((x + 1.0).exp().tanh() * x).numpy()
    for out in (first, second, third):
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-6)
    assert third is not second and not np.shares_memory(third.numpy(), second.numpy())
    assert compiler.counters["memory_hits"] == 2 and compiler.counters["compiles"] == 1
    third.numpy()[...] = 0  # results are the caller's to write
    np.testing.assert_allclose(f(x).numpy(), want, rtol=1e-5, atol=1e-6)


def test_fast_path_guards_recompile_exactly_as_before(monkeypatch):
    monkeypatch.setattr(compiler.config, "recompile_limit", 32)
    f = gradc.compile(_chain)
    x, y = gradc.randn(4, 8), gradc.randn(4, 8)
    calls = [(x, y, 2.0, True),
             (x, y, 3.0, True),  # a scalar's value
             (x, y, 3, True),  # a scalar's type
             (x, y, 3.0, 1),
             (x, x, 3.0, True),  # the same tensor twice
             (x, y.t().contiguous().t(), 3.0, True),  # strides
             (x, gradc.randn(4, 8, dtype=gradc.float64), 3.0, True),  # dtype
             (gradc.randn(5, 8), gradc.randn(5, 8), 3.0, True),  # shapes
             (x, gradc.randn(4, 8).requires_grad_(), 3.0, True),  # requires_grad
             (x, y, 2.0, True)]  # back to the first entry
    for args in calls:
        for _ in range(3):  # the first call of a pattern may compile, later ones take the fast path
            got = f(*args)
            want = _chain(*args)
            for g, w in zip(got, want):
                assert g.shape == w.shape and g.dtype == w.dtype
                np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), rtol=1e-5, atol=1e-6)
    keys = {guard_key(args, {})[0] for args in calls}
    assert len(f.entries) == len(keys) == len(calls) - 1
    with gradc.no_grad():  # grad mode is part of the key
        f(*calls[0]), f(*calls[0])
    assert len(f.entries) == len(keys) + 1
    f(x, y=y, scale=2.0, flag=True)  # keyword arguments: the slow path's key
    assert len(f.entries) == len(keys) + 2
    assert compiler.counters["fallbacks"] == 0


def test_fast_path_repeated_output_is_one_tensor():
    f = gradc.compile(lambda t: (lambda u: (u, u, t * 3))(t.exp()))
    x = gradc.randn(16)
    for _ in range(3):
        a, b, c = f(x)
        assert a is b
        np.testing.assert_allclose(a.numpy(), np.exp(x.numpy()), rtol=1e-6)
        np.testing.assert_allclose(c.numpy(), x.numpy() * 3, rtol=1e-6)


def test_fast_path_reads_environment_switches(monkeypatch):
    f = gradc.compile(lambda t: t.exp() + 1)
    x = gradc.randn(32)
    f(x), f(x)
    assert f.fast is not None
    hits = compiler.counters["memory_hits"]
    monkeypatch.setenv("GRADC_EAGER", "1")
    f(x)
    assert compiler.counters["memory_hits"] == hits
    monkeypatch.delenv("GRADC_EAGER")
    monkeypatch.setenv("GRADC_MODE", "check")
    f(x)
    assert compiler.counters["checks"] == 1
    monkeypatch.delenv("GRADC_MODE")
    f(x)
    assert compiler.counters["memory_hits"] == hits + 2


def test_fast_path_not_taken_for_parameters_or_identity():
    lin = gradc.nn.Linear(4, 3)
    model = gradc.compile(lin)
    x = gradc.randn(2, 4)
    with gradc.no_grad():
        model(x), model(x)
        assert model.forward.fast is None  # a parameter's metadata is a guard beyond the key
        np.testing.assert_allclose(model(x).numpy(), lin(x).numpy(), rtol=1e-5, atol=1e-6)
    f = gradc.compile(lambda t: t)
    y = gradc.randn(3)
    f(y), f(y)
    np.testing.assert_array_equal(f(y).numpy(), y.numpy())


def test_fast_path_from_threads():
    f = gradc.compile(lambda t: (t * 2).exp())
    inputs = [gradc.full((4096,), float(i) / 8) for i in range(8)]
    f(inputs[0]), f(inputs[0])
    errors = []

    def work(i: int) -> None:
        for _ in range(200):
            out = f(inputs[i]).numpy()
            if not np.allclose(out, np.exp(float(i) / 4), rtol=1e-6):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_key_check_agrees_with_guard_key():
    a, b = gradc.randn(3, 4), gradc.randn(3, 4)
    variants = [a, b, a.t(), gradc.randn(3, 4, dtype=gradc.float64), gradc.randn(3, 4).requires_grad_(),
                gradc.randn(4), 1, 1.0, True, None, "s", float("nan"), 2]
    cases = [(v,) for v in variants] + [(a, a), (a, b), (b, a), (a, b, a), (a, a, b), (a, 1.0), (1.0, a), ()]
    cases += [(a, [1])]
    for reference in cases:
        try:
            key = guard_key(reference, {})[0]
        except TypeError:
            continue
        check = key_check(key)
        for args in cases:
            try:
                other, tensors = guard_key(args, {})
            except TypeError:
                assert check(args) is None
                continue
            got = check(args)
            if other == key:
                assert got is not None and len(got) == len(tensors) and all(g is t for g, t in zip(got, tensors))
            else:
                assert got is None, (reference, args)
    assert key_check(guard_key((a,), {"k": 1})[0]) is None


def test_fast_path_follows_alternating_keys():
    f = gradc.compile(lambda t: t.exp() * 2)
    a, b = gradc.randn(64), gradc.randn(64, dtype=gradc.float64)
    for _ in range(4):
        for x in (a, b, b):
            out = f(x)
            assert out.dtype == x.dtype
            np.testing.assert_allclose(out.numpy(), np.exp(x.numpy()) * 2, rtol=1e-6)
    assert len(f.entries) == 2 and compiler.counters["compiles"] == 2
    assert all(e.fast for es in f.entries.values() for e in es)


def test_fast_path_with_constants():
    c = np.arange(5, dtype=np.float32)[::-1].copy()
    f = gradc.compile(lambda t: t * gradc.tensor(c) + gradc.arange(5).float())
    x = gradc.randn(5)
    for _ in range(3):
        np.testing.assert_allclose(f(x).numpy(), x.numpy() * c + np.arange(5), rtol=1e-6)
    assert f.fast is not None
