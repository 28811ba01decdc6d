"""Wiring a module's full backward hooks into the autograd graph of one call.

An identity Function is put around the module's tensor inputs and, separately, around
its tensor outputs. The output-side node is the first to see gradients of the call: it
records grad_output, which the backward pre-hooks may replace. The input-side node sees
grad_input once everything inside the module has been differentiated; that is where the
backward hooks run, and what they return replaces grad_input. Non-tensor positions read
as None in both tuples, and keyword arguments are not covered, as in PyTorch.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

from ...autograd.function import Function
from ...autograd.grad_mode import is_grad_enabled
from ...tensor import Tensor


class BackwardHookFunction(Function):
    """Identity on tensors; its node is the anchor the hooks are registered on."""

    @staticmethod
    def forward(ctx, *tensors):
        ctx.mark_non_differentiable(*[t for t in tensors if not t.requires_grad])
        return tensors

    @staticmethod
    def backward(ctx, *grads):
        return grads


class BackwardHook:
    """The state of one module call's backward hooks (grad_output waits for grad_input)."""

    def __init__(self, module, hooks: list[Callable], pre_hooks: list[Callable]):
        self.module = module
        self.hooks = hooks
        self.pre_hooks = pre_hooks
        self.grad_outputs: tuple | None = None
        self.n_inputs = self.n_outputs = 0
        self.input_index: list[int] | None = None  # None: no input requires grad
        self.output_index: list[int] | None = None

    def wrap_inputs(self, args: tuple) -> tuple:
        self.n_inputs = len(args)
        args, self.input_index = _wrap(args, self._on_grad_input)
        return args

    def wrap_outputs(self, result):
        if not isinstance(result, (Tensor, tuple)):
            warnings.warn("For backward hooks to be called, module output should be a Tensor or a tuple of "
                          f"Tensors but received {type(result)}", stacklevel=3)
        single = not isinstance(result, tuple)
        outputs = (result,) if single else result
        self.n_outputs = len(outputs)
        outputs, self.output_index = _wrap(outputs, self._on_grad_output)
        return outputs[0] if single else outputs

    def _on_grad_output(self, grad_inputs: tuple, grad_outputs: tuple) -> tuple:
        self.grad_outputs = _spread(self.output_index, grad_outputs, self.n_outputs)
        for hook in self.pre_hooks:
            new = hook(self.module, self.grad_outputs)
            if new is None:
                continue
            if len(new) != len(self.grad_outputs):
                raise RuntimeError("Backward pre hook returned an invalid number of grad_output, got "
                                   f"{len(new)}, but expected {len(self.grad_outputs)}")
            self.grad_outputs = new
        grad_outputs = self.grad_outputs
        if self.input_index is None:  # no input gradient will come: the hooks run now
            self._run_hooks_without_inputs()
        return tuple(grad_outputs[i] for i in self.output_index)

    def _run_hooks_without_inputs(self) -> None:
        warnings.warn("Full backward hook is firing when gradients are computed with respect to module "
                      "outputs since no inputs require gradients.", stacklevel=2)
        nothing = (None,) * self.n_inputs
        for hook in self.hooks:
            res = hook(self.module, nothing, self.grad_outputs)
            if res is not None and not (isinstance(res, tuple) and all(r is None for r in res)):
                raise RuntimeError("Backward hook for Modules where no input requires gradient should always "
                                   "return None or None for all gradients.")
        self.grad_outputs = None

    def _on_grad_input(self, grad_inputs: tuple, grad_outputs: tuple) -> tuple | None:
        if self.grad_outputs is None:  # the gradient did not come through the outputs (double backward)
            return None
        grads = _spread(self.input_index, grad_inputs, self.n_inputs)
        for hook in self.hooks:
            new = hook(self.module, grads, self.grad_outputs)
            if new is None:
                continue
            if len(new) != len(grads):
                raise RuntimeError("Backward hook returned an invalid number of grad_input, got "
                                   f"{len(new)}, but expected {len(grads)}")
            grads = new
        self.grad_outputs = None
        return tuple(grads[i] for i in self.input_index)


def _spread(index: list[int], values, size: int) -> tuple:
    """`values` (one per tensor) at their positions among `size` arguments, None elsewhere."""
    out = [None] * size
    for i, v in zip(index, values):
        out[i] = v
    return tuple(out)


def _wrap(values: tuple, node_hook: Callable) -> tuple[tuple, list[int] | None]:
    """Route the tensors of `values` through one BackwardHookFunction whose node gets
    `node_hook`; returns the new values and the tensors' positions (None: not wired,
    because no tensor requires grad or grad mode is off)."""
    index = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
    tensors = [values[i] for i in index]
    if not (is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return values, None
    wrapped = BackwardHookFunction.apply(*tensors)
    next(t.grad_fn for t in wrapped if t.grad_fn is not None).register_hook(node_hook)
    out = list(values)
    for i, t in zip(index, wrapped):
        out[i] = t
    return (tuple(out) if type(values) is tuple else type(values)(*out)), index
