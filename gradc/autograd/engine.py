"""The backward engine: runs the tape's nodes in dependency order.

No recursion anywhere (a 10,000-op chain must work): the graph is discovered with an
explicit stack, and nodes run from a ready queue once every gradient flowing into them
has arrived. Among ready nodes the most recently created runs first, as in PyTorch.
"""
from __future__ import annotations

import heapq

from .grad_mode import _set, is_grad_enabled
from .node import AccumulateGrad, gradient_edge

# The node whose backward formula runs now (None outside one): the compiler's capture
# attributes the ops a formula records to the user's line that made the node.
running = None


def _discover(roots) -> dict:
    """Number of incoming edges of every node reachable from `roots`."""
    deps: dict = {}
    seen = set()
    stack = list(dict.fromkeys(n for n in roots if n is not None))  # a root given twice is walked once
    seen.update(stack)
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            deps[nxt] = deps.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return deps


def _needed(roots, targets: set) -> set:
    """Nodes from which some target is reachable through their inputs (the only ones worth
    running). A target itself is not included: its incoming gradient is all `grad` needs."""
    needed: set = set()
    done: set = set()
    stack = [(n, False) for n in roots if n is not None]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            done.add(node)
            if any(n in needed or n in targets for n, _ in node.next_functions if n is not None):
                needed.add(node)
            continue
        if node in done:
            continue
        stack.append((node, True))
        stack.extend((n, False) for n, _ in node.next_functions if n is not None and n not in done)
    return needed


def _run_pre_hooks(node, grads: list, tensor_hooks_only: bool = False) -> list:
    for nr, hooks in (node._tensor_hooks or {}).items():
        for hook in list(hooks.values()):
            if grads[nr] is not None:
                new = hook(grads[nr])
                if new is not None:
                    old = grads[nr]
                    if new.shape != old.shape or new.dtype is not old.dtype:
                        name = getattr(hook, "__name__", type(hook).__name__)
                        if new.shape != old.shape:
                            raise RuntimeError(f"hook '{name}' has changed the size of value")
                        raise RuntimeError(f"hook '{name}' has changed the type of value (was "
                                           f"{old.dtype} got {new.dtype})")
                    grads[nr] = new
    if tensor_hooks_only:
        return grads
    for nr, ref in (node._retain_grad or {}).items():
        t = ref()
        if t is not None and grads[nr] is not None:
            # runs in the engine's grad mode: differentiable under create_graph, as PyTorch
            g = grads[nr]
            t.grad = g.clone() if t.grad is None else t.grad + g
    for hook in list((node._pre_hooks or {}).values()):
        new = hook(tuple(grads))
        if new is not None:
            grads = list(new)
    return grads


def run_backward(roots, grad_roots, *, retain_graph: bool, create_graph: bool,
                 inputs=None, accumulate: bool = True) -> list | None:
    """Backpropagate `grad_roots` from `roots` (tensors).

    With `accumulate`, leaves add into `.grad` (all leaves, or only `inputs`). Without,
    the gradients reaching `inputs` are returned instead (`autograd.grad`).
    """
    root_edges = [gradient_edge(t) for t in roots]
    for i, (node, _) in enumerate(root_edges):
        if node is None:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
    root_nodes = [n for n, _ in root_edges]
    deps = _discover(root_nodes)

    capture = {}
    if inputs is not None:
        for i, t in enumerate(inputs):
            node, nr = gradient_edge(t)
            if node is None:
                raise RuntimeError("One of the differentiated Tensors does not require grad")
            capture.setdefault((node, nr), []).append(i)
        targets = {n for n, _ in capture}
        needed = _needed(root_nodes, targets)
        if accumulate:  # backward(inputs=...): the targets run (accumulate, or feed .grad)
            needed |= targets
    else:
        needed = None
    captured = [None] * (len(inputs) if inputs is not None else 0)

    buffers: dict = {}
    for (node, nr), g in zip(root_edges, grad_roots):
        buf = buffers.setdefault(node, [None] * node.num_outputs)
        buf[nr] = g if buf[nr] is None else buf[nr] + g

    ready = []
    for node in dict.fromkeys(root_nodes):
        if deps.get(node, 0) == 0:
            heapq.heappush(ready, (-node.sequence_nr, id(node), node))

    run = _Run(buffers, deps, ready, needed, targets if inputs is not None else (), capture, captured,
               accumulate, retain_graph, create_graph)
    prev_mode = is_grad_enabled()
    _set(create_graph)
    try:
        while ready:
            _run_node(heapq.heappop(ready)[2], run)
    finally:
        _set(prev_mode)
    return captured if inputs is not None else None


class _Run:
    """The state of one backward pass that every node's step reads."""

    __slots__ = ("buffers", "deps", "ready", "needed", "targets", "capture", "captured", "accumulate",
                 "retain_graph", "create_graph")

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)


def _run_node(node, run: _Run) -> None:
    """Run one ready node and hand its gradients on. A function of its own so that no
    gradient stays in a local of the engine's loop: a leaf's accumulation then knows
    whether the engine holds the only reference to its gradient (AccumulateGrad.accumulate)."""
    grads = run.buffers.pop(node)
    capture = run.capture
    if run.needed is not None and node not in run.needed:
        out = (None,) * len(node.next_functions)
        if node in run.targets:  # autograd.grad: capture without running it, as PyTorch
            grads = _run_pre_hooks(node, grads, tensor_hooks_only=True)
            _capture(node, grads, capture, run.captured)
    else:
        if node._tensor_hooks or node._retain_grad or node._pre_hooks:
            grads = _run_pre_hooks(node, grads)
        if capture:
            _capture(node, grads, capture, run.captured)
        out = _execute(node, grads, run.accumulate, capture, run.create_graph)
        if not run.retain_graph:
            node.release_variables()
    buffers, deps = run.buffers, run.deps
    for (nxt, nr), g in zip(node.next_functions, out):
        if nxt is None:
            continue
        if g is not None:
            buf = buffers.setdefault(nxt, [None] * nxt.num_outputs)
            buf[nr] = g if buf[nr] is None else buf[nr] + g
        else:
            buffers.setdefault(nxt, [None] * nxt.num_outputs)
        deps[nxt] -= 1
        if deps[nxt] == 0:
            heapq.heappush(run.ready, (-nxt.sequence_nr, id(nxt), nxt))


def _capture(node, grads: list, capture: dict, captured: list) -> None:
    for nr, g in enumerate(grads):
        for i in capture.get((node, nr), ()):
            captured[i] = g


def _execute(node, grads: list, accumulate: bool, capture: dict, create_graph: bool) -> tuple:
    if isinstance(node, AccumulateGrad):
        if grads[0] is not None and accumulate and (not capture or (node, 0) in capture):
            # without post hooks (which read `grads`), the engine's reference goes along
            node.accumulate(grads[0] if node._hooks else grads.pop(), create_graph)
        if node._hooks:
            for hook in list(node._hooks.values()):  # as PyTorch: no grad_inputs
                hook((), tuple(grads))
        return ()
    if grads[0] is None and all(g is None for g in grads):
        return (None,) * len(node.next_functions)
    global running
    outer, running = running, node
    try:
        grad_inputs = node.apply(*grads)
    finally:
        running = outer
    if node._hooks:
        for hook in list(node._hooks.values()):
            new = hook(tuple(grad_inputs), tuple(grads))
            if new is not None:
                grad_inputs = tuple(new)
    return grad_inputs
