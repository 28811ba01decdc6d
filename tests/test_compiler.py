"""gradc.compile: compiled results equal eager ones, caches, guards and every fallback."""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gradc
from gradc import compiler


def _same(compiled, eager, tol):
    for c, e in zip(compiled if isinstance(compiled, tuple) else (compiled,),
                    eager if isinstance(eager, tuple) else (eager,)):
        assert c.shape == e.shape and c.dtype == e.dtype
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=tol, atol=tol)


def gelu(x):
    return 0.5 * x * (1 + gradc.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def chain(x, y):
    return (gradc.sigmoid(x) * y - 2).relu() + gradc.maximum(x, y).abs().sqrt()


def softmax(x):
    e = (x - x.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def log_softmax(x):
    s = x - x.amax(dim=-1, keepdim=True)
    return s - s.exp().sum(dim=-1, keepdim=True).log()


def stats(x):
    return x.mean(), x.sum(dim=-1), x.amin(dim=0), (x * x).mean(dim=-1, keepdim=True)


@pytest.mark.parametrize("dtype,tol", [(gradc.float32, 1e-5), (gradc.float64, 1e-12)])
def test_pointwise_and_reductions_match_eager(dtype, tol):
    x = gradc.randn(33, 17, dtype=dtype)
    y = gradc.randn(17, dtype=dtype)  # broadcast over rows
    xt = gradc.randn(17, 33, dtype=dtype).t()  # a transposed view: read in place
    for fn, args in ((gelu, (x,)), (chain, (x, y)), (chain, (xt, y)), (softmax, (xt,)),
                     (log_softmax, (x,)), (stats, (xt,))):
        _same(gradc.compile(fn)(*args), fn(*args), tol)
    assert compiler.counters["fallbacks"] == 0 and compiler.counters["compiles"] == 6


def test_integer_bool_where_and_clamp():
    def f(a, m):
        return gradc.where(m, a * 3 - 1, a + 7), (a > 2) & m, a.clamp(min=0, max=5), a.sum(dim=0)

    a = gradc.randint(-5, 9, (6, 5))
    m = gradc.randn(6, 5) > 0
    cf = gradc.compile(f)
    for c, e in zip(cf(a, m), f(a, m)):
        assert c.dtype == e.dtype and np.array_equal(c.numpy(), e.numpy())


def test_nan_propagation_and_python_semantics():
    def f(x, y):
        return gradc.maximum(x, y), x.relu(), x.amax(), gradc.remainder(x, y), x // y

    x = gradc.tensor([float("nan"), -1.5, 2.0, 7.0, 1.0])
    y = gradc.tensor([1.0, float("nan"), -3.0, 2.0, 0.1])
    for c, e in zip(gradc.compile(f)(x, y), f(x, y)):
        np.testing.assert_array_equal(c.numpy(), e.numpy())


def test_source_is_readable(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADC_DUMP_DIR", str(tmp_path / "dump"))
    cf = gradc.compile(softmax)
    cf(gradc.randn(4, 8))
    (source,) = [e.source for entries in cf.entries.values() for e in entries]
    assert "void gradc_segment_0(void **buf, const int64_t *sz)" in source
    # max, exp, sum and the division: one kernel, one pass over each row
    assert source.count("static void") == 1 and "k0_softmax_row" in source
    assert "test_compiler.py:" in source and "e = (x - x.amax(dim=-1, keepdim=True)).exp()" in source
    assert list((tmp_path / "dump").glob("*.c"))


def test_comments_are_sanitized():
    from gradc.compiler.render import sanitize

    assert sanitize("a */ b /* c\x00\n??/") == "a ? b ? c???/"


def test_memory_hits_and_recompiles_on_new_guards():
    cf = gradc.compile(gelu)
    x = gradc.randn(8, 8)
    cf(x)
    cf(gradc.randn(8, 8))
    assert compiler.counters["compiles"] == 1 and compiler.counters["memory_hits"] == 1
    _same(cf(x.double()), gelu(x.double()), 1e-12)  # new dtype
    _same(cf(x.t()), gelu(x.t()), 1e-6)  # new strides
    z = gradc.randn(3)
    _same(cf(z), gelu(z), 1e-6)  # new shape
    assert len(cf.entries) == 4


def test_recompile_limit_warns_once_then_eager(monkeypatch):
    monkeypatch.setattr(compiler.config, "recompile_limit", 2)
    cf = gradc.compile(lambda x: x * 2 + 1)
    cf(gradc.randn(1))
    cf(gradc.randn(2))
    with pytest.warns(UserWarning, match="recompile limit"):
        out = cf(gradc.randn(3))
    assert out.shape == (3,)
    cf(gradc.randn(4))
    assert compiler.counters["compiles"] == 2 and compiler.counters["fallbacks"] == 2


def test_graph_breaks_fall_back_or_raise():
    def f(x):
        y = x * 2
        return y + y.sum().item()

    x = gradc.randn(5)
    np.testing.assert_allclose(gradc.compile(f)(x).numpy(), f(x).numpy())
    assert compiler.counters["graph_breaks"] == 1 and compiler.counters["compiles"] == 0
    with pytest.raises(gradc.GraphBreakError, match="item"):
        gradc.compile(f, fullgraph=True)(x)
    _same(gradc.compile(lambda t: gradc.softmax(t, -1))(x), gradc.softmax(x, -1), 1e-6)  # no lowering yet


def test_parameters_are_inputs_not_constants():
    lin = gradc.nn.Linear(4, 4)
    scale = gradc.nn.Parameter(gradc.randn(4))

    def f(x):
        return x * scale + 1

    cf = gradc.compile(f)
    x = gradc.randn(3, 4)
    with gradc.no_grad():
        _same(cf(x), f(x), 1e-6)
        scale.mul_(3)
        _same(cf(x), f(x), 1e-6)
    assert compiler.counters["compiles"] == 1
    assert gradc.compile(lin).weight is lin.weight


def test_grad_requiring_inputs_compile_a_training_graph():
    x = gradc.randn(6, requires_grad=True)
    cf = gradc.compile(gelu)
    cf(x).sum().backward()
    g = x.grad.numpy().copy()
    x.grad = None
    gelu(x).sum().backward()
    np.testing.assert_allclose(g, x.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert compiler.counters["fallbacks"] == 0 and compiler.counters["compiles"] == 2  # forward, backward


def test_eager_env_and_mode(monkeypatch):
    x = gradc.randn(4)
    monkeypatch.setenv("GRADC_EAGER", "1")
    gradc.compile(gelu)(x)
    monkeypatch.delenv("GRADC_EAGER")
    gradc.compile(gelu, mode="eager")(x)
    assert compiler.counters["compiles"] == 0
    _same(gradc.compile(gelu, mode="check")(x), gelu(x), 1e-6)


def test_broken_toolchain_warns_and_stays_correct(monkeypatch):
    monkeypatch.setenv("CC", "false")
    cf = gradc.compile(gelu)
    x = gradc.randn(7)
    with pytest.warns(UserWarning, match="toolchain"):
        _same(cf(x), gelu(x), 1e-6)
    _same(cf(x), gelu(x), 1e-6)


def test_decorator_forms():
    @gradc.compile
    def a(x):
        return x + 1

    @gradc.compile(fullgraph=True)
    def b(x):
        return x - 1

    x = gradc.randn(3)
    _same(a(x), x + 1, 0)
    _same(b(x), x - 1, 0)


_CHILD = textwrap.dedent("""
    import gradc
    from gradc import compiler
    f = gradc.compile(lambda x: 0.5 * x * (1 + gradc.tanh(0.7978845608 * (x + 0.044715 * x ** 3))))
    x = gradc.arange(12, dtype=gradc.float32)
    assert abs(float(f(x).sum()) - float(f.fn(x).sum())) < 1e-4, f(x)
    print(compiler.counters["compiles"], compiler.counters["disk_hits"])
""")


def _child(cache):
    env = dict(os.environ, GRADC_CACHE_DIR=str(cache))
    return subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, text=True)


def test_disk_cache_across_processes(tmp_path):
    cache = tmp_path / "shared"
    procs = [_child(cache) for _ in range(3)]  # concurrent cold compiles into one directory
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert all(sum(map(int, p.stdout.read().split())) == 1 for p in procs)  # compiled, or hit a peer's build
    warm = _child(cache)
    assert warm.wait(timeout=60) == 0
    assert warm.stdout.read().split() == ["0", "1"]
    assert oct(cache.stat().st_mode & 0o777) == "0o700"


def test_repeated_layers_share_one_kernel_function():
    def twice(x, y):  # the same loop nest on two inputs of one shape (as two equal layers give)
        return (x * 2).tanh().sum(0), (y * 2).tanh().sum(0)

    x, y = gradc.randn(64, 32), gradc.randn(64, 32)
    cf = gradc.compile(twice)
    for got, want in zip(cf(x, y), twice(x, y)):
        assert np.allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    (source,) = [e.source for entries in cf.entries.values() for e in entries]
    defined = re.findall(r"^static void (\w+)\(", source, re.M)
    called = re.findall(r"^    (k\d+\w*)\(", source, re.M)
    assert len(defined) == 1 and called == defined * 2
    assert re.search(r"\);  /\* k1_\w+ \*/", source)  # the second call names its own kernel


def test_temporaries_with_disjoint_lifetimes_share_memory():
    w = gradc.randn(16, 16) / 4

    def deep(x):
        for _ in range(4):  # each tanh output is a temporary read only by the next matmul
            x = (x @ w).tanh() * 1.5
        return x.sum(0)

    x = gradc.randn(8, 16)
    cf = gradc.compile(deep)
    assert np.allclose(cf(x).numpy(), deep(x).numpy(), rtol=1e-5, atol=1e-5)
    assert np.allclose(cf(x).numpy(), deep(x).numpy(), rtol=1e-5, atol=1e-5)  # blocks reused across calls too
    (entry,) = [e for entries in cf.entries.values() for e in entries]
    temps = [b for b in entry.module.plan.buffers.values() if b.role == "temp" and b.storage >= 0]
    assert len(temps) >= 3 and len({b.storage for b in temps}) < len(temps)
