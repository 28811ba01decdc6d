"""Recompile storms: a function called with many shapes (or dtypes, or scalar values)
builds a bounded number of graphs, warns at most once, and every result stays correct.

Sizes turn symbolic (see gradc.compiler.dynamic), so 100 sizes cost two compiles by
default (static, then symbolic at the second size) and one with `dynamic=True`. What
cannot be symbolic (dtypes, ranks, Python scalars) recompiles until
`config.recompile_limit` entries exist; then one warning, and eager from then on.
"""
from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
from helpers import assert_close

import gradc
from gradc import nn
from gradc.compiler import config, counters


def _builds() -> int:
    """Graphs built, from the C compiler or the disk cache (the cache is per test)."""
    return counters["compiles"] + counters["disk_hits"]


def _storm(compiled, fn, calls) -> list:
    """Call `compiled` with each argument tuple, comparing with `fn`; the warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a second warning would show, not be deduplicated
        for args in calls:
            assert_close(compiled(*args), fn(*args), rtol=1e-5, atol=1e-5)
    return [w for w in caught if "gradc" in str(w.message)]


def _hundred_shapes():
    rng = random.Random(0)
    shapes = set()
    while len(shapes) < 100:
        shapes.add((rng.randint(2, 30), rng.randint(2, 30), rng.randint(2, 30)))
    return [(gradc.randn(a, b), gradc.randn(b, c)) for a, b, c in sorted(shapes, key=lambda _: rng.random())]


def fn(x, y):
    return (x @ y).tanh().sum(0) + y.mean()


def test_a_hundred_shapes_compile_twice_by_default():
    compiled = gradc.compile(fn)
    assert _storm(compiled, fn, _hundred_shapes()) == []
    assert _builds() == 2 and counters["dynamic_reuses"] == 98 and counters["fallbacks"] == 0
    (entry,) = compiled.dynamic_entries
    assert entry.dims == {(0, 0), (0, 1), (1, 0), (1, 1)}  # every dim the first two calls changed
    assert not compiled.disabled


def test_a_hundred_shapes_compile_once_with_dynamic_true():
    compiled = gradc.compile(fn, dynamic=True)
    assert _storm(compiled, fn, _hundred_shapes()) == []
    assert _builds() == 1 and counters["dynamic_reuses"] == 99 and counters["fallbacks"] == 0


def test_a_training_step_over_a_hundred_batch_sizes_builds_one_forward_and_backward_pair():
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    loss_fn = lambda x, y: ((model(x) - y) ** 2).mean()
    compiled = gradc.compile(loss_fn, dynamic=True)
    for n in range(2, 102):
        x, y = gradc.randn(n, 3), gradc.randn(n, 1)
        got = compiled(x, y)
        got.backward()
        got_grads = [p.grad for p in model.parameters()]
        model.zero_grad()
        want = loss_fn(x, y)
        want.backward()
        assert_close(got, want, rtol=1e-5, atol=1e-6)
        for g, p in zip(got_grads, model.parameters()):
            assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
        model.zero_grad()
    assert _builds() == 2 and counters["fallbacks"] == 0


@pytest.mark.parametrize("dynamic", [False, True])
def test_dtype_changes_stop_at_the_recompile_limit_with_one_warning(monkeypatch, dynamic):
    """Each dtype at two sizes: static then symbolic by default, symbolic at once with
    dynamic=True; the limit counts entries, so dynamic=True compiles twice the dtypes.
    Once the limit is reached every call runs eagerly, the compiled keys' too."""
    monkeypatch.setattr(config, "recompile_limit", 4)
    g = lambda x: (x * 2 + 1).relu().sum(-1)
    compiled = gradc.compile(g, dynamic=dynamic)
    dtypes = [gradc.float32, gradc.float64, gradc.int64, gradc.int32, gradc.int16, gradc.int8, gradc.uint8,
              gradc.bool]
    calls = [((gradc.randn(n, 3) * 10).to(dt),) for _ in range(3) for dt in dtypes for n in (4, 5)]
    caught = _storm(compiled, g, calls)
    assert len(caught) == 1 and "recompile limit (4) reached" in str(caught[0].message)
    assert compiled.disabled and _builds() == 4
    compiled_dtypes = 4 if dynamic else 2
    assert counters["fallbacks"] == len(calls) - 2 * compiled_dtypes


def test_scalar_arguments_recompile_up_to_the_limit_then_run_eagerly(monkeypatch):
    monkeypatch.setattr(config, "recompile_limit", 4)
    h = lambda x, k: x * k + k
    compiled = gradc.compile(h, dynamic=True)  # values of Python scalars are never symbolic
    x = gradc.randn(3)
    with pytest.warns(UserWarning, match=r"recompile limit \(4\)") as caught:
        for k in range(100):
            np.testing.assert_allclose(compiled(x, k).numpy(), h(x, k).numpy(), rtol=1e-6)
    assert len([w for w in caught if "recompile limit" in str(w.message)]) == 1
    assert _builds() == 4 and counters["fallbacks"] == 96


def test_at_the_limit_a_dynamic_entry_still_serves_new_sizes(monkeypatch):
    monkeypatch.setattr(config, "recompile_limit", 2)
    g = lambda x: x * 2 + 1
    compiled = gradc.compile(g, dynamic=True)
    calls = [(gradc.randn(4),), (gradc.randn(4).double(),)] + [(gradc.randn(n),) for n in range(5, 40)]
    assert _storm(compiled, g, calls) == []
    assert _builds() == 2 and counters["dynamic_reuses"] == 35 and not compiled.disabled


def test_sizes_a_dynamic_entry_cannot_serve_stop_at_the_limit(monkeypatch):
    """`%` bakes the size into the graph: only sizes with the same remainder agree with the
    symbolic trace, every other one needs a static entry, until the limit."""
    monkeypatch.setattr(config, "recompile_limit", 3)
    h = lambda x: x * (x.shape[0] % 3)
    compiled = gradc.compile(h, dynamic=True)
    caught = _storm(compiled, h, [(gradc.ones(n),) for n in range(4, 40)])
    assert len(caught) == 1 and caught[0].filename == __file__
    # 4: symbolic; 5, 6: static (their remainders differ); 7: reused; 8: a fourth entry -> eager
    assert _builds() == 3 and counters["dynamic_reuses"] == 1 and counters["fallbacks"] == 36 - 4
