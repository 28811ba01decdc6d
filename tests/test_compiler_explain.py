"""gradc.explain (graphs, kernels, breaks without compiling) and mode="check" localization."""
import numpy as np
import pytest

import gradc
from gradc import OPS, compiler


def scaled_norm(x):
    y = gradc.tanh(x * 2 + 1)
    return y / (y * y).sum(dim=-1, keepdim=True).sqrt()


def with_item(x):
    scale = (x * x).sum().item()
    return x * scale


def test_explain_pointwise_and_reduction():
    x = gradc.randn(4, 8)
    compiled = gradc.compile(scaled_norm)
    report = gradc.explain(compiled, x)
    assert report.breaks == [] and report.backward_graph is None
    ops = {d["op"] for _, d in report.graph.nodes(data=True)}
    assert {"tanh", "sum", "mul"} <= ops
    for _, d in report.graph.nodes(data=True):
        assert {"op", "shape", "dtype", "source"} <= set(d)
    tanh = next(d for _, d in report.graph.nodes(data=True) if d["op"] == "tanh")
    assert tanh["shape"] == (4, 8) and tanh["dtype"] == gradc.float32 and tanh["source"][1] > 0
    assert report.kernels and all(k.backend == "c" for k in report.kernels)
    assert all(k.name in k.source for k in report.kernels)
    assert any("tanhf(" in k.source for k in report.kernels)
    text = str(report)
    assert "forward graph:" in text and all(k.name in text for k in report.kernels)
    assert all(v == 0 for v in compiler.counters.values()) and compiled.entries == {}


def test_explain_training_and_externs():
    w = gradc.randn(8, 3, requires_grad=True)
    report = gradc.explain(lambda x: (x @ w).relu().sum(), gradc.randn(5, 8))
    assert report.backward_graph is not None and report.backward_graph.number_of_nodes() > 0
    assert {"extern", "c"} <= {k.backend for k in report.kernels}
    assert "backward graph:" in str(report) and w.grad is None


def test_explain_reports_breaks_with_location():
    report = gradc.explain(with_item, gradc.randn(3))
    assert report.kernels == [] and report.breaks
    assert "item" in report.breaks[0] and "test_compiler_explain.py:" in report.breaks[0]
    assert "item" in str(report)


def test_check_mode_passes_and_keeps_grads():
    x = gradc.randn(4, 8, requires_grad=True)
    x.grad = gradc.ones(4, 8)
    out = gradc.compile(scaled_norm, mode="check")(x)
    np.testing.assert_allclose(out.detach().numpy(), scaled_norm(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((4, 8), dtype=np.float32))
    out.sum().backward()  # the result stays differentiable after the check's gradient runs
    assert compiler.counters["compiles"] == 2


def test_check_mode_names_the_broken_node(monkeypatch):
    monkeypatch.setattr(OPS["tanh"], "lowering", "sin({0})")
    with pytest.raises(gradc.CompileCheckError, match=r"node \d+ \(tanh\) at .*test_compiler_explain.py:\d+"):
        gradc.compile(scaled_norm, mode="check")(gradc.randn(4, 8))


def test_check_mode_names_the_broken_backward_node(monkeypatch):
    x = gradc.randn(6, requires_grad=True)
    monkeypatch.setattr(OPS["sub"], "lowering", "({0} + {1})")  # sub appears in the backward only
    with pytest.raises(gradc.CompileCheckError, match=r"gradients differ.*node \d+ \(sub\)"):
        gradc.compile(lambda t: gradc.tanh(t).sum(), mode="check")(x)
    assert x.grad is None
