"""Compiled functions with state: in-place writes (batch-norm running statistics), dropout's
counter-based RNG, train/eval guards, and tensors made inside the function (arange,
constant data)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc
import gradc.nn.functional as F
from gradc import nn
from gradc.compiler import counters


def _cnn():
    gradc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.25), nn.Linear(8, 3))


def _grads(model):
    return [p.grad.numpy().copy() for p in model.parameters()]


def test_batch_norm_and_dropout_training_match_eager_step_for_step():
    eager_model, compiled_model = _cnn(), _cnn()
    x = gradc.randn(6, 1, 8, 8)
    y = gradc.tensor([0, 1, 2, 0, 1, 2])
    eager = lambda a, b: F.cross_entropy(eager_model(a), b)
    compiled = gradc.compile(lambda a, b: F.cross_entropy(compiled_model(a), b))
    for step in range(3):
        gradc.manual_seed(100 + step)
        want = eager(x, y)
        want.backward()
        gradc.manual_seed(100 + step)
        got = compiled(x, y)
        got.backward()
        assert_close(got, want, rtol=1e-5, atol=1e-6)
        for g, w in zip(_grads(compiled_model), _grads(eager_model)):
            assert_close(g, w, rtol=1e-4, atol=1e-6)
        for name, buf in compiled_model.named_buffers():
            assert_close(buf, dict(eager_model.named_buffers())[name], rtol=1e-5, atol=1e-7)
    assert compiled_model[1].num_batches_tracked.item() == 3  # one update per call, first call included
    assert counters["memory_hits"] == 2 and counters["fallbacks"] == 0


def test_a_compiled_module_follows_its_own_train_and_eval():
    """compile(module) returns a copy: its eval() must reach the forward it compiled (the
    top module's mode is guarded like a submodule's)."""
    dropout = gradc.compile(nn.Dropout(0.5))
    x = gradc.ones(256)
    assert (dropout(x).numpy() == 0).any()
    dropout.eval()
    np.testing.assert_array_equal(dropout(x).numpy(), x.numpy())
    dropout.train()
    assert (dropout(x).numpy() == 0).any()


def test_eval_mode_is_guarded_and_recompiles():
    model = _cnn()
    x = gradc.randn(4, 1, 8, 8)
    compiled = gradc.compile(lambda a: model(a).sum())
    with gradc.no_grad():
        compiled(x)
        model.eval()
        running = model[1].running_mean.numpy().copy()
        got = compiled(x)
        assert_close(got, model(x).sum(), rtol=1e-5, atol=1e-5)  # eval: running stats, no dropout
        assert np.array_equal(model[1].running_mean.numpy(), running)  # eval does not update them
        assert got.item() == compiled(x).item()  # deterministic in eval
        model.train()
        compiled(x)
    assert counters["compiles"] == 2 and counters["memory_hits"] == 2


def test_dropout_masks_match_eager_and_the_generator_advances_alike():
    x = gradc.randn(50, 40, requires_grad=True)
    fn = lambda a: F.dropout(a * 2, p=0.3).tanh()
    compiled = gradc.compile(fn)
    for seed in (1, 2):
        gradc.manual_seed(seed)
        want = fn(x)
        after_eager = gradc.rand(3)
        gradc.manual_seed(seed)
        got = compiled(x)
        after_compiled = gradc.rand(3)
        assert np.array_equal(got.detach().numpy() == 0, want.detach().numpy() == 0)  # the same mask
        assert_close(got, want, rtol=1e-6, atol=1e-6)  # float32 tanh: a few ulps apart
        assert np.array_equal(after_compiled.numpy(), after_eager.numpy())
    dropped = float((got.detach().numpy() == 0).mean())
    assert 0.25 < dropped < 0.35
    (gx,) = gradc.autograd.grad(got.sum(), x)
    (wx,) = gradc.autograd.grad(want.sum(), x)
    assert_close(gx, wx, rtol=1e-5, atol=1e-6)
    assert counters["compiles"] == 2 and counters["fallbacks"] == 0  # forward + backward, once


def test_counter_rng_is_uniform_and_differs_per_call():
    first, second = (gradc.compile(lambda a: F.dropout(a, 0.5))(gradc.ones(10000)) for _ in range(2))
    u = gradc.counter_rng.uniform(np, (100000,), 12345, np.float64)
    assert 0.49 < u.mean() < 0.51 and u.min() >= 0.0 and u.max() < 1.0
    assert not np.array_equal(first.numpy(), second.numpy())


def test_in_place_writes_to_inputs_are_copied_back_once_per_call():
    def fn(x, y):
        x.mul_(2)
        x.add_(y)
        return x * 3

    compiled = gradc.compile(fn)
    a, b = gradc.ones(5), gradc.arange(5.0)
    first = compiled(a, b)
    assert np.array_equal(a.numpy(), 2 + np.arange(5.0))
    second = compiled(a, b)
    assert np.array_equal(a.numpy(), 2 * (2 + np.arange(5.0)) + np.arange(5.0))
    assert np.array_equal(second.numpy(), 3 * a.numpy()) and np.array_equal(first.numpy(), 3 * (2 + np.arange(5.0)))
    assert counters["memory_hits"] == 1 and counters["fallbacks"] == 0


def test_in_place_write_to_a_view_falls_back_with_a_reason():
    def fn(x):
        x[1:].add_(1)
        return x * 2

    compiled = gradc.compile(fn)
    a = gradc.zeros(4)
    assert np.array_equal(compiled(a).numpy(), [0, 2, 2, 2])
    assert np.array_equal(a.numpy(), [0, 1, 1, 1])
    assert counters["fallbacks"] == 1
    with pytest.raises(gradc.GraphBreakError, match="in-place write to a view"):
        gradc.compile(fn, fullgraph=True)(gradc.zeros(4))


def test_check_mode_covers_running_stats_and_dropout():
    model = _cnn()
    x = gradc.randn(4, 1, 8, 8)
    compiled = gradc.compile(lambda a: model(a).sum(), mode="check")
    for _ in range(2):
        compiled(x)
    assert model[1].num_batches_tracked.item() == 2


@pytest.mark.parametrize("args", [(7,), (2, 11, 3), (5.0, -1.5, -0.75), (0.1, 1.0, 0.1)])
def test_arange_inside_matches_eager(args):
    fn = lambda a: a + gradc.arange(*args).to(a.dtype)
    n = len(gradc.arange(*args))
    compiled = gradc.compile(fn, fullgraph=True)
    x = gradc.randn(3, n, dtype=gradc.float64)
    assert np.array_equal(compiled(x).numpy(), fn(x).numpy())
    i = gradc.compile(lambda a: a * gradc.arange(*args), fullgraph=True)
    assert np.array_equal(i(gradc.ones(n, dtype=gradc.float64)).numpy(), gradc.arange(*args).double().numpy())


def test_constant_data_is_a_graph_constant_and_random_factories_break():
    compiled = gradc.compile(lambda a: F.adaptive_avg_pool2d(a, 2).sum(-1) + gradc.tensor([1.0, -2.0]))
    x = gradc.randn(2, 3, 6, 6)
    for _ in range(3):
        assert_close(compiled(x), F.adaptive_avg_pool2d(x, 2).sum(-1) + gradc.tensor([1.0, -2.0]), rtol=1e-6,
                     atol=1e-6)
    assert counters["compiles"] == 1 and counters["memory_hits"] == 2
    noisy = gradc.compile(lambda a: a + gradc.randn(3), fullgraph=True)
    with pytest.raises(gradc.GraphBreakError, match="random factory"):
        noisy(gradc.zeros(3))
    copied = gradc.compile(lambda a: a + gradc.tensor(a), fullgraph=True)
    with pytest.raises(gradc.GraphBreakError):
        copied(gradc.zeros(3))
