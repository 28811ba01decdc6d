"""Compiled training graphs at run time: one `autograd.Function` per compiled entry.

Its `forward` runs the compiled forward and saves what the compiled backward reads
(`save_for_backward`, so in-place changes to saved tensors are caught and
`retain_graph=False` frees them exactly as in eager); its `backward` runs the compiled
backward. The Function's inputs are the call's tensors and the captured parameters, so the
engine accumulates into their `.grad` and fires their hooks as it does in eager.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..autograd.function import Function
from ..autograd.grad_mode import is_grad_enabled
from .runner import Module

DOUBLE_BACKWARD = ("gradc.compile: a compiled training graph is not differentiable twice "
                   "(create_graph=True); run the function eagerly (mode='eager') for higher-order grads")


@dataclass
class Program:
    """The two modules and the value ids that connect them (ids of the capture)."""

    forward: Module  # outputs: the function's outputs, then saved computed values
    backward: Module  # inputs: `placeholders` then `saved`
    inputs: list  # value ids of the Function's inputs: the call's tensors, then externals
    n_outputs: int
    differentiable: list  # per function output
    placeholders: list
    saved: list
    targets: list  # value ids that get a gradient ...
    grads: list  # ... from this backward output (value id), or None


def make_function(p: Program, name: str) -> type[Function]:
    """A fresh Function subclass running `p` (its Backward node is named after `name`)."""

    def forward(ctx, *tensors):
        values = dict(zip(p.inputs, tensors))
        ctx.sizes = p.forward.sizes_of(values)  # the backward runs at the forward's dynamic sizes
        outs = p.forward.execute(values, ctx.sizes)
        values.update(zip(p.forward.graph.graph["outputs"], outs))
        results = outs[: p.n_outputs]
        ctx.save_for_backward(*(values[v] for v in p.saved))
        ctx.mark_non_differentiable(*(o for o, d in zip(results, p.differentiable) if not d))
        return results

    def backward(ctx, *grads):
        if is_grad_enabled():
            raise RuntimeError(DOUBLE_BACKWARD)
        flowing = [g for g, d in zip(grads, p.differentiable) if d]
        values = {v: g.contiguous() for v, g in zip(p.placeholders, flowing)}
        values.update(zip(p.saved, ctx.saved_tensors))
        outs = dict(zip(p.backward.graph.graph["outputs"], p.backward.execute(values, ctx.sizes)))
        by_target = {t: outs[g] for t, g in zip(p.targets, p.grads) if g is not None}
        return tuple(by_target.get(v) for v in p.inputs)

    return type(f"Compiled_{name}", (Function,), {"forward": staticmethod(forward),
                                                   "backward": staticmethod(backward)})
