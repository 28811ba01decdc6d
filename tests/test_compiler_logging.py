"""GRADC_LOG categories, the one-line recompile reasons and the per-function history
behind `gradc explain SCRIPT.py`."""
import logging
import os
import subprocess
import sys
import textwrap
import weakref

import pytest

import gradc
from gradc import compiler
from gradc.compiler import history
from gradc.compiler.guards import closest, describe_change, guard_key, stale_guard, tensor_meta

HERE = os.path.basename(__file__)


def scale(x, y):
    return (x * y + 1).relu()


def branchy(x, flag):
    y = x + 1
    if flag and y.sum().item() > -1e9:  # data-dependent Python: breaks the graph
        y.mul_(2)
    return y


def _lines(caplog, category: str = "") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(f"gradc.compiler.{category}")]


def _where(fn) -> str:
    return f"{fn.__qualname__} ({HERE}:{fn.__code__.co_firstlineno})"


@pytest.mark.parametrize(("first", "second", "reason"), [
    ((gradc.randn(4, 8), gradc.randn(4, 8)), (gradc.randn(5, 8), gradc.randn(5, 8)),
     "argument 0 shape changed from [4, 8] to [5, 8]"),
    ((gradc.randn(4, 8), gradc.randn(4, 8)), (gradc.randn(4, 8), gradc.randn(4, 8).double()),
     "argument 1 dtype changed from float32 to float64"),
    ((gradc.randn(3), gradc.randn(3)), (gradc.randn(3, requires_grad=True), gradc.randn(3)),
     "argument 0 requires_grad changed from False to True"),
], ids=["shape", "dtype", "requires_grad"])
def test_a_recompile_logs_one_line_with_the_failing_guard(monkeypatch, caplog, first, second, reason):
    monkeypatch.setenv("GRADC_LOG", "recompiles")
    f = gradc.compile(scale)
    f(*first)
    assert _lines(caplog) == []
    f(*second)
    f(*second)  # served from memory: nothing more
    assert _lines(caplog) == [f"gradc recompile: {_where(scale)}: {reason}"]
    assert compiler.counters["recompiles"] == 1


def test_a_grad_mode_recompile_names_it(monkeypatch, caplog):
    monkeypatch.setenv("GRADC_LOG", "recompiles")
    f = gradc.compile(scale)
    x, y = gradc.randn(3, requires_grad=True), gradc.randn(3)
    f(x, y)
    with gradc.no_grad():
        f(x, y)
    assert _lines(caplog) == [f"gradc recompile: {_where(scale)}: grad mode changed from True to False"]


def test_graph_breaks_are_logged_with_the_users_line(monkeypatch, caplog):
    monkeypatch.setenv("GRADC_LOG", "graph_breaks")
    f = gradc.compile(branchy)
    f(gradc.randn(3), True)
    f(gradc.randn(3), True)  # the eager entry's fallbacks are another category
    line = branchy.__code__.co_firstlineno + 2
    code = "if flag and y.sum().item() > -1e9:  # data-dependent Python: breaks the graph"
    assert _lines(caplog) == [f"gradc graph break: {_where(branchy)}: Tensor.item() reads tensor data "
                              f"(data-dependent Python) (at {HERE}:{line}: {code})"]


@pytest.mark.parametrize("value", [None, "0", ""])
def test_nothing_is_logged_without_gradc_log(monkeypatch, caplog, value):
    if value is not None:
        monkeypatch.setenv("GRADC_LOG", value)
    caplog.set_level(logging.DEBUG)
    f = gradc.compile(branchy)
    f(gradc.randn(3), False)
    f(gradc.randn(4), True)
    f(gradc.randn(4), True)
    f(gradc.randn(4), [True])
    assert [r for r in caplog.records if r.name.startswith("gradc")] == []


def test_output_code_logs_the_source_of_each_graph(monkeypatch, caplog):
    monkeypatch.setenv("GRADC_LOG", "output_code")
    f = gradc.compile(scale)
    f(gradc.randn(3, requires_grad=True), gradc.randn(3))
    forward, backward = _lines(caplog)
    head, source = forward.split("\n", 1)
    assert head == f"gradc output_code: {_where(scale)}: forward graph (c):"
    assert backward.startswith(f"gradc output_code: {_where(scale)}: backward graph (c):\n")
    (entry,) = next(iter(f.entries.values()))
    assert source in entry.source and "gradc_segment_0" in source


def test_all_categories_and_unknown_names(monkeypatch, caplog):
    monkeypatch.setenv("GRADC_LOG", "1")
    f = gradc.compile(scale)
    x = gradc.randn(2)
    f(x, x)
    f(x, x)
    messages = _lines(caplog)
    assert f"gradc compile: {scale.__qualname__}" in messages
    assert f"gradc memory cache hit: {scale.__qualname__}" in messages
    assert any(m.startswith("gradc output_code:") for m in messages)
    monkeypatch.setenv("GRADC_LOG", "fallbacks,nonsense")
    g = gradc.compile(branchy)
    with pytest.warns(UserWarning, match="unknown categories nonsense"):
        g(x, [])
    assert _lines(caplog, "fallbacks") == [
        f"gradc fallback: {_where(branchy)}: argument of type list is not guarded yet"]


def _run(code: str, log: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRADC_LOG": log}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120, check=True)


def test_logs_reach_stderr_once_with_or_without_a_logging_setup():
    call = """
        import gradc
        f = gradc.compile(lambda x: x)
        f([1])
    """
    line = "gradc fallback: <lambda> (<string>:3): argument of type list is not guarded yet"
    assert _run(call, "fallbacks").stderr.splitlines() == [line]
    configured = "import logging, sys\nlogging.basicConfig(stream=sys.stderr, format='%(name)s: %(message)s')\n"
    assert _run(configured + textwrap.dedent(call), "fallbacks").stderr.splitlines() == [
        "gradc.compiler.fallbacks: " + line.replace("<string>:3", "<string>:5")]
    assert _run(call, "").stderr == ""


def test_describe_change_names_the_first_differing_guard():
    x, y = gradc.randn(2, 3), gradc.randn(3, 2)

    def key(*args, **kwargs):
        return guard_key(args, kwargs)[0]

    assert describe_change(key(x, 1), key(x, 2)) == "argument 1 changed from 1 to 2"
    assert describe_change(key(x, 1), key(x, 1.0)) == "argument 1 changed from int to float"
    assert describe_change(key(x, None), key(x, x)) == "argument 1 changed from None to a tensor"
    assert describe_change(key(x, y), key(x, x)) == "argument 1 is now the same tensor as argument 0"
    assert describe_change(key(x, x), key(x, y)) == "argument 1 is no longer the same tensor as argument 0"
    assert describe_change(key(x, y.t()), key(x, y.t().contiguous())) == (
        "argument 1 strides changed from [1, 2] to [3, 1]")
    assert describe_change(key(x), key(x, y)) == "number of arguments changed from 1 to 2"
    assert describe_change(key(x, a=1), key(x, b=1)) == "keyword arguments changed from (a) to (b)"
    assert describe_change(key(x, a=1), key(x, a="s")) == "keyword argument 'a' changed from int to str"
    old = [key(x, 1), key(gradc.randn(4, 3), 1)]
    new = key(gradc.randn(4, 3).double(), 1)
    assert closest(old, new) == old[1]  # only the dtype differs, not the shape too
    assert describe_change(closest(old, new), new) == "argument 0 dtype changed from float32 to float64"


def test_stale_guards_name_the_module_or_parameter():
    lin = gradc.nn.Linear(3, 2)
    externals = [(0, weakref.ref(t), tensor_meta(t)) for t in (lin.weight, lin.bias)]
    modules = [(weakref.ref(lin), True)]
    lin.eval()
    assert stale_guard(externals, modules) == "module Linear changed from train to eval mode"
    lin.train()
    lin.bias.requires_grad_(False)
    assert stale_guard(externals, modules) == "parameter 'bias' requires_grad changed from True to False"
    assert stale_guard(externals, [], owner=lin) == "parameter 'bias' requires_grad changed from True to False"
    assert stale_guard(externals, []) == "a captured tensor requires_grad changed from True to False"


def test_history_report_lists_compiles_recompiles_breaks_and_fallbacks(monkeypatch):
    assert history.report() == "no compiled functions were called"
    monkeypatch.setattr(compiler.config, "recompile_limit", 2)
    f = gradc.compile(branchy)
    f(gradc.randn(3), False)
    f(gradc.randn(3), True)
    f(gradc.randn(3), True)
    with pytest.warns(UserWarning, match="recompile limit"):
        f(gradc.randn(5), False)
    line = branchy.__code__.co_firstlineno + 2
    lines = history.report().splitlines()
    assert lines[0] == f"{_where(branchy)}: 2 entries"
    assert lines[1].startswith("  1. compiled inference graph: ") and "1 C kernel" in lines[1]
    assert lines[2:] == [
        "  2. recompile: argument 1 changed from False to True",
        f"  3. graph break: Tensor.item() reads tensor data (data-dependent Python) (at {HERE}:{line}: "
        "if flag and y.sum().item() > -1e9:  # data-dependent Python: breaks the graph)",
        "  4. fallback: graph break: Tensor.item() reads tensor data (data-dependent Python) (x2)",
        f"  5. fallback: recompile limit (2) reached for {branchy.__qualname__}",
    ]
    compiler.reset()
    assert history.report() == "no compiled functions were called"


def test_history_is_bounded_and_outlives_its_function(monkeypatch):
    monkeypatch.setattr(history, "MAX_EVENTS", 2)
    f = gradc.compile(branchy)
    for flag in ([], {}, set(), []):
        f(gradc.randn(2), flag)
    del f
    assert history.report().splitlines() == [
        f"{_where(branchy)}: no longer alive",
        "  1. fallback: argument of type list is not guarded yet",
        "  2. fallback: argument of type dict is not guarded yet",
        "  ... 2 more events not kept",
    ]
