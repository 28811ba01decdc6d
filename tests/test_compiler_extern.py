"""gradc.compile with extern steps: ops without a C lowering (matmul, softmax, gather, ...)
run their eager kernel between C segments instead of breaking the graph."""
import re

import numpy as np
import pytest

import gradc
import gradc.nn.functional as F
from gradc import compiler, nn


def _mlp():
    gradc.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def _step(model, x, y):
    """Loss and parameter gradients of one cross-entropy step (gradients reset after)."""
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    return loss.item(), grads


def test_mlp_inference_matches_eager():
    model = _mlp()
    x = gradc.randn(32, 64)
    with gradc.no_grad():
        out = gradc.compile(model)(x)
        np.testing.assert_array_equal(out.numpy(), model(x).numpy())
    assert compiler.counters["compiles"] == 1 and compiler.counters["fallbacks"] == 0


def test_mlp_training_step_matches_eager_and_torch(torch):
    model = _mlp()
    cm = gradc.compile(model)
    x, y = gradc.randn(32, 64), gradc.randint(0, 10, (32,))
    loss, grads = _step(cm, x, y)
    eager_loss, eager_grads = _step(model, x, y)
    assert loss == pytest.approx(eager_loss, rel=1e-6)
    for a, b in zip(grads, eager_grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    tm = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for tp, p in zip(tm.parameters(), model.parameters()):
            tp.copy_(torch.tensor(p.detach().numpy()))
    tl = torch.nn.functional.cross_entropy(tm(torch.tensor(x.numpy())), torch.tensor(y.numpy()))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-5)
    for a, tp in zip(grads, tm.parameters()):
        np.testing.assert_allclose(a, tp.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert compiler.counters["compiles"] == 2 and compiler.counters["fallbacks"] == 0


def test_sgd_steps_do_not_recompile():
    model = _mlp()
    cm = gradc.compile(model)
    opt = gradc.optim.SGD(model.parameters(), lr=0.1)
    x, y = gradc.randn(32, 64), gradc.randint(0, 10, (32,))
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(cm(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[2] < losses[0]
    assert compiler.counters["compiles"] == 2 and compiler.counters["memory_hits"] == 2
    assert compiler.counters["fallbacks"] == 0


@pytest.mark.parametrize("fn", [gradc.softmax, gradc.log_softmax])
def test_primitive_softmax_compiles_with_gradients(fn):
    x = gradc.randn(6, 9, requires_grad=True)
    t = gradc.randn(6, 9)

    def loss(x):
        return (fn(x * 2, -1) * t).sum()

    cf = gradc.compile(loss)
    for f in (cf, loss):
        out = f(x)
        out.backward()
        if f is cf:
            compiled, grad = out.item(), x.grad.numpy().copy()
            x.grad = None
    assert compiled == pytest.approx(out.item(), rel=1e-6)
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert compiler.counters["compiles"] == 2 and compiler.counters["fallbacks"] == 0


def test_source_shows_c_segments_and_extern_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_DUMP_DIR", str(tmp_path / "dump"))
    a, b, w = gradc.randn(5, 7), gradc.randn(5, 7), gradc.randn(7, 3)

    def fn(a, b, w):
        return ((a * b).relu() @ w).tanh() + 1

    out = gradc.compile(fn)(a, b, w)
    np.testing.assert_allclose(out.numpy(), fn(a, b, w).numpy(), rtol=1e-6)
    (source,) = [p.read_text() for p in (tmp_path / "dump").iterdir()]
    signature = "(void **buf, const int64_t *sz)"
    assert f"void gradc_segment_0{signature}" in source and f"void gradc_segment_1{signature}" in source
    # extern steps are named like kernels and, like their comments, give the node and the user's line
    extern = r"Extern step k1_matmul \(eager kernel, not C\): node \d+: matmul\(.*\[test_compiler_extern\.py:\d+: "
    assert re.search(extern, source)
    assert "static void k0_mul_relu(" in source and "static void k2_tanh_add(" in source


def test_views_and_integer_externs_match_eager():
    x = gradc.randn(4, 6, dtype=gradc.float64)
    w = gradc.randn(4, 3, dtype=gradc.float64)

    def fn(x, w):
        y = x.t() @ w  # a transposed view of an input as an extern operand
        return (y * 2).argmax(dim=0), gradc.cat([y, y.exp()], 1).cumsum(1)

    for c, e in zip(gradc.compile(fn)(x, w), fn(x, w)):
        assert c.dtype == e.dtype
        np.testing.assert_array_equal(c.numpy(), e.numpy())
    assert compiler.counters["fallbacks"] == 0


def test_data_dependent_python_still_falls_back():
    x, w = gradc.randn(4, 5), gradc.randn(5, 2)

    def fn(x, w):
        y = x @ w
        return y * 2 if y.sum().item() > 0 else y * 3

    np.testing.assert_array_equal(gradc.compile(fn)(x, w).numpy(), fn(x, w).numpy())
    assert compiler.counters["graph_breaks"] == 1 and compiler.counters["fallbacks"] == 1
