"""gradc.autograd: tape-based reverse-mode differentiation.

`backward` accumulates into the leaves' `.grad`; `grad` returns gradients instead.
Both run `engine.run_backward` over the nodes recorded by the ops.
"""
from __future__ import annotations

from .function import Function, FunctionCtx, once_differentiable
from .grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .node import AccumulateGrad, Node, RemovableHandle

__all__ = ["backward", "grad", "Function", "FunctionCtx", "once_differentiable", "gradcheck",
           "gradgradcheck", "GradcheckError", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled", "inference_mode", "is_inference_mode_enabled", "Node",
           "AccumulateGrad", "RemovableHandle"]


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _make_grads(outputs: list, grads: list) -> list:
    from ..factories import ones_like
    from ..ops.shapes import fmt
    from ..tensor import Tensor

    if not grads:
        grads = [None] * len(outputs)
    if len(grads) != len(outputs):
        raise RuntimeError(f"got {len(outputs)} tensors and {len(grads)} gradients")
    out = []
    for i, (t, g) in enumerate(zip(outputs, grads)):
        if g is None:
            if t.requires_grad and t.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = ones_like(t)
        elif not isinstance(g, Tensor):
            from ..factories import full

            g = full(t.shape, g, dtype=t.dtype, device=t.device)
        elif g.shape != t.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of gradc.Size({fmt(g.shape)}) "
                               f"and output[{i}] has a shape of gradc.Size({fmt(t.shape)}).")
        elif g.dtype is not t.dtype and t.dtype.is_floating_point:
            g = g.to(t.dtype)  # as PyTorch's engine: gradients take their tensor's dtype
        out.append(g)
    return out


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph: bool = False,
             inputs=None) -> None:
    """Accumulate d(tensors)/d(leaf) into every leaf's `.grad` (only `inputs`' if given)."""
    from .engine import run_backward

    outputs = _as_list(tensors)
    grads = _make_grads(outputs, _as_list(grad_tensors))
    if retain_graph is None:
        retain_graph = create_graph
    inputs = _as_list(inputs) if inputs is not None else None
    if inputs is not None and not inputs:
        raise RuntimeError("`inputs` argument to `backward()` cannot be empty.")
    captured = run_backward(outputs, grads, retain_graph=retain_graph, create_graph=create_graph,
                            inputs=inputs, accumulate=True)
    for t, g in zip(inputs or (), captured or ()):
        if t.grad_fn is not None and g is not None:
            t.grad = (g if create_graph else g.detach()) if t.grad is None else t.grad + g


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph: bool = False,
         allow_unused: bool | None = None, materialize_grads: bool = False) -> tuple:
    """d(outputs)/d(inputs), returned rather than accumulated into `.grad`."""
    from ..factories import zeros_like
    from .engine import run_backward

    if materialize_grads and allow_unused is False:
        raise ValueError("Expected allow_unused to be True or not passed when materialize_grads=True, "
                         "but got: allow_unused=False.")
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    grads = _make_grads(outs, _as_list(grad_outputs))
    if retain_graph is None:
        retain_graph = create_graph
    result = run_backward(outs, grads, retain_graph=retain_graph, create_graph=create_graph,
                          inputs=ins, accumulate=False)
    final = []
    for i, (t, g) in enumerate(zip(ins, result)):
        if g is None:
            if materialize_grads:
                g = zeros_like(t)
            elif not allow_unused:
                raise RuntimeError(f"The differentiated Tensor at index {i} appears to not have been used "
                                   "in the graph. Set allow_unused=True if this is the desired behavior.")
        elif not create_graph:
            g = g.detach()
        final.append(g)
    return tuple(final)
