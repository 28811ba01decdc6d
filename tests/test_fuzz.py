"""Differential fuzzing of the compiler: random programs, compiled against eager.

A hypothesis strategy writes small random programs (a straight-line DAG over 1-4 float
inputs whose dims are drawn from {0, 1, 2, 3, 5, 7}): broadcasting binary ops, unary
pointwise ops on safe domains, reductions over random dims (keepdim or not), views
(transpose, permute, strided slices, expand, unsqueeze, ...), matmuls with an operand of
a compatible shape, softmax/log_softmax, cumsum, gather/cat/flip/tril, and in-place ops
on intermediates (and, without autograd, on the inputs and their views). Every step is
run on the drawn inputs while it is drawn, so a program only holds steps eager accepts.

Each example runs its program eagerly, then through `gradc.compile` twice (the first call
compiles; a program that writes in place returns its capture run's eager results on that
call, so the second call is the one that runs the compiled code). The outputs, the inputs
(in-place writes), and in the training examples the gradients of a fixed random-weighted
sum of the outputs must match eager. A graph break is allowed only for the reasons in
ALLOWED_BREAKS (the compiler documents them as not compiled yet); an unexpected break,
a fallback or a wrong value fails. When eager raises (a backward reading a tensor that a
later in-place op overwrote), the compiled function must raise the same exception.

CI runs MAX_EXAMPLES examples, derandomized (the same programs on every run);
`GRADC_FUZZ_EXAMPLES=N` runs N. `pytest --hypothesis-show-statistics tests/test_fuzz.py`
lists how often each example compiled or broke (and why).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import gradc
from gradc import compiler
from gradc.compiler.capture import EXTERNS, REDUCTIONS, TEMPLATES, VIEWS

MAX_EXAMPLES = int(os.environ.get("GRADC_FUZZ_EXAMPLES", 300))
DIMS = (0, 1, 2, 3, 5, 7)
MAX_NUMEL = 120  # larger intermediate values are not drawn: the C build cost dominates anyway
MAX_STEPS = 7
MAX_ABS = 1e4  # steps whose values grow past this are not drawn (float32 error would dominate)

# Graph-break reasons a random program may legitimately hit (substring of the reason -> why).
ALLOWED_BREAKS = {
    "an in-place write to a view or to a tensor that requires grad": "documented as not compiled yet",
    "an in-place write to a tensor that has views": "documented as not compiled yet",
    "an in-place write that broadcasts its value": "documented as not compiled yet",
    "argsort is data-dependent": "sort orders through argsort (capture.GRAPH_BREAKS)",
    "as_strided can alias arbitrary memory": "eager records a slice assignment to a tensor that requires grad "
                                             "through as_strided (capture.GRAPH_BREAKS)",
    "an output is an input, a view of one": "documented as not compiled yet (an output aliasing an input)",
}

# Ops with a compile decision that no generator below reaches, with why.
EXCLUDED = {
    "class_index": "a loss internal (nll_loss targets), fuzzed through the loss tests' samples",
    "unfold": "convolution/pooling internals, swept by test_compiler_ops' F.unfold sample",
    "fold": "convolution/pooling internals, swept by test_compiler_ops' F.fold sample",
    "constant_pad": "F.pad only, swept by test_compiler_ops' F.pad sample",
    "scatter_add": "needs in-range index tensors of matching rank; swept by test_compiler_ops",
}


# ----------------------------------------------------------------------------- programs
@dataclass
class Step:
    out: str
    text: str  # the step as Python source, e.g. "v2 = v0.transpose(0, 1)"
    fn: Callable
    args: tuple  # names of the values it reads
    name: str  # its generator


@dataclass
class Program:
    inputs: list  # numpy arrays
    grad: list  # which inputs require grad (all False in an inference example)
    steps: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    weights_seed: int = 0

    @property
    def training(self) -> bool:
        return any(self.grad)

    def run(self, *inputs):
        env = {f"x{i}": t for i, t in enumerate(inputs)}
        for s in self.steps:
            env[s.out] = s.fn(*(env[a] for a in s.args))
        return tuple(env[o] for o in self.outputs)

    def make_inputs(self) -> list:
        return [gradc.tensor(a.copy(), requires_grad=g) for a, g in zip(self.inputs, self.grad)]

    def source(self) -> str:
        lines = [f"x{i} = gradc.tensor(np.array({a.tolist()!r}, dtype=np.{a.dtype}), requires_grad={g})"
                 for i, (a, g) in enumerate(zip(self.inputs, self.grad))]
        lines.append(f"def program({', '.join(f'x{i}' for i in range(len(self.inputs)))}):")
        lines += [f"    {s.text}" for s in self.steps]
        lines.append(f"    return {', '.join(self.outputs)},")
        return "\n".join(lines)


@dataclass
class Val:
    t: gradc.Tensor  # the value at the drawn inputs (grad off)
    input_like: bool  # an input or a view of one: in-place writes to it break autograd


class Builder:
    """Draws the steps of one program, running each on the drawn inputs (grad off)."""

    def __init__(self, draw, rng, training: bool, dtype):
        self.draw, self.rng, self.training, self.dtype = draw, rng, training, dtype
        self.program = Program([], [])
        self.env: dict[str, Val] = {}
        self.terminal: list[str] = []  # integer results: outputs, never operands

    def new_input(self, shape) -> str:
        shape = tuple(int(s) for s in shape)
        if self.draw(st.booleans()):
            a = self.rng.uniform(-2, 2, shape)
        else:  # small integers: ties and values at kinks (relu(0), max of equal values, ...)
            a = self.rng.integers(-2, 3, shape).astype(np.float64)
        a = a.astype(self.dtype)
        name = f"x{len(self.program.inputs)}"
        self.program.inputs.append(a)
        self.program.grad.append(self.training and self.draw(st.booleans()))
        self.env[name] = Val(gradc.tensor(a.copy()), True)
        return name

    def random_shape(self, max_ndim=3) -> tuple:
        ndim = self.draw(st.integers(0, max_ndim))
        return tuple(self.draw(st.sampled_from(DIMS)) for _ in range(ndim))

    def pick(self, pred=lambda v: True) -> str | None:
        """A float value (recent ones first, so programs tend to chain)."""
        names = [n for n, v in self.env.items() if v.t.dtype.is_floating_point and pred(v)]
        return self.draw(st.sampled_from(names[::-1])) if names else None

    def partner(self, a: str) -> str | float:
        """A second operand for `a`: a scalar, an existing value that broadcasts with it,
        or a new input of a broadcast-compatible shape (dims set to 1 or dropped, or a new
        leading dim)."""
        shape = tuple(self.env[a].t.shape)
        form = self.draw(st.sampled_from(["scalar", "value", "input", "input"]))
        if form == "scalar":
            return self.draw(st.sampled_from([-1.5, 0.5, 2.0, 3]))
        if form == "value":
            fits = [n for n, v in self.env.items() if n != a and v.t.dtype.is_floating_point
                    and _broadcasts(shape, tuple(v.t.shape))]
            if fits:
                return self.draw(st.sampled_from(fits))
        new = [1 if self.draw(st.booleans()) and self.draw(st.booleans()) else s for s in shape]
        new = new[self.draw(st.integers(0, len(new))):]
        if len(new) < 3 and self.draw(st.integers(0, 4)) == 0:
            new = [self.draw(st.sampled_from(DIMS[1:4])), *new]
        return self.new_input(new)

    def add(self, name: str, text: str, fn: Callable, *args) -> bool:
        """Run `fn` on the values named `args` (a scalar arg is baked into the text and
        fn already); record it as a step if eager accepts it and its result is small,
        finite-ish and a tensor. `text` uses {0}, {1}, ... for the argument names."""
        values = [self.env[a] for a in args]
        try:
            with gradc.no_grad():
                out = fn(*(v.t for v in values))
        except (RuntimeError, IndexError, ValueError, TypeError):
            return False
        if not isinstance(out, gradc.Tensor) or out.numel() > MAX_NUMEL:
            return False
        if out.dtype.is_floating_point and out.numel():
            arr = out.detach().numpy()
            if not np.all(np.isfinite(arr)) or np.abs(arr).max() > MAX_ABS:
                return False
        inplace = any(out is v.t for v in values)
        view = out._base is not None and any(_same_root(out, v.t) for v in values)
        input_like = any(v.input_like for v in values if inplace or view and _same_root(out, v.t))
        name_out = f"v{len(self.program.steps)}"
        self.env[name_out] = Val(out, input_like)
        self.program.steps.append(Step(name_out, f"{name_out} = " + text.format(*args), fn, tuple(args), name))
        if not out.dtype.is_floating_point:
            self.terminal.append(name_out)
        return True


def _broadcasts(a: tuple, b: tuple) -> bool:
    try:
        return np.broadcast_shapes(a, b) == a
    except ValueError:
        return False


def _same_root(a: gradc.Tensor, b: gradc.Tensor) -> bool:
    return (a._base if a._base is not None else a) is (b._base if b._base is not None else b)


def _dim(b: Builder, t, allow_none=False):
    if t.ndim == 0:
        return None if allow_none else 0
    d = b.draw(st.integers(-t.ndim, t.ndim - 1))
    return None if allow_none and b.draw(st.integers(0, 3)) == 0 else d


# ----------------------------------------------------------------------------- generators
# Each takes the builder and tries to add one step; False when it does not apply here.
# GENERATORS maps name -> (ops of gradc.OPS it reaches, function).
UNARY = {  # name -> (text, fn, ops), the argument kept in a domain where the op is finite
    "neg": ("-{0}", lambda x: -x, {"neg"}),
    "abs": ("{0}.abs()", lambda x: x.abs(), {"abs"}),
    "exp": ("{0}.tanh().exp()", lambda x: x.tanh().exp(), {"tanh", "exp"}),
    "log": ("({0}.abs() + 1).log()", lambda x: (x.abs() + 1).log(), {"abs", "add", "log"}),
    "log1p": ("{0}.abs().log1p()", lambda x: x.abs().log1p(), {"log1p"}),
    "expm1": ("{0}.tanh().expm1()", lambda x: x.tanh().expm1(), {"expm1"}),
    "sqrt": ("({0}.abs() + 0.25).sqrt()", lambda x: (x.abs() + 0.25).sqrt(), {"sqrt"}),
    "rsqrt": ("({0}.abs() + 0.5).rsqrt()", lambda x: (x.abs() + 0.5).rsqrt(), {"rsqrt"}),
    "reciprocal": ("({0} * {0} + 0.5).reciprocal()", lambda x: (x * x + 0.5).reciprocal(), {"reciprocal", "mul"}),
    "sin": ("{0}.sin()", lambda x: x.sin(), {"sin"}),
    "cos": ("{0}.cos()", lambda x: x.cos(), {"cos"}),
    "tanh": ("{0}.tanh()", lambda x: x.tanh(), {"tanh"}),
    "sigmoid": ("{0}.sigmoid()", lambda x: x.sigmoid(), {"sigmoid"}),
    "erf": ("{0}.erf()", lambda x: x.erf(), {"erf"}),
    "relu": ("{0}.relu()", lambda x: x.relu(), {"relu"}),
    "floor": ("{0}.floor()", lambda x: x.floor(), {"floor"}),
    "ceil": ("{0}.ceil()", lambda x: x.ceil(), {"ceil"}),
    "round": ("({0} * 1.5).round()", lambda x: (x * 1.5).round(), {"round"}),
    "sign": ("{0}.sign()", lambda x: x.sign(), {"sign"}),
    "gelu": ("gradc.gelu({0})", lambda x: gradc.gelu(x), {"gelu"}),
    "gelu_tanh": ("gradc.gelu({0}, approximate='tanh')", lambda x: gradc.gelu(x, approximate="tanh"), {"gelu"}),
    "silu": ("gradc.silu({0})", lambda x: gradc.silu(x), {"sigmoid", "mul"}),
    "clamp": ("{0}.clamp(-0.5, 1)", lambda x: x.clamp(-0.5, 1), {"clamp"}),
    "clamp_min": ("{0}.clamp(min=0)", lambda x: x.clamp(min=0), {"clamp"}),
    "square": ("{0}.square()", lambda x: x.square(), set()),
    "pow3": ("{0} ** 3", lambda x: x**3, {"pow"}),
    "pow_half": ("({0}.abs() + 0.5) ** 0.5", lambda x: (x.abs() + 0.5) ** 0.5, {"pow"}),
    "rpow": ("2 ** {0}.tanh()", lambda x: 2 ** x.tanh(), {"pow"}),
    "clone": ("{0}.clone()", lambda x: x.clone(), {"clone"}),
    "contiguous": ("{0}.contiguous()", lambda x: x.contiguous(), set()),
    "cast_f64": ("{0}.double().to({0}.dtype)", lambda x: x.double().to(x.dtype), {"cast"}),
    "cast_int": ("({0} * 1.5).to(gradc.int32).to({0}.dtype)", lambda x: (x * 1.5).to(gradc.int32).to(x.dtype),
                 {"cast"}),
    "isnan": ("{0}.isnan().logical_not().to({0}.dtype) * {0}",
              lambda x: x.isnan().logical_not().to(x.dtype) * x, {"ne", "logical_not", "cast"}),
}

BINARY = {  # name -> (text, fn, ops); the second operand may be a scalar
    "add": ("{0} + {1}", lambda x, y: x + y, {"add"}),
    "add_alpha": ("gradc.add({0}, {1}, alpha=2)", lambda x, y: gradc.add(x, y, alpha=2), {"add"}),
    "sub": ("{0} - {1}", lambda x, y: x - y, {"sub"}),
    "rsub": ("{1} - {0}", lambda x, y: y - x, {"sub"}),
    "mul": ("{0} * {1}", lambda x, y: x * y, {"mul"}),
    "div": ("{0} / ({1} * {1} + 0.5)", lambda x, y: x / (y * y + 0.5), {"div"}),
    "maximum": ("gradc.maximum({0}, {1})", lambda x, y: gradc.maximum(x, y), {"maximum"}),
    "minimum": ("gradc.minimum({0}, {1})", lambda x, y: gradc.minimum(x, y), {"minimum"}),
    "pow": ("({0}.abs() + 0.5) ** ({1} * 0.5)", lambda x, y: (x.abs() + 0.5) ** (y * 0.5), {"pow"}),
    "remainder": ("{0} % (abs({1}) + 0.5)", lambda x, y: x % (abs(y) + 0.5), {"remainder"}),
    "floor_divide": ("{0} // (abs({1}) + 0.5)", lambda x, y: x // (abs(y) + 0.5), {"floor_divide"}),
    "where": ("gradc.where({0} > {1}, {0}, {1} * 2)", lambda x, y: gradc.where(x > y, x, y * 2), {"gt", "where"}),
    "compare": ("({0} >= {1}).to({0}.dtype) + ({0} < {1}).to({0}.dtype) * 2 - ({0} == {1}).to({0}.dtype)",
                lambda x, y: (x >= y).to(x.dtype) + (x < y).to(x.dtype) * 2 - (x == y).to(x.dtype),
                {"ge", "lt", "eq", "cast"}),
    "logical": ("gradc.where(gradc.logical_or({0} > 0, ({1} <= 0) ^ ({1} != 1)), {0}, -{0})",
                lambda x, y: gradc.where(gradc.logical_or(x > 0, (y <= 0) ^ (y != 1)), x, -x),
                {"gt", "le", "ne", "bitwise_or", "bitwise_xor", "where"}),
    "bitwise": ("gradc.where(~(({0} > 0) & ({1} < 1)) | ({0} < -1), {0}, {1})",
                lambda x, y: gradc.where(~((x > 0) & (y < 1)) | (x < -1), x, y),
                {"bitwise_not", "bitwise_and", "bitwise_or", "lt"}),
    "logical_and": ("gradc.logical_and({0} > 0, {1} > 0).to({0}.dtype) * {0}",
                    lambda x, y: gradc.logical_and(x > 0, y > 0).to(x.dtype) * x, {"bitwise_and", "cast"}),
}


def g_unary(name):
    text, fn, _ = UNARY[name]
    return lambda b: (a := b.pick()) is not None and b.add(name, text, fn, a)


def g_binary(name):
    text, fn, _ = BINARY[name]

    def gen(b):
        a = b.pick()
        if a is None:
            return False
        other = b.partner(a)
        if isinstance(other, str):
            return b.add(name, text, fn, a, other)
        scalar_text = text.replace("{1}", repr(other))
        return b.add(name, scalar_text, lambda x: fn(x, other), a)

    return gen


def g_reduce(method):
    """sum/mean/amax/amin/prod/var/std/logsumexp over random dims (int, tuple or all), keepdim random."""

    def gen(b):
        a = b.pick()
        if a is None:
            return False
        t = b.env[a].t
        keepdim = b.draw(st.booleans())
        if method == "prod" or t.ndim == 0 or b.draw(st.integers(0, 2)) == 0:
            dim = _dim(b, t, allow_none=method != "logsumexp")
        else:
            dims = b.draw(st.lists(st.integers(0, t.ndim - 1), min_size=1, max_size=t.ndim, unique=True))
            dim = tuple(d - t.ndim if b.draw(st.booleans()) else d for d in dims)
        if dim is None:
            return b.add(method, f"{{0}}.{method}()", lambda x: getattr(x, method)(), a)
        return b.add(method, f"{{0}}.{method}({dim!r}, keepdim={keepdim})",
                     lambda x: getattr(x, method)(dim, keepdim=keepdim), a)

    return gen


def g_along(method, text_extra="", **kw):
    """softmax/log_softmax/cumsum/max/min/argmax/argmin along one random dim."""

    def gen(b):
        a = b.pick()
        if a is None:
            return False
        d = _dim(b, b.env[a].t)
        if method in ("max", "min"):
            part = b.draw(st.sampled_from(["values", "indices"]))
            return b.add(method, f"{{0}}.{method}({d}).{part}", lambda x: getattr(getattr(x, method)(d), part), a)
        return b.add(method, f"{{0}}.{method}({d}{text_extra})", lambda x: getattr(x, method)(d, **kw), a)

    return gen


def g_matmul(b):
    """x @ w, w @ x or x @ x.mT with w a new input of a compatible shape."""
    a = b.pick(lambda v: v.t.ndim >= 1)
    if a is None:
        return False
    shape = tuple(b.env[a].t.shape)
    form = b.draw(st.sampled_from(["right", "left", "gram"]))
    if form == "gram":
        return b.add("matmul", "{0} @ {0}.mT" if len(shape) >= 2 else "{0} @ {0}",
                     (lambda x: x @ x.mT) if len(shape) >= 2 else (lambda x: x @ x), a)
    m = b.draw(st.sampled_from(DIMS[:5]))
    batch = list(shape[:-2]) if len(shape) > 2 and b.draw(st.booleans()) else []
    if form == "right":
        k = shape[-1]
        w = b.new_input([*batch, k, m] if b.draw(st.integers(0, 3)) else [k])
        return b.add("matmul", "{0} @ {1}", lambda x, y: x @ y, a, w)
    k = shape[-2] if len(shape) >= 2 else shape[0]
    w = b.new_input([*batch, m, k] if b.draw(st.integers(0, 3)) else [k])
    return b.add("matmul", "gradc.matmul({1}, {0})", lambda x, y: gradc.matmul(y, x), a, w)


def g_einsum(b):
    a = b.pick(lambda v: v.t.ndim == 2)
    if a is None:
        return False
    n, k = b.env[a].t.shape
    w = b.new_input([k, b.draw(st.sampled_from(DIMS[:5]))])
    return b.add("einsum", "gradc.einsum('ij,jk->ik', {0}, {1})", lambda x, y: gradc.einsum("ij,jk->ik", x, y), a, w)


def g_transpose(b):
    a = b.pick(lambda v: v.t.ndim >= 1)
    if a is None:
        return False
    t = b.env[a].t
    d0, d1 = _dim(b, t), _dim(b, t)
    return b.add("transpose", f"{{0}}.transpose({d0}, {d1})", lambda x: x.transpose(d0, d1), a)


def g_permute(b):
    a = b.pick(lambda v: v.t.ndim >= 2)
    if a is None:
        return False
    perm = tuple(b.draw(st.permutations(range(b.env[a].t.ndim))))
    return b.add("permute", f"{{0}}.permute{perm!r}", lambda x: x.permute(*perm), a)


def g_slice(b):
    """A basic index: a strided slice (negative starts, steps 1-3), an int, None or Ellipsis."""
    a = b.pick(lambda v: v.t.ndim >= 1)
    if a is None:
        return False
    t = b.env[a].t
    d = b.draw(st.integers(0, t.ndim - 1))
    size = t.shape[d]
    form = b.draw(st.sampled_from(["slice", "slice", "int", "none"]))
    if form == "int" and size:
        item = b.draw(st.integers(-size, size - 1))
    elif form == "none":
        item = None
    else:
        start = b.draw(st.integers(-size - 1, size))
        item = slice(start, b.draw(st.sampled_from([None, -1, size, 1])), b.draw(st.integers(1, 3)))
    key = (Ellipsis, item, *(slice(None),) * (t.ndim - d - 1)) if b.draw(st.booleans()) else \
        (*(slice(None),) * d, item)
    return b.add("slice", f"{{0}}[{_key_text(key)}]", lambda x: x[key], a)


def _key_text(key) -> str:
    def one(k):
        if isinstance(k, slice):
            return ":".join("" if v is None else str(v) for v in (k.start, k.stop, k.step))
        return "..." if k is Ellipsis else repr(k)

    return ", ".join(one(k) for k in key) + ("," if len(key) == 1 else "")


def g_expand(b):
    a = b.pick(lambda v: v.t.ndim <= 3)
    if a is None:
        return False
    shape = list(b.env[a].t.shape)
    sizes = [b.draw(st.sampled_from([0, 1, 2, 3, -1])) if s == 1 else -1 for s in shape]
    if b.draw(st.booleans()):
        sizes = [b.draw(st.sampled_from(DIMS[1:4])), *sizes]
    return b.add("expand", f"{{0}}.expand{tuple(sizes)!r}", lambda x: x.expand(*sizes), a)


def g_reshape(b):
    a = b.pick()
    if a is None:
        return False
    t = b.env[a].t
    shape = tuple(t.shape)
    new = b.draw(st.sampled_from([(-1,), shape[::-1], (1, *shape), (*shape, 1)]))
    method = b.draw(st.sampled_from(["reshape", "view", "flatten"]))
    if method == "flatten":
        return b.add("flatten", "{0}.flatten()", lambda x: x.flatten(), a)
    return b.add(method, f"{{0}}.{method}({new!r})", lambda x: getattr(x, method)(new), a)


def g_unsqueeze(b):
    a = b.pick(lambda v: v.t.ndim <= 3)
    if a is None:
        return False
    n = b.env[a].t.ndim
    d = b.draw(st.integers(-n - 1, n))
    if b.draw(st.booleans()):
        return b.add("unsqueeze", f"{{0}}.unsqueeze({d})", lambda x: x.unsqueeze(d), a)
    return b.add("squeeze", "{0}.squeeze()", lambda x: x.squeeze(), a)


def g_pick_view(b):
    """select / narrow / movedim / swapaxes / unbind / chunk / split / mT."""
    a = b.pick(lambda v: v.t.ndim >= 1)
    if a is None:
        return False
    t = b.env[a].t
    d = _dim(b, t)
    size = t.shape[d]
    i = b.draw(st.integers(0, max(size - 1, 0)))
    forms = {
        "select": (f"{{0}}.select({d}, {i})", lambda x: x.select(d, i)),
        "narrow": (f"{{0}}.narrow({d}, {i}, {size - i})", lambda x: x.narrow(d, i, size - i)),
        "movedim": (f"{{0}}.movedim({d}, 0)", lambda x: x.movedim(d, 0)),
        "swapaxes": (f"{{0}}.swapaxes({d}, -1)", lambda x: x.swapaxes(d, -1)),
        "unbind": (f"{{0}}.unbind({d})[{i}]", lambda x: x.unbind(d)[i]),
        "chunk": (f"{{0}}.chunk(2, {d})[0]", lambda x: x.chunk(2, d)[0]),
        "split": (f"{{0}}.split(2, {d})[-1]", lambda x: x.split(2, d)[-1]),
        "mT": ("{0}.mT", lambda x: x.mT),
    }
    form = b.draw(st.sampled_from(sorted(forms)))
    return b.add(form, *forms[form], a)


def g_flip(b):
    a = b.pick(lambda v: v.t.ndim >= 1)
    if a is None:
        return False
    d = _dim(b, b.env[a].t)
    return b.add("flip", f"{{0}}.flip([{d}])", lambda x: x.flip([d]), a)


def g_tril(b):
    a = b.pick(lambda v: v.t.ndim >= 2)
    if a is None:
        return False
    k, method = b.draw(st.integers(-1, 1)), b.draw(st.sampled_from(["tril", "triu"]))
    return b.add(method, f"{{0}}.{method}({k})", lambda x: getattr(x, method)(k), a)


def g_cat(b):
    """cat or stack with a new input of the matching shape."""
    a = b.pick(lambda v: v.t.ndim >= 1)
    if a is None:
        return False
    t = b.env[a].t
    d = _dim(b, t)
    if b.draw(st.booleans()):
        shape = list(t.shape)
        shape[d] = b.draw(st.sampled_from(DIMS[:4]))
        w = b.new_input(shape)
        return b.add("cat", f"gradc.cat([{{0}}, {{1}}], {d})", lambda x, y: gradc.cat([x, y], d), a, w)
    w = b.new_input(t.shape)
    return b.add("stack", f"gradc.stack([{{1}}, {{0}}], {d})", lambda x, y: gradc.stack([y, x], d), a, w)


def g_index(b):
    """gather / index_select / advanced indexing with an index made inside the function."""
    a = b.pick(lambda v: v.t.ndim >= 1 and v.t.shape[0] > 0)
    if a is None:
        return False
    t = b.env[a].t
    n = t.shape[0]
    idx = [int(i) for i in b.rng.integers(0, n, b.draw(st.integers(1, 4)))]
    form = b.draw(st.sampled_from(["gather", "index_select", "getitem"]))
    if form == "index_select":
        return b.add("index_select", f"{{0}}.index_select(0, gradc.tensor({idx}))",
                     lambda x: x.index_select(0, gradc.tensor(idx)), a)
    if form == "getitem":
        return b.add("getitem", f"{{0}}[gradc.tensor({idx})]", lambda x: x[gradc.tensor(idx)], a)
    index = b.rng.integers(0, n, (len(idx), *t.shape[1:])).tolist()
    return b.add("gather", f"{{0}}.gather(0, gradc.tensor({index}))", lambda x: x.gather(0, gradc.tensor(index)), a)


def g_sort(b):
    a = b.pick(lambda v: v.t.ndim >= 1)
    if a is None:
        return False
    d = _dim(b, b.env[a].t)
    return b.add("sort", f"{{0}}.sort({d}).values", lambda x: x.sort(d).values, a)


INPLACE = {  # name -> (text, fn(target, other)); other is a value of target's shape or a scalar
    "add_": ("{0}.add_({1})", lambda x, y: x.add_(y)),
    "sub_": ("{0}.sub_({1})", lambda x, y: x.sub_(y)),
    "mul_": ("{0}.mul_({1})", lambda x, y: x.mul_(y)),
    "iadd": ("{0}.__iadd__({1})", lambda x, y: x.__iadd__(y)),
    "copy_": ("{0}.copy_({1})", lambda x, y: x.copy_(y)),
    "clamp_": ("{0}.clamp_(-1, 1)", lambda x, y: x.clamp_(-1, 1)),
    "tanh_": ("{0}.tanh_()", lambda x, y: x.tanh_()),
    "relu_": ("{0}.relu_()", lambda x, y: x.relu_()),
    "neg_": ("{0}.neg_()", lambda x, y: x.neg_()),
    "fill_": ("{0}.fill_(0.25)", lambda x, y: x.fill_(0.25)),
    "zero_": ("{0}.zero_()", lambda x, y: x.zero_()),
    "masked_fill_": ("{0}.masked_fill_({0} > 0.5, -1.0)", lambda x, y: x.masked_fill_(x > 0.5, -1.0)),
}


def g_inplace(b):
    """An in-place op on an intermediate (or, without autograd, on an input or a view of
    one; with autograd, writing to those breaks the graph or raises in eager too)."""
    a = b.pick(lambda v: not (b.training and v.input_like))
    if a is None:
        return False
    name = b.draw(st.sampled_from(sorted(INPLACE)))
    text, fn = INPLACE[name]
    shape = tuple(b.env[a].t.shape)
    if "{1}" not in text:
        return b.add(name, text, lambda x: fn(x, None), a)
    other = b.partner(a)
    if isinstance(other, str):
        if not _broadcasts(shape, tuple(b.env[other].t.shape)):
            return False
        return b.add(name, text, fn, a, other)
    return b.add(name, text.replace("{1}", repr(other)), lambda x: fn(x, other), a)


def g_setitem(b):
    a = b.pick(lambda v: v.t.ndim >= 1 and not (b.training and v.input_like))
    if a is None:
        return False
    form = b.draw(st.sampled_from(["slice", "int", "index"]))
    n = b.env[a].t.shape[0]
    if form == "index" and n:
        rows = sorted({int(i) for i in b.rng.integers(0, n, 2)})
        key, text = (gradc.tensor(rows),), f"gradc.tensor({rows})"
    else:
        key = (slice(None, None, 2),) if form == "slice" else (Ellipsis, 0)
        text = _key_text(key)
    value = b.draw(st.sampled_from([0.5, -2.0]))

    def fn(x):
        x[key] = value
        return x

    return b.add("setitem", f"{{0}}.__setitem__(({text}), {value}) or {{0}}", fn, a)


GENERATORS: dict[str, tuple[set, Callable]] = {
    **{f"unary:{n}": (ops, g_unary(n)) for n, (_, _, ops) in UNARY.items()},
    **{f"binary:{n}": (ops, g_binary(n)) for n, (_, _, ops) in BINARY.items()},
    **{f"reduce:{m}": ({"sum"} if m in ("mean", "var", "std") else {m} if m != "logsumexp" else {"amax"},
                       g_reduce(m)) for m in ("sum", "mean", "amax", "amin", "prod", "var", "std", "logsumexp")},
    "softmax": ({"softmax"}, g_along("softmax")),
    "log_softmax": ({"log_softmax"}, g_along("log_softmax")),
    "cumsum": ({"cumsum"}, g_along("cumsum")),
    "max_dim": ({"argmax", "gather"}, g_along("max")),
    "min_dim": ({"argmin", "gather"}, g_along("min")),
    "argmax": ({"argmax"}, g_along("argmax")),
    "argmin": ({"argmin"}, g_along("argmin")),
    "matmul": ({"matmul"}, g_matmul),
    "einsum": ({"einsum"}, g_einsum),
    "transpose": ({"permute"}, g_transpose),
    "permute": ({"permute"}, g_permute),
    "slice": ({"basic_index", "strided_scatter"}, g_slice),  # strided_scatter: its backward
    "expand": ({"expand"}, g_expand),
    "reshape": ({"view"}, g_reshape),
    "unsqueeze": (set(), g_unsqueeze),
    "pick_view": (set(), g_pick_view),
    "flip": ({"flip"}, g_flip),
    "tril": ({"tril", "triu"}, g_tril),
    "cat": ({"cat"}, g_cat),
    "index": ({"gather", "index"}, g_index),
    "sort": ({"argsort"}, g_sort),
    "inplace": (set(), g_inplace),
    "setitem": ({"basic_index", "index_put"}, g_setitem),
}
# rough weights: the table's many pointwise ops should not crowd out views, reductions, in-place
KIND_WEIGHTS = {"unary": 3, "binary": 4, "reduce": 3, "structure": 5, "inplace": 2}


def _kind(name: str) -> str:
    if ":" in name:
        return name.split(":")[0]
    return "inplace" if name in ("inplace", "setitem") else "structure"


@st.composite
def programs(draw) -> Program:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    training = draw(st.booleans())
    dtype = np.float64 if draw(st.integers(0, 4)) == 0 else np.float32
    b = Builder(draw, rng, training, dtype)
    for _ in range(draw(st.integers(1, 2))):
        b.new_input(b.random_shape())
    by_kind: dict[str, list] = {}
    for name in sorted(GENERATORS):
        by_kind.setdefault(_kind(name), []).append(name)
    kinds = [k for k, w in KIND_WEIGHTS.items() for _ in range(w)]
    for _ in range(draw(st.integers(1, MAX_STEPS))):
        names = by_kind[draw(st.sampled_from(kinds))]
        GENERATORS[draw(st.sampled_from(names))][1](b)
    if b.training and not any(b.program.grad):
        b.program.grad[0] = True
    # an output aliasing an input is a documented graph break: rarely, so most examples compile
    floats = [n for n, v in b.env.items() if v.t.dtype.is_floating_point
              and (not v.input_like or draw(st.integers(0, 9)) == 0)] or ["x0"]
    extra = draw(st.lists(st.sampled_from(floats), max_size=2, unique=True))
    outputs = [n for n in [floats[-1], *extra] if n not in b.terminal] + b.terminal
    b.program.outputs = list(dict.fromkeys(outputs))
    b.program.weights_seed = draw(st.integers(0, 2**16))
    return b.program


# ----------------------------------------------------------------------------- running
@dataclass
class Outcome:
    outputs: list | None = None
    inputs: list | None = None  # the inputs after the call (in-place writes)
    grads: list | None = None
    error: BaseException | None = None


def _weights(program: Program, outputs: list) -> list:
    rng = np.random.default_rng(program.weights_seed)
    return [gradc.tensor(rng.standard_normal(tuple(o.shape))).to(o.dtype) if o.requires_grad else None
            for o in outputs]


def execute(program: Program, fn: Callable) -> Outcome:
    """Run `fn` (the program, eager or compiled) on fresh inputs; with autograd, backward
    through sum(w_i * out_i) with fixed random weights. Records the error if one is raised."""
    inputs = program.make_inputs()
    out = Outcome()
    try:
        with gradc.set_grad_enabled(program.training):
            outputs = list(fn(*inputs))
        out.outputs = [o.detach().numpy().copy() for o in outputs]
        if program.training:
            terms = [(o * w).sum().double() for o, w in zip(outputs, _weights(program, outputs)) if w is not None]
            if terms:
                sum(terms[1:], terms[0]).backward()
            out.grads = [None if t.grad is None else t.grad.numpy().copy() for t in inputs]
        out.inputs = [t.detach().numpy().copy() for t in inputs]
    except (RuntimeError, IndexError, ValueError) as e:
        out.error = e
    return out


def tolerance(dtype, expected: np.ndarray) -> dict:
    """float32: rtol 1e-4 and an atol scaled to the value's magnitude (a random program
    chains several float32 ops, each within a few ulps of numpy's: test_compiler_ops's
    single-op 1e-5/1e-6 is too tight once errors compound, e.g. through a cancellation);
    float64: 1e-10."""
    scale = float(np.abs(expected[np.isfinite(expected)]).max(initial=1.0)) if expected.size else 1.0
    if np.dtype(dtype) == np.float64:
        return {"rtol": 1e-10, "atol": 1e-12 * scale}
    return {"rtol": 1e-4, "atol": 1e-5 * scale}


def mismatches(eager: Outcome, compiled: Outcome) -> list[str]:
    if eager.error is not None or compiled.error is not None:
        if type(eager.error) is not type(compiled.error):
            return [f"eager raised {eager.error!r}, compiled raised {compiled.error!r}"]
        return []
    problems = []
    pairs = [(f"output {i}", a, e) for i, (a, e) in enumerate(zip(compiled.outputs, eager.outputs))]
    pairs += [(f"input x{i} after the call", a, e) for i, (a, e) in enumerate(zip(compiled.inputs, eager.inputs))]
    if eager.grads is not None:
        for i, (a, e) in enumerate(zip(compiled.grads, eager.grads)):
            if (a is None) != (e is None):
                problems.append(f"grad of x{i}: {'None' if a is None else 'set'} compiled, "
                                f"{'None' if e is None else 'set'} eager")
            elif a is not None:
                pairs.append((f"grad of x{i}", a, e))
    for what, a, e in pairs:
        if a.shape != e.shape or a.dtype != e.dtype:
            problems.append(f"{what}: {a.dtype}{a.shape} compiled, {e.dtype}{e.shape} eager")
        elif e.dtype.kind != "f":
            if not np.array_equal(a, e):
                problems.append(f"{what}: {a.tolist()} compiled, {e.tolist()} eager")
        elif not np.allclose(a, e, equal_nan=True, **tolerance(e.dtype, e)):
            problems.append(f"{what}: max abs diff {np.nanmax(np.abs(a - e))}\n  compiled {a.tolist()}\n"
                            f"  eager    {e.tolist()}")
    return problems


def break_reasons(compiled) -> list[str]:
    return [text for text, _ in compiled.history.events if text.startswith("graph break")]


def check(program: Program) -> str:
    """Compare the program compiled with eager; returns how it ran (for the statistics)."""
    note(program.source())
    eager = execute(program, program.run)
    compiler.reset()
    compiled = gradc.compile(program.run)
    problems = []
    for call in range(2):
        result = execute(program, compiled)
        problems += [f"call {call + 1}: {p}" for p in mismatches(eager, result)]
    breaks = break_reasons(compiled)
    unexpected = [r for r in breaks if not any(ok in r for ok in ALLOWED_BREAKS)]
    counters = dict(compiler.counters)
    if unexpected:
        problems.append(f"unexpected graph break: {unexpected}")
    elif not breaks and eager.error is None and counters["fallbacks"]:
        problems.append(f"fell back to eager without a graph break: {compiled.history.events}")
    elif not breaks and eager.error is None and not counters["compiles"] + counters["disk_hits"]:
        problems.append(f"nothing was compiled: {counters}")
    assert not problems, "compiled != eager\n" + "\n".join(problems)
    if eager.error is not None:
        return f"eager raised {type(eager.error).__name__}"
    return re.sub(r" \(.*", "", breaks[0]) if breaks else "compiled"


# ----------------------------------------------------------------------------- tests
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])

# the random programs compute nan/inf nowhere, but eager's float32 kernels may still warn on
# intermediate overflow inside a fused expression (e.g. exp of a large value times 0)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@FUZZ
@given(program=programs())
def test_compiled_random_programs_match_eager(program):
    event(check(program))


def test_generators_cover_the_compiled_ops():
    """Every op the compiler lowers (pointwise C expression, reduction, view, extern,
    template) or deliberately breaks on is reached by a generator here, or is in EXCLUDED."""
    decided = {n for n, op in gradc.OPS.items() if op.lowering is not None}
    decided |= set(REDUCTIONS) | set(VIEWS) | set(EXTERNS) | set(TEMPLATES)
    covered = set().union(*(ops for ops, _ in GENERATORS.values()))
    missing = sorted(decided - covered - set(EXCLUDED))
    assert not missing, f"no fuzz generator in tests/test_fuzz.py reaches {missing}: add one, or list it in EXCLUDED"
    assert not set(EXCLUDED) & covered, "an EXCLUDED op is covered after all: drop it from EXCLUDED"
    assert covered <= set(gradc.OPS), f"generators name unknown ops: {sorted(covered - set(gradc.OPS))}"


# ----------------------------------------------------------------------------- regressions
def test_output_equal_to_a_written_input_compiles():
    """Found by the fuzzer: the write-back of x0.fill_ and an output computing the same fill
    made simplify loop forever (CSE turned one output into a copy of the other, constant
    folding turned the copy back into a fill)."""
    def program(x0):
        x0.fill_(0.25)
        return x0.double().to(x0.dtype)

    expected = np.full(5, 0.25, np.float32)
    compiled = gradc.compile(program, fullgraph=True)
    for _ in range(2):
        x = gradc.tensor(np.arange(5, dtype=np.float32))
        np.testing.assert_array_equal(compiled(x).numpy(), expected)
        np.testing.assert_array_equal(x.numpy(), expected)
    assert compiler.counters["compiles"] == 1 and compiler.counters["memory_hits"] == 1


def test_an_output_returned_twice_gets_its_gradient(torch):
    """Found by the fuzzer (compiled gradient None): the autograd engine walked a root given
    twice twice, counted its successors' dependencies twice and never ran them; eager
    `autograd.grad([v, v], ...)` returned None as well, and the compiler derives its
    backward through it."""
    def program(x):
        v = x.abs()
        return v, v

    w = [np.array([1.0, 2.0]), np.array([-3.0, 0.5])]
    tx = torch.tensor([1.0, -2.0], requires_grad=True)
    expected = torch.autograd.grad(list(program(tx)), [tx], [torch.tensor(a) for a in w])[0].numpy()
    x = gradc.tensor([1.0, -2.0], requires_grad=True)
    eager = gradc.autograd.grad(list(program(x)), [x], [gradc.tensor(a) for a in w])[0]
    np.testing.assert_allclose(eager.numpy(), expected)
    compiled = gradc.compile(program, fullgraph=True)
    for _ in range(2):
        x = gradc.tensor([1.0, -2.0], requires_grad=True)
        a, b = compiled(x)
        ((a * gradc.tensor(w[0])).sum() + (b * gradc.tensor(w[1])).sum()).backward()
        np.testing.assert_allclose(x.grad.numpy(), expected)
    assert compiler.counters["compiles"] == 2 and compiler.counters["memory_hits"] == 1
