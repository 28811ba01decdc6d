"""mode="check" against planted bugs: a wrong C lowering (gradc.compiler.testing) must be
caught, named (op, source line, shape, dtype, how far off) and written out as a standalone
reproducer; without a plant nothing fails and nothing is written."""
import inspect
import math
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc import compiler
from gradc.compiler.check import _literal
from gradc.compiler.testing import planted_lowering


def pointwise_chain(x):
    return (x * 2 + 1).tanh().sum()


def clamped(x):
    return gradc.clamp(x * 3, min=-0.5).sum()


def tanh_loss(t):
    return gradc.tanh(t).sum()


CHAIN_LINE = inspect.getsourcelines(pointwise_chain)[1] + 1
CLAMP_LINE = inspect.getsourcelines(clamped)[1] + 1


def _reproducer(message: str) -> Path:
    """The repro.py an error message names, checked to lie under GRADC_CHECK_DIR."""
    match = re.search(r"reproducer: (\S+repro\.py)", message)
    assert match, message
    path = Path(match.group(1))
    assert path.is_file() and (path.parent / "operands.safetensors").is_file()
    assert path.parent.parent == Path(os.environ["GRADC_CHECK_DIR"]).resolve()
    return path


def _computes(kernels: list, function: str) -> bool:
    """Whether a kernel assigns a value computed by C `function` (not merely quotes it: the
    kernels' comments show the user's source lines)."""
    return any(re.search(rf"= \(float\){function}\(", k.source) for k in kernels)


def _run_main(path: Path) -> int:
    """The reproducer's `main()`, run in this process (so a plant active here applies)."""
    return runpy.run_path(str(path))["main"]()


@pytest.mark.parametrize(("op", "wrong"), [("tanh", "sin({0})"), ("add", "({0} - {1})")])
def test_planted_forward_node_is_named(op, wrong, capsys):
    x = gradc.randn(4, 8)
    with planted_lowering(op, wrong), pytest.raises(gradc.CompileCheckError) as info:
        gradc.compile(pointwise_chain, mode="check")(x)
    message = str(info.value)
    line = re.escape("return (x * 2 + 1).tanh().sum()")
    assert re.search(rf"outputs differ; first differing graph node: node \d+ \({op}\) at "
                     rf"\S*test_compiler_check\.py:{CHAIN_LINE}: {line}\n", message), message
    assert "in the graph of pointwise_chain: float32 of shape [4, 8]; max abs difference " in message
    assert re.search(r"max abs difference [\d.e+-]+ at index \[\d, \d\]: compiled \S+, eager \S+", message)
    path = _reproducer(message)
    assert path.parent.name == "pointwise_chain_0"
    with planted_lowering(op, wrong):
        assert _run_main(path) == 1
    assert "compiled and eager DIFFER" in capsys.readouterr().out
    assert _run_main(path) == 0


def test_reproducer_runs_standalone():
    """A fresh process has no plant: the script loads its operands, compiles the one op,
    prints the comparison and exits 0."""
    with planted_lowering("tanh", "sin({0})"), pytest.raises(gradc.CompileCheckError) as info:
        gradc.compile(pointwise_chain, mode="check")(gradc.randn(3, 5))
    path = _reproducer(str(info.value))
    assert "dispatch.apply(OPS['tanh'], a0)" in path.read_text()
    done = subprocess.run([sys.executable, path.name], cwd=path.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "eager:" in done.stdout and "compiled:" in done.stdout
    assert "max abs difference " in done.stdout and "compiled and eager agree" in done.stdout


def test_planted_node_with_attributes():
    """The reproducer passes the node's attributes (clamp's min and max) as keywords."""
    with planted_lowering("clamp", "gradc_min({0}, {min})"), pytest.raises(gradc.CompileCheckError) as info:
        gradc.compile(clamped, mode="check")(gradc.randn(4, 8))
    message = str(info.value)
    assert re.search(rf"node \d+ \(clamp\) at \S*test_compiler_check\.py:{CLAMP_LINE}:", message), message
    path = _reproducer(message)
    assert "dispatch.apply(OPS['clamp'], a0, min=-0.5, max=None)" in path.read_text()
    with planted_lowering("clamp", "gradc_min({0}, {min})"):
        assert _run_main(path) == 1
    assert _run_main(path) == 0


def test_planted_backward_node_is_named():
    """sub appears only in tanh's derivative: the backward graph's node is named with the
    line of the forward op it differentiates, and its saved operand is a backward-graph
    value (1 - y*y reads y*y, y = tanh(x))."""
    x = gradc.randn(6, requires_grad=True)
    compiled = gradc.compile(tanh_loss, mode="check")
    with planted_lowering("sub", "({0} + {1})"), pytest.raises(gradc.CompileCheckError) as info:
        compiled(x)
    message = str(info.value)
    assert re.search(r"gradients differ; first differing graph node: node \d+ \(sub\) at "
                     r"\S*test_compiler_check\.py:\d+: return gradc\.tanh\(t\)\.sum\(\)\n", message), message
    assert "in the backward graph of tanh_loss: float32 of shape [6]" in message
    assert x.grad is None
    path = _reproducer(message)
    assert path.parent.name == "tanh_loss_0"
    with planted_lowering("sub", "({0} + {1})"), pytest.raises(gradc.CompileCheckError) as again:
        compiled(x)
    assert _reproducer(str(again.value)).parent.name == "tanh_loss_1"  # the first one stays
    (operand,) = gradc.load(path.parent / "operands.safetensors")
    y = np.tanh(x.detach().numpy())
    np.testing.assert_allclose(operand.numpy(), y * y, rtol=1e-6, atol=1e-7)
    with planted_lowering("sub", "({0} + {1})"):
        assert _run_main(path) == 1
    assert _run_main(path) == 0


def test_graph_only_node_gets_no_reproducer():
    with planted_lowering("fill", "({value} + 1)"), pytest.raises(gradc.CompileCheckError) as info:
        gradc.compile(lambda x: x + gradc.ones(4), mode="check")(gradc.randn(4))
    message = str(info.value)
    assert re.search(r"node \d+ \(fill\)", message) and "no reproducer: 'fill' is a graph-only node" in message
    assert not Path(os.environ["GRADC_CHECK_DIR"]).exists()


def test_without_plant_check_passes_and_writes_nothing():
    x = gradc.randn(4, 8, requires_grad=True)
    out = gradc.compile(pointwise_chain, mode="check")(x)
    np.testing.assert_allclose(out.detach().numpy(), pointwise_chain(x).detach().numpy(), rtol=1e-5)
    gradc.compile(tanh_loss, mode="check")(x)
    assert not Path(os.environ["GRADC_CHECK_DIR"]).exists()


def test_plant_changes_the_source_and_never_outlives_its_block():
    x = gradc.randn(5)
    with planted_lowering("tanh", "sin({0})"):
        kernels = gradc.explain(lambda t: t.tanh(), x).kernels
        wrong = gradc.compile(lambda t: t.tanh())(x)
    assert _computes(kernels, "sinf")
    assert not np.allclose(wrong.numpy(), np.tanh(x.numpy()))
    with pytest.raises(RuntimeError), planted_lowering("tanh", "sin({0})"):
        raise RuntimeError("leaves the block")
    right = gradc.compile(lambda t: t.tanh())(x)  # a different source: a new build, not the planted one
    np.testing.assert_allclose(right.numpy(), np.tanh(x.numpy()), rtol=1e-6)
    assert compiler.counters["compiles"] == 2 and compiler.counters["disk_hits"] == 0
    kernels = gradc.explain(lambda t: t.tanh(), x).kernels
    assert _computes(kernels, "gradc_tanhf") and not _computes(kernels, "sinf")


def test_nested_plants_restore_in_order_and_unknown_ops_raise():
    with planted_lowering("tanh", "sin({0})"), planted_lowering("tanh", "cos({0})"):
        pass
    with planted_lowering("tanh", "sin({0})"):
        with planted_lowering("tanh", "cos({0})"):
            assert _computes(gradc.explain(gradc.tanh, gradc.randn(3)).kernels, "cosf")
        assert _computes(gradc.explain(gradc.tanh, gradc.randn(3)).kernels, "sinf")
    assert _computes(gradc.explain(gradc.tanh, gradc.randn(3)).kernels, "gradc_tanhf")
    with pytest.raises(KeyError, match="tanhh"), planted_lowering("tanhh", "sin({0})"):
        pass


@pytest.mark.parametrize("value", [None, True, 3, -0.5, math.inf, -math.inf, (1,), (0, 2), [1, 2], "tanh",
                                   gradc.float32, gradc.int64, gradc.bool, gradc.device("cpu"), np.float32(0.5)])
def test_attribute_literals_round_trip(value):
    back = eval(_literal(value), {"gradc": gradc})
    assert back == value and type(back) is type(value.item() if isinstance(value, np.generic) else value)


def test_nan_literal_and_values_without_one():
    assert math.isnan(eval(_literal(math.nan)))
    with pytest.raises(ValueError, match="object"):
        _literal(object())
