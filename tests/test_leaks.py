"""No leaks: a compiled training step run 10,000 times keeps its memory flat, and each
step's autograd graph (the compiled Function's node and the tensors it saved for the
compiled backward) is freed by reference counting alone once backward ran and the
step's results are dropped, as in eager.

The model has batch norm and dropout, so the per-call paths of mutated inputs (running
statistics) and seeds (dropout masks) run at every step too.
"""
from __future__ import annotations

import gc
import os
import weakref

import gradc
from gradc import nn
from gradc.autograd.node import Node
from gradc.compiler import counters


def _rss() -> int:
    """Resident memory of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _training_step():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
    opt = gradc.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = gradc.compile(lambda x, y: ((model(x) - y) ** 2).mean())
    x, y = gradc.randn(16, 4), gradc.randn(16, 1)

    def step():
        opt.zero_grad()
        loss = loss_fn(x, y)
        loss.backward()
        opt.step()

    return model, loss_fn, x, y, step


def test_ten_thousand_compiled_training_steps_keep_rss_flat():
    model, *_, step = _training_step()
    for _ in range(100):  # warm up: compile, first allocations of every size
        step()
    gc.collect()
    before = _rss()
    for _ in range(10_000):
        step()
    gc.collect()
    growth = _rss() - before
    assert counters["compiles"] == 2 and counters["memory_hits"] == 10_099 and counters["fallbacks"] == 0
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 10,000 steps"
    assert not any(p.grad is None for p in model.parameters())  # the steps really trained


def test_ten_thousand_compiled_inference_calls_keep_rss_flat():
    f = gradc.compile(lambda x: (x @ x.t()).softmax(-1).sum(0))
    x = gradc.randn(8, 8)
    for _ in range(100):
        f(x)
    gc.collect()
    before = _rss()
    for _ in range(10_000):
        f(x)
    gc.collect()
    assert counters["memory_hits"] == 10_099
    assert _rss() - before < 20 * 2**20


def _live_nodes() -> int:
    return sum(isinstance(o, Node) for o in gc.get_objects())


def test_backward_frees_the_saved_tensors_and_dropping_the_loss_frees_the_graph():
    model, loss_fn, x, y, step = _training_step()
    step()
    gc.collect()
    gc.disable()  # reference counting alone must free it all: no cycles left for the collector
    try:
        loss = loss_fn(x, y)
        assert counters["memory_hits"] == 1
        node = weakref.ref(loss.grad_fn)
        held = {id(t) for t in [x, y, *model.parameters(), *model.buffers()]}
        saved = [t for t in loss.grad_fn.saved_tensors if id(t) not in held]
        assert saved, "the compiled forward saves activations for its backward"
        refs = [weakref.ref(t) for t in saved] + [weakref.ref(t._storage) for t in saved]
        del saved
        loss.backward()
        assert all(r() is None for r in refs)  # released by backward (retain_graph=False)
        assert node() is not None  # the loss still holds its grad_fn
        del loss
        assert node() is None
    finally:
        gc.enable()


def test_no_autograd_nodes_accumulate_over_steps():
    _, loss_fn, x, y, step = _training_step()
    step()
    gc.collect()
    before = _live_nodes()
    loss = loss_fn(x, y)
    assert _live_nodes() > before  # the count sees a live graph
    del loss
    for _ in range(200):
        step()
    gc.collect()
    assert _live_nodes() == before
