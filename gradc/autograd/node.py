"""Nodes of the backward tape.

Every differentiable op that runs while grad mode is on creates one `Node` for its
outputs (`t.grad_fn`). `next_functions` point at the nodes that produced the inputs,
or at the `AccumulateGrad` node of a leaf; the engine walks them in dependency order.
Built-in ops get one `OpNode` subclass each (`MulBackward0`, ...), made from the op
table; custom `autograd.Function`s get a `<Name>Backward` class from their metaclass.
"""
from __future__ import annotations

import itertools
import sys
import weakref
from collections import OrderedDict

import numpy as np

from ..size import contiguous_strides

_sequence = itertools.count()

FREED = ("Trying to backward through the graph a second time (or directly access saved tensors "
         "after they have already been freed). Saved intermediate values of the graph are freed "
         "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
         "backward through the graph a second time or if you need to access saved tensors after "
         "calling backward.")


class HookDict(OrderedDict):
    """Registered hooks by handle id; handles refer to it weakly."""


class RemovableHandle:
    """Returned by every `register_*hook`; `remove()` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks: HookDict):
        self._hooks = weakref.ref(hooks)
        self.id = next(self._ids)

    def remove(self) -> None:
        hooks = self._hooks()
        if hooks is not None:
            hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def add_hook(hooks: HookDict, fn) -> RemovableHandle:
    handle = RemovableHandle(hooks)
    hooks[handle.id] = fn
    return handle


class Node:
    """A backward step: maps gradients of its outputs to gradients of its inputs."""

    next_functions: tuple = ()
    num_outputs = 1
    # hook registries are made on first use: most nodes never get a hook, and every op
    # that records creates a node
    _pre_hooks: HookDict | None = None
    _hooks: HookDict | None = None
    _tensor_hooks: dict | None = None  # output_nr -> HookDict, from Tensor.register_hook
    _retain_grad: dict | None = None  # output_nr -> weakref of the tensor

    def __init__(self):
        self.sequence_nr = next(_sequence)

    @property
    def metadata(self) -> dict:
        if "_metadata" not in self.__dict__:
            self._metadata = {}
        return self._metadata

    def tensor_hooks(self, output_nr: int) -> HookDict:
        if self._tensor_hooks is None:
            self._tensor_hooks = {}
        return self._tensor_hooks.setdefault(output_nr, HookDict())

    def retain_grad_of(self, output_nr: int, tensor) -> None:
        if self._retain_grad is None:
            self._retain_grad = {}
        self._retain_grad[output_nr] = weakref.ref(tensor)

    def name(self) -> str:
        return type(self).__name__

    def apply(self, *grads):
        raise NotImplementedError

    def __call__(self, *grads):
        return self.apply(*grads)

    def register_hook(self, fn) -> RemovableHandle:
        """`fn(grad_inputs, grad_outputs)` runs after this node; may return new grad_inputs."""
        if self._hooks is None:
            self._hooks = HookDict()
        return add_hook(self._hooks, fn)

    def register_prehook(self, fn) -> RemovableHandle:
        """`fn(grad_outputs)` runs before this node; may return new grad_outputs."""
        if self._pre_hooks is None:
            self._pre_hooks = HookDict()
        return add_hook(self._pre_hooks, fn)

    def release_variables(self) -> None:
        """Free saved tensors after a backward without retain_graph."""

    def __repr__(self) -> str:
        return f"<{self.name()} object at {hex(id(self))}>"


class AccumulateGrad(Node):
    """The node of a leaf that requires grad: adds incoming gradients into `.grad`."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def accumulate(self, grad, create_graph: bool) -> None:
        """Add `grad` into `.grad`. A first gradient becomes `.grad` without a copy when the
        engine passed its only reference and nothing else reaches its memory (`_stealable`),
        as PyTorch steals it; otherwise `.grad` is a copy: `grad` may be the caller's, a
        hook's, or shared with another leaf."""
        var = self.variable
        if var.grad is None:
            if not create_graph and _stealable(grad, var):
                var.grad = _as_gradient(grad)
                return
            var.grad = grad.clone() if create_graph else grad.detach().clone()
        elif create_graph:
            var.grad = var.grad + grad
        else:
            from .grad_mode import no_grad

            with no_grad():
                var.grad.add_(grad)


def _refs(obj) -> int:
    """The references to `obj` besides the ones this call makes."""
    return sys.getrefcount(obj) - _CALL_REFS


_CALL_REFS = 0
_CALL_REFS = _refs(object())  # a temporary: only the call refers to it


def _refcounts_exact() -> bool:
    """Whether `_refs` counts exactly the holders of an object (a local and a list here);
    an interpreter that skips counting some references disables stealing."""
    probe = object()
    held = [probe]
    return _refs(probe) == 2 and _refs(held) == 1


_STEAL = _refcounts_exact()


_TENSOR = None


def _tensor_type() -> type:
    """gradc.Tensor, imported on first use (importing gradc.tensor imports this module)."""
    global _TENSOR
    if _TENSOR is None:
        from ..tensor import Tensor

        _TENSOR = Tensor
    return _TENSOR


def _stealable(grad, var) -> bool:
    """Whether `grad`, which only `accumulate`'s argument holds, may become `var.grad` as it
    is: a contiguous tensor of var's shape, dtype and device without history, alone on a
    storage whose memory is a numpy array of exactly its elements that no other tensor,
    array or object reaches. Every reference is counted: the tensor's (accumulate's argument
    and this one), its view base's (grad._base and the local), the storage's (the tensors'
    `_storage` and the local) and the array's (the storage, the tensors' cached `_arr` and
    the local). A user's tensor, a hook's copy, a saved tensor or a numpy view adds one."""
    if not _STEAL or type(grad) is not _tensor_type() or _refs(grad) != 2:
        return False
    if (grad._requires_grad or grad.grad_fn is not None or grad._offset != 0 or grad._shape != var._shape
            or (grad._stride is not None and grad._stride != contiguous_strides(grad._shape))):
        return False
    storage = grad._storage
    if storage.dtype is not var._storage.dtype or storage.device != var._storage.device:
        return False
    base = grad._base
    if base is not None and (_refs(base) != 2 or base._base is not None or base._storage is not storage):
        return False
    owner = storage._whole
    if storage._data is not None or type(owner) is not np.ndarray or owner.base is not None:
        return False
    if owner.size != grad._shape.numel() or not owner.flags.c_contiguous:
        return False
    tensors = (grad,) if base is None else (grad, base)
    if _refs(storage) != len(tensors) + 1:
        return False
    cached = 0
    for t in tensors:
        if t._arr is owner:
            cached += 1
        elif t._arr is not None:
            return False
    return _refs(owner) == cached + 2


def _as_gradient(grad):
    """The `.grad` made of a stolen gradient: the tensor itself when it has no attributes of
    its own (a kernel's fresh result), else a new tensor over its storage (a view's base is
    dropped: the storage holds exactly the gradient's elements)."""
    if not grad.__dict__:
        return grad
    t = type(grad)._new(grad._storage, 0, grad._shape, None)
    owner = grad._storage._whole
    t._arr = owner if owner.shape == grad._shape else None
    return t


def accumulator(t) -> AccumulateGrad:
    """The single AccumulateGrad of leaf `t`, alive while any graph refers to it."""
    node = t._accumulator() if t._accumulator is not None else None
    if node is None:
        node = AccumulateGrad(t)
        if t._hooks is not None:  # hooks registered on the leaf before this node existed
            node._tensor_hooks = {0: t._hooks}
        t._accumulator = weakref.ref(node)
    return node


_NO_EDGE = (None, 0)


def refresh_view(t) -> None:
    from ..ops.inplace import refresh_view as refresh

    refresh(t)


def gradient_edge(t) -> tuple:
    """(node, input_nr) that receives the gradient flowing into tensor `t`."""
    if t._base is not None and t._view_version != t._storage.version:
        refresh_view(t)  # a view whose base was modified in place
    if t.grad_fn is not None:
        return (t.grad_fn, t._output_nr)
    if t.requires_grad:
        return (accumulator(t), 0)
    return (None, 0)


class SavedTensor:
    """A tensor a node keeps for backward, with the version it had when saved.

    Outputs are saved without their grad_fn (which would be this node: a reference
    cycle) and rebuilt on unpacking, as PyTorch does.
    """

    __slots__ = ("tensor", "version", "is_output", "output_nr")

    def __init__(self, t, is_output: bool = False, output_nr: int = 0):
        self.tensor = t._alias() if is_output else t
        self.version = t._version
        self.is_output = is_output
        self.output_nr = output_nr

    def unpack(self, node: Node | None):
        t = self.tensor
        if t._version != self.version:
            # as PyTorch: name the node that produced the tensor (none for a leaf)
            if self.is_output and node is not None:
                which = f", which is output {self.output_nr} of {node.name()},"
            elif t.grad_fn is not None:
                which = f", which is output {t._output_nr} of {t.grad_fn.name()},"
            else:
                which = ""
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [{t.dtype} {list(t.shape)}]{which} is at version "
                f"{t._version}; expected version {self.version} instead.")
        if self.is_output and node is not None:
            out = t._alias()
            out.requires_grad_(True) if out.dtype.is_floating_point else None
            out.grad_fn, out._output_nr = node, self.output_nr
            return out
        return t


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def make_node_class(op) -> type:
    """The `<Op>Backward0` Node class of a primitive op."""
    return type(f"{_camel(op.name)}Backward0", (OpNode,), {"op": op})


class OpNode(Node):
    """The node of a primitive op; also the `ctx` its backward formula receives.

    A formula reads `ctx.inputs` / `ctx.output` (checked against in-place changes),
    `ctx.attrs` and `ctx.needs_input_grad`, and returns one gradient per input
    (None where there is none). Reducing a broadcast gradient back to the input's
    shape and dtype is done here, once, not in every formula.
    """

    op = None

    _released = False
    _saved_inputs = _saved_outputs = None

    def __init__(self, args, attrs: dict, outputs: list, tensor_type: type):
        self.sequence_nr = next(_sequence)
        self.attrs = attrs
        edges, meta = [], []
        for a in args:
            if isinstance(a, tensor_type):
                if a._base is not None and a._view_version != a._storage.version:
                    refresh_view(a)  # a view whose base was modified in place
                if a.grad_fn is not None:
                    edges.append((a.grad_fn, a._output_nr))
                elif a._requires_grad:
                    edges.append((accumulator(a), 0))
                else:
                    edges.append(_NO_EDGE)
                meta.append((a._shape, a._storage.dtype))
            else:
                edges.append(_NO_EDGE)
                meta.append(None)
        self.next_functions = tuple(edges)
        self._input_meta = meta
        if len(outputs) > 1:
            self.num_outputs = len(outputs)
            self._out_meta = [(o.shape, o.dtype, o.device) for o in outputs]
        saves = self.op.saves
        if saves == "inputs" or saves == "both":
            self._saved_inputs = [SavedTensor(a, False, i) if isinstance(a, tensor_type) else a
                                  for i, a in enumerate(args)]
        if saves == "output" or saves == "both":
            self._saved_outputs = [SavedTensor(o, True, i) for i, o in enumerate(outputs)]

    @property
    def needs_input_grad(self) -> tuple:
        return tuple(e[0] is not None for e in self.next_functions)

    def _check_alive(self):
        if self._released:
            raise RuntimeError(FREED)

    @property
    def inputs(self) -> list:
        self._check_alive()
        return [s.unpack(None) if isinstance(s, SavedTensor) else s for s in self._saved_inputs]

    @property
    def output(self):
        self._check_alive()
        return self._saved_outputs[0].unpack(self)

    @property
    def outputs(self) -> list:
        self._check_alive()
        return [s.unpack(self) for s in self._saved_outputs]

    def input_shape(self, i: int = 0):
        return self._input_meta[i][0]

    def release_variables(self) -> None:
        if self.op.saves:
            self._saved_inputs = self._saved_outputs = None
            self._released = True

    def apply(self, *grads):
        if self.num_outputs > 1 and any(g is None for g in grads):
            from .. import ops

            grads = tuple(ops.zeros(s, dtype=d, device=dv) if g is None else g
                          for g, (s, d, dv) in zip(grads, self._out_meta))
        result = self.op.backward(self, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        out = []
        for g, meta, (node, _) in zip(result, self._input_meta, self.next_functions):
            if g is None or node is None:
                out.append(None)
                continue
            shape, dtype = meta
            if g._shape != shape:
                from ..ops import sum_to

                g = sum_to(g, shape)
            if g._storage.dtype is not dtype:
                g = g.to(dtype)
            out.append(g)
        return tuple(out)
