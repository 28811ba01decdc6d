"""gradc.compile on training graphs: forward plus a backward derived from the op table."""
import re

import numpy as np
import pytest

import gradc
from gradc import compiler


class Affine(gradc.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = gradc.nn.Parameter(gradc.randn(n))
        self.b = gradc.nn.Parameter(gradc.randn(n))

    def forward(self, x, y):
        return ((x * self.w + self.b).tanh() * y).sum()


def _grads(fn, *tensors, params=()):
    """Gradients of fn(*tensors) (a scalar) w.r.t. tensors and params, then reset them."""
    for t in (*tensors, *params):
        t.grad = None
    fn(*tensors).backward()
    out = [t.grad.numpy().copy() for t in (*tensors, *params) if t.requires_grad]
    for t in (*tensors, *params):
        t.grad = None
    return out


def _close(a, b, tol=1e-5):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def test_module_pointwise_broadcast_matches_eager_and_torch(torch):
    m = Affine(5)
    x = gradc.randn(4, 5, requires_grad=True)
    y = gradc.randn(4, 1)
    cm = gradc.compile(m)
    compiled = _grads(cm, x, y, params=(m.w, m.b))
    eager = _grads(m, x, y, params=(m.w, m.b))
    _close(compiled, eager)
    tx, tw, tb = (torch.tensor(t.detach().numpy(), requires_grad=True) for t in (x, m.w, m.b))
    ((tx * tw + tb).tanh() * torch.tensor(y.numpy())).sum().backward()
    _close(compiled, [tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()])
    assert compiler.counters["compiles"] == 2 and compiler.counters["fallbacks"] == 0


def softmax_loss(x, t):
    e = (x - x.amax(dim=-1, keepdim=True)).exp()
    return ((e / e.sum(dim=-1, keepdim=True)) * t).sum()


@pytest.mark.parametrize("fn", [
    lambda x, t: (x * t).mean(),
    lambda x, t: (x.sum(dim=0) * t.sum(dim=0)).sum() + x.amax(dim=1).mean(),
    lambda x, t: (x.relu() * x.sigmoid()).amax() + (x / (t.abs() + 1)).sum(dim=1, keepdim=True).mean(),
    lambda x, t: ((x * 2).t().exp() * t.t()).sum(dim=0).mean() + (x * t).reshape(42).amax(),  # views
    softmax_loss,
])
@pytest.mark.parametrize("dtype,tol", [(gradc.float32, 1e-5), (gradc.float64, 1e-12)])
def test_reductions_and_softmax_gradients(fn, dtype, tol):
    x = gradc.randn(6, 7, dtype=dtype, requires_grad=True)
    t = gradc.randn(6, 7, dtype=dtype, requires_grad=True)
    cf = gradc.compile(fn)
    _close(_grads(cf, x, t), _grads(fn, x, t), tol)
    assert compiler.counters["compiles"] == 2 and compiler.counters["fallbacks"] == 0


def test_softmax_matches_torch(torch):
    x = gradc.randn(3, 8, requires_grad=True)
    t = gradc.randn(3, 8)
    (g,) = _grads(gradc.compile(softmax_loss), x, t)[:1]
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    (torch.softmax(tx, -1) * torch.tensor(t.numpy())).sum().backward()
    _close([g], [tx.grad.numpy()])


def test_gradients_accumulate_and_graph_is_freed():
    x = gradc.randn(10, requires_grad=True)
    cf = gradc.compile(lambda v: (v.tanh() * v).sum())
    out = cf(x)
    out.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    out.backward()
    _close([x.grad.numpy()], [2 * first])
    with pytest.raises(RuntimeError, match="second time"):
        out.backward()


def test_hooks_fire_once_per_backward_not_at_capture():
    x = gradc.randn(5, requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    cf = gradc.compile(lambda v: (v * v).sum())
    cf(x).backward()
    assert len(seen) == 1
    _close([seen[0]], [2 * x.detach().numpy()])
    assert compiler.counters["compiles"] == 2


def test_optimizer_step_does_not_recompile():
    m = Affine(4)
    cm = gradc.compile(m)
    opt = gradc.optim.SGD(m.parameters(), lr=0.1)
    x, y = gradc.randn(3, 4), gradc.randn(3, 4)
    for _ in range(3):
        opt.zero_grad()
        loss = cm(x, y)
        _close([loss.detach().numpy()], [m(x, y).detach().numpy()])
        loss.backward()
        compiled = [m.w.grad.numpy().copy(), m.b.grad.numpy().copy()]
        _close(compiled, _grads(lambda a, b: m(a, b), x, y, params=(m.w, m.b)))
        opt.step()
    assert compiler.counters["compiles"] == 2 and compiler.counters["memory_hits"] == 2


def test_unlowerable_backward_falls_back_with_exact_gradients(monkeypatch):
    # the forward lowers; its backward needs sign, whose C lowering is taken away here
    monkeypatch.setattr(gradc.OPS["sign"], "lowering", None)

    def f(x):
        return (x.abs() * 2).sum()

    x = (gradc.rand(6) - 0.5).requires_grad_()
    cf = gradc.compile(f)
    compiled = _grads(cf, x)
    _close(compiled, _grads(f, x), 0)
    assert compiler.counters["compiles"] == 0 and compiler.counters["fallbacks"] >= 1
    with pytest.raises(gradc.GraphBreakError, match="backward"):
        gradc.compile(f, fullgraph=True)(x)


def test_no_grad_and_double_backward():
    x = gradc.randn(4, requires_grad=True)
    cf = gradc.compile(lambda v: (v * v).sum())
    with gradc.no_grad():
        assert not cf(x).requires_grad
    out = cf(x)
    with pytest.raises(RuntimeError, match="differentiable twice"):
        gradc.autograd.grad(out, x, create_graph=True)


def test_backward_recomputes_cheap_pointwise_values_instead_of_saving_them():
    x = gradc.randn(6, 5)
    w = gradc.randn(5, 4, requires_grad=True)

    def recomputable(a, b):
        return ((a @ b).tanh() ** 2).sum()  # tanh's operand, the matmul result, is stored anyway

    def kept(a, b):
        return (b * 2).exp().log1p().sum()  # exp's operand b * 2 is never stored: exp(b * 2) is saved

    for fn, saved_op in ((recomputable, None), (kept, "exp")):
        report = gradc.explain(fn, x, w)
        saved = [report.graph.nodes[n]["op"] for n in report.graph.graph["outputs"][1:]]
        if saved_op is None:
            assert "tanh" not in saved and "tanh" in [d["op"] for _, d in report.backward_graph.nodes(data=True)]
        else:
            assert saved_op in saved
        got = gradc.autograd.grad(gradc.compile(fn)(x, w), w)[0]
        want = gradc.autograd.grad(fn(x, w), w)[0]
        _close([got.numpy()], [want.numpy()])
    assert gradc.compiler.counters["fallbacks"] == 0


@pytest.mark.parametrize("dynamic", [False, True])
def test_layer_norm_is_one_kernel_over_rows_with_exact_gradients(dynamic):
    gradc.manual_seed(0)
    ln = gradc.nn.LayerNorm(48)
    compiled = gradc.compile(lambda a: ln(a).tanh().sum(), dynamic=dynamic)
    for rows in (64, 96):
        x = gradc.randn(rows, 48, requires_grad=True)
        got = compiled(x)
        (gx, gw) = gradc.autograd.grad(got, (x, ln.weight))
        want = ln(x).tanh().sum()
        (wx, ww) = gradc.autograd.grad(want, (x, ln.weight))
        _close([got.detach().numpy(), gx.numpy(), gw.numpy()], [want.detach().numpy(), wx.numpy(), ww.numpy()],
               tol=1e-4)
    entry = next(e for entries in compiled.entries.values() for e in entries)
    forward = entry.program.forward.source
    kernels = re.findall(r"^static void (\w+)\(", forward, re.M)
    assert kernels[0] == "k0_norm_row"  # mean, variance (and, static, the normalisation and tanh): one pass
    assert dynamic or len(kernels) == 2  # then the sum
