"""A whole training loss inside gradc.compile: cross-entropy's target check runs in an op
kernel (an extern step) and tensors from constant factories become fill nodes, so nothing
falls back; random factories still do."""
import numpy as np
import pytest

import gradc
import gradc.nn.functional as F
from gradc import compiler, nn

CASES = {
    "plain": {},
    "label_smoothing": {"label_smoothing": 0.1},
    "ignore_index": {"ignore_index": 2},
    "weight": {"weight": [0.5, 1.0, 2.0, 1.5, 0.25]},
    "all": {"weight": [0.5, 1.0, 2.0, 1.5, 0.25], "ignore_index": 2, "label_smoothing": 0.2},
}


def _model():
    gradc.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5))


def _step(loss_fn, model, x, y):
    """The loss and the parameters' gradients of one step (gradients reset after)."""
    loss = loss_fn(x, y)
    loss.backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    return loss.item(), grads


@pytest.mark.parametrize("case", list(CASES))
def test_cross_entropy_compiles_and_matches_eager_and_torch(case, torch):
    model = _model()
    kwargs = dict(CASES[case])
    if "weight" in kwargs:
        kwargs["weight"] = gradc.tensor(kwargs["weight"])

    def loss_fn(x, y):
        return F.cross_entropy(model(x), y, **kwargs)

    compiled = gradc.compile(loss_fn, fullgraph=True)
    x, y = gradc.randn(6, 8), gradc.tensor([0, 1, 2, 3, 4, 2])
    eager_loss, eager_grads = _step(loss_fn, model, x, y)
    for _ in range(2):  # the capture run, then the cached entry
        loss, grads = _step(compiled, model, x, y)
        assert loss == pytest.approx(eager_loss, rel=1e-6)
        for a, b in zip(grads, eager_grads):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert compiler.counters["fallbacks"] == 0 and compiler.counters["graph_breaks"] == 0
    assert compiler.counters["memory_hits"] == 1

    tm = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    with torch.no_grad():
        for tp, p in zip(tm.parameters(), model.parameters()):
            tp.copy_(torch.tensor(p.detach().numpy()))
    tkwargs = {k: torch.tensor(v.numpy()) if isinstance(v, gradc.Tensor) else v for k, v in kwargs.items()}
    tl = torch.nn.functional.cross_entropy(tm(torch.tensor(x.numpy())), torch.tensor(y.numpy()), **tkwargs)
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-5)
    for a, tp in zip(grads, tm.parameters()):
        np.testing.assert_allclose(a, tp.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_out_of_range_target_raises_as_eager():
    model = _model()

    def loss_fn(x, y):
        return F.cross_entropy(model(x), y, ignore_index=-1)

    compiled = gradc.compile(loss_fn)
    x = gradc.randn(4, 8)
    compiled(x, gradc.tensor([0, 1, -1, 4]))  # compiles with valid targets
    for bad in ([0, 7, -1, 4], [0, 1, -3, 9]):
        with pytest.raises(IndexError) as eager:
            loss_fn(x, gradc.tensor(bad))
        with pytest.raises(IndexError) as from_compiled:
            compiled(x, gradc.tensor(bad))
        assert str(from_compiled.value) == str(eager.value)
    assert compiler.counters["compiles"] == 2 and compiler.counters["fallbacks"] == 0


def test_constant_factories_inside_compile():
    def f(x):
        return x * 2 + x.new_zeros(x.shape) + gradc.zeros(3, 4) + gradc.full((4,), 0.5) + x.new_ones(4)

    compiled = gradc.compile(f, fullgraph=True)
    x = gradc.randn(3, 4)
    for _ in range(2):
        np.testing.assert_array_equal(compiled(x).numpy(), f(x).numpy())
    assert compiler.counters["compiles"] == 1 and compiler.counters["fallbacks"] == 0


def test_constant_factory_as_output_and_in_backward():
    def f(x):
        return (x.gather(1, gradc.zeros(3, 1, dtype=gradc.int64)) * 3).sum(), gradc.ones(2, dtype=gradc.int64)

    compiled = gradc.compile(f, fullgraph=True)
    x = gradc.randn(3, 4, requires_grad=True)
    for fn in (f, compiled, compiled):
        loss, ones = fn(x)
        loss.backward()
        np.testing.assert_array_equal(ones.numpy(), [1, 1])
    grad = x.grad.numpy() / 3
    np.testing.assert_allclose(grad[:, 0], 3.0)
    np.testing.assert_array_equal(grad[:, 1:], 0.0)
    assert compiler.counters["fallbacks"] == 0


def test_random_factory_still_falls_back():
    def f(x):
        return x + gradc.randn(4)

    compiled = gradc.compile(f)
    x = gradc.zeros(4)
    gradc.manual_seed(1)
    first, second = compiled(x), compiled(x)
    gradc.manual_seed(1)
    np.testing.assert_array_equal(first.numpy(), f(x).numpy())
    np.testing.assert_array_equal(second.numpy(), f(x).numpy())
    assert compiler.counters["compiles"] == 0 and compiler.counters["fallbacks"] == 2
    with pytest.raises(gradc.GraphBreakError, match="random"):
        gradc.compile(f, fullgraph=True)(x)
