"""Per-op compiler sweep: every op of the table has a compile decision, and every sample of
op_db.py compiles (forward, and backward for the differentiable float32 samples) to the
same values as eager, or is listed below as an expected graph break.

The cases: each OpInfo sample in each of its dtypes, forward only, with grad mode off (the
inference path); plus, for differentiable samples, float32 with the floating inputs
requiring grad (the training path: compiled forward and compiled backward). Samples are
compiled in groups, one compiled function returning the outputs of several samples, since
the C build dominates the cost; every comparison still names its sample, and a group that
breaks or falls back is bisected to the samples responsible.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import assert_close
from op_db import F_INT, OP_DB, OpInfo, arr

import gradc
from gradc import compiler
from gradc.compiler.capture import EXTERNS, GRAPH_BREAKS, REDUCTIONS, TEMPLATES, VIEWS
from gradc.ops import dispatch

# eager's own backward on the NaN samples (maximum/nan, ...) multiplies NaNs, as PyTorch does
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

# ---------------------------------------------------------------- expected graph breaks
# Sample key -> a substring of the GraphBreakError message. Keys: "name" (every case of the
# sample), "name[int]" / "name[bool]" (its integer / bool forward cases), "name[grad]" (its
# float32 training case only). test_expected_breaks_raise checks each listed case still
# breaks with that reason, so the list cannot go stale; every case not listed must compile.
_ARGSORT = "argsort is data-dependent"
EXPECTED_BREAKS: dict[str, str] = {
    # sort and topk order through argsort, which is in GRAPH_BREAKS (data-dependent ordering)
    "sort/last": _ARGSORT, "sort/dim0_descending": _ARGSORT, "sort/method": _ARGSORT, "sort/ties_stable": _ARGSORT,
    "sort/ties_stable_descending": _ARGSORT, "sort/0d": _ARGSORT, "sort/transposed": _ARGSORT,
    "argsort": _ARGSORT, "argsort/dim0_descending": _ARGSORT,
    "topk": _ARGSORT, "topk/smallest_dim0": _ARGSORT, "topk/method_k0": _ARGSORT, "topk/full": _ARGSORT,
    "topk/0d": _ARGSORT,
    # integer pow: numpy raises on negative exponents and wraps on overflow; its C lowering is a
    # float expression, so integer operands break rather than compute in the wrong type
    "pow/scalar_2[int]": "op 'pow' on int", "pow/scalar_3[int]": "op 'pow' on int",
    "pow/scalar_0[int]": "op 'pow' on int", "pow/tensor_int[int]": "op 'pow' on int",
    "pow/int_scalar_base[int]": "op 'pow' on int",
}

# Case id (see Case.id) -> description of a compiled result that differs from eager. The
# sweep asserts each listed case still differs, so an entry must go once the bug is fixed.
KNOWN_MISMATCHES: dict[str, str] = {}

# Extern ops op_db leaves to other test files (COVERED_ELSEWHERE: F.pad, F.unfold/F.fold,
# the losses' class_index): samples for this sweep only, written like op_db's (m = gradc).
_F = lambda m: m.nn.functional  # noqa: E731
EXTRA_SAMPLES = [
    OpInfo("constant_pad/F.pad", "constant_pad", lambda m, x: _F(m).pad(x, (1, 2, 0, 1), value=0.5),
           lambda r, d: (arr(r, (2, 3, 4), d),), torch=False, dtypes=F_INT),
    OpInfo("unfold/F.unfold", "unfold", lambda m, x: _F(m).unfold(x, 2, padding=1, stride=(1, 2)),
           lambda r, d: (arr(r, (2, 3, 4, 5), d),), torch=False),
    OpInfo("fold/F.fold", "fold", lambda m, x: _F(m).fold(x, (4, 5), 2), lambda r, d: (arr(r, (2, 12, 12), d),),
           torch=False),
    OpInfo("conv2d/F.conv2d", "conv2d", lambda m, x, w, b: _F(m).conv2d(x, w, b, padding=1),
           lambda r, d: (arr(r, (2, 3, 5, 5), d), arr(r, (4, 3, 3, 3), d), arr(r, (4,), d)), torch=False,
           rtol=1e-4),
    OpInfo("class_index/F.cross_entropy", "class_index",
           lambda m, x, t: _F(m).cross_entropy(x, t, ignore_index=1, reduction="none"),
           lambda r, d: (arr(r, (5, 4), d), np.array([0, 1, 3, 2, 1])), torch=False),
]

# Lowered ops that no op_db sample reaches through a compiled case, and the compiler test
# that compiles them (forward and backward) against eager instead.
# (none today: EXTRA_SAMPLES reaches the ones op_db leaves out)
COVERED_BY_OTHER_TESTS: dict[str, str] = {}

GROUP_SIZE = 48  # cases per compiled function: one C build per group (two with a backward)


# ---------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    entry: OpInfo
    dtype: str
    grad: bool  # float32 with the floating inputs requiring grad: compiled forward and backward

    @property
    def id(self) -> str:
        return f"{self.entry.name}[{self.dtype}{'-grad' if self.grad else ''}]"

    def keys(self) -> list[str]:
        """The EXPECTED_BREAKS keys that would cover this case."""
        name, kind = self.entry.name, np.dtype(self.dtype).kind
        keys = [name]
        if kind in "iu":
            keys.append(f"{name}[int]")
        if kind == "b":
            keys.append(f"{name}[bool]")
        if self.grad:
            keys.append(f"{name}[grad]")
        return keys

    def expected_break(self) -> str | None:
        return next((EXPECTED_BREAKS[k] for k in self.keys() if k in EXPECTED_BREAKS), None)


def _all_cases() -> list[Case]:
    cases = []
    for e in OP_DB + EXTRA_SAMPLES:
        cases += [Case(e, dt, False) for dt in e.dtypes]
        if e.differentiable and "float32" in e.dtypes:
            cases.append(Case(e, "float32", True))
    return cases


CASES = _all_cases()
BREAKING = [c for c in CASES if c.expected_break() is not None]
COMPILING = [c for c in CASES if c.expected_break() is None]


def case_groups() -> list:
    by_kind: dict[tuple, list] = {}
    for c in COMPILING:
        by_kind.setdefault((c.dtype, c.grad), []).append(c)
    params = []
    for (dtype, grad), cases in by_kind.items():
        for i in range(0, len(cases), GROUP_SIZE):
            chunk = cases[i:i + GROUP_SIZE]
            gid = f"{dtype}{'-grad' if grad else ''}-{i // GROUP_SIZE:02d}"
            params.append(pytest.param(chunk, id=gid))
    return params


def _raw_inputs(case: Case) -> tuple:
    rng = np.random.default_rng(zlib.crc32(case.entry.name.encode()))
    return case.entry.make(rng, np.dtype(case.dtype))


def _tensors(raw: tuple, grad: bool) -> list:
    """The sample's inputs with fresh tensors for the arrays (floating ones requiring grad
    when `grad`); Python scalars stay as they are."""
    out = []
    for a in raw:
        if isinstance(a, np.ndarray):
            t = gradc.tensor(a.copy())
            if grad and t.dtype.is_floating_point:
                t.requires_grad_(True)
            a = t
        out.append(a)
    return out


def _flat(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _weights(case: Case, outs: list) -> list:
    """A fixed random cotangent per floating output that requires grad (None elsewhere)."""
    rng = np.random.default_rng(zlib.crc32(case.entry.name.encode()) + 1)
    return [gradc.tensor(rng.standard_normal(tuple(o.shape))).to(o.dtype) if o.requires_grad else None
            for o in outs]


def _loss(outs: list, weights: list):
    terms = [(o * w).sum().to(gradc.float64) for o, w in zip(outs, weights) if w is not None]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


class _Prepared:
    """One case's inputs for the compiled side and the eager side, and eager's results."""

    def __init__(self, case: Case):
        self.case = case
        raw = _raw_inputs(case)
        self.args = _tensors(raw, case.grad)
        self.eager_args = _tensors(raw, case.grad)
        with gradc.set_grad_enabled(case.grad):
            self.eager = _flat(case.entry.fn(gradc, *self.eager_args))
        self.weights = _weights(case, self.eager) if case.grad else []

    @property
    def tensors(self) -> list:
        return [a for a in self.args if isinstance(a, gradc.Tensor)]

    def call(self, tensors):
        it = iter(tensors)
        return _flat(self.case.entry.fn(gradc, *[next(it) if isinstance(a, gradc.Tensor) else a for a in self.args]))


def group_function(prepared: list):
    """(one function returning every case's outputs, its flat tensor inputs): a group of
    cases compiles as one graph (the CUDA render and GPU tests reuse it)."""
    counts = [len(p.tensors) for p in prepared]

    def sweep(*tensors):
        outs, at = [], 0
        for p, n in zip(prepared, counts):
            outs += p.call(tensors[at:at + n])
            at += n
        return tuple(outs)

    return sweep, [t for p in prepared for t in p.tensors]


def _compile_group(prepared: list, grad: bool, backend: str = "auto"):
    """Compile one function returning every case's outputs (fullgraph) and call it once."""
    sweep, flat_inputs = group_function(prepared)
    compiled = gradc.compile(sweep, fullgraph=True, backend=backend)
    with gradc.set_grad_enabled(grad):
        result = compiled(*flat_inputs)
    outs, at = [], 0
    for p in prepared:
        outs.append(list(result[at:at + len(p.eager)]))
        at += len(p.eager)
    assert at == len(result), "the compiled function returned a different number of outputs"
    return outs


def _culprits(cases: list, backend: str) -> str:
    """Compile each case of a failed group alone: which ones break or fall back, and why."""
    lines = []
    for case in cases:
        compiler.reset()
        p = _Prepared(case)
        try:
            _compile_group([p], case.grad, backend)
        except gradc.GraphBreakError as e:
            lines.append(f"  {case.id}: {e} (expected to compile; if this break is intended, add it to "
                         "EXPECTED_BREAKS with its reason)")
            continue
        if compiler.counters["fallbacks"] or not (compiler.counters["compiles"] or compiler.counters["disk_hits"]):
            lines.append(f"  {case.id}: fell back to eager ({dict(compiler.counters)})")
    return "\n".join(lines) or "  (no single case fails alone: the group's combination does)"


def _mismatch(actual, expected, entry: OpInfo) -> str | None:
    """Why `actual` (compiled) differs from `expected` (eager), or None: exact for integer
    and bool results, within max(the sample's tolerance, rtol 1e-5 / atol 1e-6) for floats
    (the compiled float32 transcendental functions may differ from numpy's by a few ulps)."""
    try:
        if not expected.dtype.is_floating_point:
            assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
            a, e = actual.detach().numpy(), expected.detach().numpy()
            assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
            np.testing.assert_array_equal(a, e)
        else:
            assert_close(actual, expected, rtol=max(entry.rtol, 1e-5), atol=max(entry.atol, 1e-6))
    except AssertionError as err:
        return str(err).strip()
    return None


def _compare(p: _Prepared, outs: list) -> list[str]:
    problems = []
    assert len(outs) == len(p.eager)
    for i, (a, e) in enumerate(zip(outs, p.eager)):
        assert isinstance(a, gradc.Tensor), f"{p.case.id}: output {i} is a {type(a).__name__}"
        why = _mismatch(a, e, p.case.entry)
        if why:
            problems.append(f"output {i}: {why}")
        if p.case.grad and a.requires_grad != e.requires_grad:
            problems.append(f"output {i}: requires_grad {a.requires_grad} != eager {e.requires_grad}")
    return problems


def _compare_grads(p: _Prepared) -> list[str]:
    problems, compared = [], 0
    for i, (a, e) in enumerate(zip(p.args, p.eager_args)):
        if not isinstance(a, gradc.Tensor) or not a.requires_grad:
            continue
        if (a.grad is None) != (e.grad is None):
            problems.append(f"input {i}: .grad is {a.grad} compiled, {e.grad} eager")
            continue
        if a.grad is not None:
            compared += 1
            why = _mismatch(a.grad, e.grad, p.case.entry)
            if why:
                problems.append(f"grad of input {i}: {why}")
    if not compared:
        problems.append("no input received a gradient")
    return problems


# ---------------------------------------------------------------- 1. the op table
def _categories(name: str, op) -> list[str]:
    cats = []
    if op.lowering is not None:
        cats.append("lowered pointwise")
    if name in REDUCTIONS:
        cats.append("REDUCTIONS")
    if name in VIEWS:
        cats.append("VIEWS")
    if name in EXTERNS:
        cats.append("EXTERNS")
    if name in TEMPLATES:
        cats.append("TEMPLATES")
    if name in GRAPH_BREAKS:
        cats.append("GRAPH_BREAKS")
    return cats


def test_every_op_has_exactly_one_compile_decision():
    """Each op of gradc.OPS is lowered (a pointwise C expression, a reduction, a compiled
    view), run as an extern step, or deliberately a graph break: exactly one of them."""
    problems = []
    for name, op in gradc.OPS.items():
        cats = _categories(name, op)
        if not cats:
            problems.append(f"{name!r} ({op.kind}) has no compile decision: give it a C lowering, add it to "
                            "REDUCTIONS, VIEWS, EXTERNS or TEMPLATES, or to GRAPH_BREAKS with a reason")
        elif len(cats) > 1:
            problems.append(f"{name!r} is in several categories: {cats}")
        elif cats == ["lowered pointwise"] and op.kind != "pointwise":
            problems.append(f"{name!r} has a C lowering but is a {op.kind} op")
        elif cats == ["REDUCTIONS"] and op.kind != "reduction":
            problems.append(f"{name!r} is in REDUCTIONS but is a {op.kind} op")
        elif cats == ["VIEWS"] and op.kind != "view":
            problems.append(f"{name!r} is in VIEWS but is a {op.kind} op")
    for table, names in (("REDUCTIONS", REDUCTIONS), ("VIEWS", VIEWS), ("EXTERNS", EXTERNS),
                         ("TEMPLATES", TEMPLATES), ("GRAPH_BREAKS", GRAPH_BREAKS)):
        problems += [f"{table} names {n!r}, which is not in gradc.OPS" for n in names if n not in gradc.OPS]
    assert all(isinstance(reason, str) and reason for reason in GRAPH_BREAKS.values())
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- 2. the sweep
def test_sweep_lists_are_consistent():
    """EXPECTED_BREAKS, KNOWN_MISMATCHES and COVERED_BY_OTHER_TESTS name real samples, cases and ops."""
    all_keys = {k for c in CASES for k in c.keys()}
    stale = [k for k in EXPECTED_BREAKS if k not in all_keys]
    assert not stale, f"EXPECTED_BREAKS keys that match no case of op_db: {stale}"
    ids = {c.id for c in CASES}
    assert not [k for k in KNOWN_MISMATCHES if k not in ids], "KNOWN_MISMATCHES names unknown cases"
    assert not [k for k in KNOWN_MISMATCHES if k not in {c.id for c in COMPILING}], \
        "KNOWN_MISMATCHES names a case that is also expected to break"
    assert len(ids) == len(CASES)
    assert COMPILING and BREAKING


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BREAKING])
def test_expected_breaks_raise(case):
    """Each expected break still breaks, for the listed reason (no C is built: the break is
    found while capturing/lowering)."""
    p = _Prepared(case)
    reason = case.expected_break()
    try:
        _compile_group([p], case.grad)
    except gradc.GraphBreakError as e:
        assert reason in str(e), f"{case.id} breaks for another reason than {reason!r}: {e}"
    else:
        pytest.fail(f"{case.id} compiles now: remove its entry from EXPECTED_BREAKS (expected {reason!r})")
    assert compiler.counters["compiles"] == 0 and compiler.counters["graph_breaks"] == 1


@pytest.mark.parametrize("cases", case_groups())
def test_compiled_samples_match_eager(cases):
    """A group of samples compiled together (fullgraph): outputs match eager, and for the
    training groups the compiled backward gives every input the gradient eager gives."""
    check_group(cases)


def check_group(cases: list, backend: str = "auto") -> None:
    """Compile and run a group of samples with `backend`, compare with eager (the CUDA
    emulation tests run the same check through the CUDA kernels)."""
    grad = cases[0].grad
    prepared = [_Prepared(c) for c in cases]
    broken = None
    try:
        outs = _compile_group(prepared, grad, backend)
    except gradc.GraphBreakError as e:
        broken = f"graph break in a group of samples expected to compile: {e}"
    if broken is None and (compiler.counters["fallbacks"] or not compiler.counters["compiles"]):
        broken = f"the group did not run compiled code ({dict(compiler.counters)})"
    if broken is not None:
        pytest.fail(f"{broken}\n{_culprits(cases, backend)}")
    if grad:
        for p, o in zip(prepared, outs):
            assert any(x.requires_grad for x in o), f"{p.case.id}: no compiled output requires grad"
            assert all(type(x.grad_fn).__name__.startswith("Compiled_") for x in o if x.requires_grad), \
                f"{p.case.id}: a compiled output is not attached to the compiled backward"
        _loss([x for o in outs for x in o], [w for p in prepared for w in p.weights]).backward()
        _loss([x for p in prepared for x in p.eager], [w for p in prepared for w in p.weights]).backward()
    failures = []
    for p, o in zip(prepared, outs):
        problems = _compare(p, o) + (_compare_grads(p) if grad else [])
        known = KNOWN_MISMATCHES.get(p.case.id)
        if known is not None and not problems:
            failures.append(f"{p.case.id}: now matches eager, remove it from KNOWN_MISMATCHES ({known})")
        elif known is None and problems:
            failures.append(f"{p.case.id}: compiled != eager\n    " + "\n    ".join(problems))
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- 3. coverage of the lowered ops
class _OpRecorder:
    """Stands in for the compiler's dispatch hook during an eager run: notes op names."""

    def __init__(self):
        self.ops: set[str] = set()

    def __call__(self, op, args, attrs, outs) -> None:
        self.ops.add(op.name)

    def __getattr__(self, name):  # factory hooks (constant, arange, ...): nothing to note
        return lambda *args, **kwargs: None


def _ops_reached(case: Case) -> set[str]:
    """The ops one case dispatches: its forward, and for training cases its backward."""
    recorder, previous = _OpRecorder(), dispatch.tracer
    dispatch.tracer = recorder
    try:
        p = _Prepared(case)
        if case.grad:
            _loss(p.eager, p.weights).backward()
    finally:
        dispatch.tracer = previous
    return recorder.ops


def test_every_lowered_op_is_compiled_by_the_sweep():
    """Every op with a lowering (pointwise C expression, reduction, view, extern) is reached by
    a case of the sweep that compiles, or is listed with the compiler test that covers it."""
    lowered = {n for n, op in gradc.OPS.items() if op.lowering is not None}
    lowered |= set(REDUCTIONS) | set(VIEWS) | set(EXTERNS) | set(TEMPLATES)
    reached = set().union(*(_ops_reached(c) for c in COMPILING))
    missing = sorted(lowered - reached - set(COVERED_BY_OTHER_TESTS))
    assert not missing, (f"lowered ops that no compiled sample of op_db reaches: {missing}; add a sample to "
                         "tests/op_db.py or list the compiler test covering them in COVERED_BY_OTHER_TESTS")
    stale = sorted(n for n in COVERED_BY_OTHER_TESTS if n in reached or n not in lowered)
    assert not stale, f"COVERED_BY_OTHER_TESTS lists ops the sweep already compiles, or not lowered: {stale}"
