"""Custom differentiable functions: `class MyFn(gradc.autograd.Function)`.

As in PyTorch, a metaclass gives every subclass its own backward Node class, named
`<MyFn>Backward`. An instance of that class is both the `ctx` that `forward` and
`backward` receive (context behaviour comes from `FunctionCtx`, a mixin) and the node
the outputs' `grad_fn` points to (hook behaviour comes from `Node`).
"""
from __future__ import annotations

import functools

from .grad_mode import is_grad_enabled, no_grad
from .node import FREED, Node, SavedTensor, gradient_edge


class FunctionCtx:
    """What `ctx` offers to `forward` and `backward` (PyTorch's _ContextMethodMixin)."""

    def save_for_backward(self, *tensors) -> None:
        from ..tensor import Tensor

        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save variables, but argument {i} is of "
                                f"type {type(t).__name__}")
        self._to_save = tensors

    def mark_dirty(self, *tensors) -> None:
        self._dirty = tensors

    def mark_non_differentiable(self, *tensors) -> None:
        self._non_differentiable = tensors

    def set_materialize_grads(self, value: bool) -> None:
        self._materialize_grads = value

    @property
    def saved_tensors(self) -> tuple:
        if self._released:
            raise RuntimeError(FREED)
        return tuple(s.unpack(self if s.is_output else None) if isinstance(s, SavedTensor) else s
                     for s in self._saved)


class BackwardCFunction(FunctionCtx, Node):
    """Base of the generated `<Name>Backward` nodes: `apply` calls the user's backward."""

    _forward_cls = None

    def __init__(self):
        Node.__init__(self)
        self._to_save = ()
        self._saved = ()
        self._dirty = ()
        self._non_differentiable = ()
        self._materialize_grads = True
        self._released = False
        self._out_meta = ()
        self.needs_input_grad = ()

    def apply(self, *grads):
        from ..factories import zeros
        from ..ops.indexing import sum_to
        from ..ops.shapes import fmt

        if self._materialize_grads:  # (non-tensor outputs get None)
            grads = tuple(zeros(m[0], dtype=m[1], device=m[2]) if g is None and m is not None else g
                          for g, m in zip(grads, self._out_meta))
        result = self._forward_cls.backward(self, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        n = len(self._in_meta)  # one per forward argument; edges exist only for tensor ones
        name = self.name()
        if len(result) < n:
            raise RuntimeError(f"function {name} returned an incorrect number of gradients "
                               f"(expected {n}, got {len(result)})")
        if any(g is not None for g in result[n:]):
            raise RuntimeError(f"function {name} returned an incorrect number of gradients "
                               f"(expected {n}, got {len(result)})")
        out = []
        for i, (g, meta) in enumerate(zip(result[:n], self._in_meta)):
            if g is None:
                if meta is not None:
                    out.append(None)
                continue
            if meta is None:
                raise RuntimeError(f"function {name} returned a gradient different than None at "
                                   f"position {i + 1}, but the corresponding forward input was not a Variable")
            if g.shape != meta[0]:
                try:
                    g = sum_to(g, meta[0])
                except RuntimeError:
                    raise RuntimeError(f"Function {name} returned an invalid gradient at index {i} - got "
                                       f"{fmt(g.shape)} but expected shape compatible with {fmt(meta[0])}") from None
            if g.dtype is not meta[1]:  # as PyTorch's validate_outputs
                g = g.to(meta[1])
            out.append(g)
        return tuple(out)

    def release_variables(self) -> None:
        if self._saved:
            self._saved = ()
            self._released = True


class FunctionMeta(type):
    """Creates `<Name>Backward` for every Function subclass (as PyTorch's FunctionMeta)."""

    def __init__(cls, name, bases, attrs):
        cls._backward_cls = type(name + "Backward", (BackwardCFunction,), {"_forward_cls": cls})
        super().__init__(name, bases, attrs)


class Function(metaclass=FunctionMeta):
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grads)`; call `apply`."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("Function objects are not instantiated; call MyFunction.apply(...) instead")

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..tensor import Tensor

        ctx = cls._backward_cls()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with no_grad():
            raw = cls.forward(ctx, *args, **kwargs)
        single = not isinstance(raw, tuple)
        outputs = (raw,) if single else raw
        if is_grad_enabled() and any(ctx.needs_input_grad):
            outputs = _connect(ctx, args, outputs)
        return outputs[0] if single else outputs


def _connect(ctx, args, outputs) -> tuple:
    """Wire the outputs to `ctx` (the node) and freeze what backward will read."""
    from ..tensor import Tensor

    # as PyTorch: an edge per tensor argument only (non-tensor arguments get no edge)
    ctx.next_functions = tuple(gradient_edge(a) for a in args if isinstance(a, Tensor))
    ctx.num_outputs = len(outputs)
    ctx._in_meta = tuple((a.shape, a.dtype) if isinstance(a, Tensor) else None for a in args)
    inputs = {id(a) for a in args if isinstance(a, Tensor)}
    dirty = {id(t) for t in ctx._dirty}
    non_diff = {id(t) for t in ctx._non_differentiable}
    wired = []
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            wired.append(out)
            continue
        differentiable = id(out) not in non_diff  # (before aliasing: the marks name the input)
        if id(out) in inputs and id(out) not in dirty:
            out = out._alias()  # an input returned as is: a new tensor, as PyTorch's view
        if id(out) in dirty:
            if out.grad_fn is None and out.requires_grad:
                raise RuntimeError("a leaf Variable that requires grad has been used in an in-place operation.")
            out._bump_version()  # as PyTorch: marking dirty counts as a modification
        if differentiable and out.dtype.is_floating_point:
            out._requires_grad = True
            out.grad_fn, out._output_nr = ctx, i
        wired.append(out)
    ctx._out_meta = tuple((o.shape, o.dtype, o.device) if isinstance(o, Tensor) else None for o in wired)
    out_ids = {id(o): i for i, o in enumerate(wired) if isinstance(o, Tensor)}
    ctx._saved = tuple(
        SavedTensor(t, id(t) in out_ids, out_ids.get(id(t), 0)) if isinstance(t, Tensor) else t
        for t in ctx._to_save)
    ctx._to_save = ()
    return tuple(wired)


def once_differentiable(fn):
    """Decorate a `backward` that is not itself differentiable: it runs under no_grad."""

    @functools.wraps(fn)
    def wrapper(ctx, *grads):
        with no_grad():
            return fn(ctx, *grads)

    return wrapper
