"""The `gradc` command line, run as users run it (`python -m gradc ...` in a subprocess) on
tiny scripts; help pages and argument errors that never run a script are checked in-process.
Subprocesses of one test share its cache folder (the autouse fixture's GRADC_CACHE_DIR)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from gradc import cli

MLP = """
import sys

import gradc
import gradc.nn as nn
import gradc.nn.functional as F

model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
opt = gradc.optim.SGD(model.parameters(), lr=0.1)


@gradc.compile
def train_step(x, y):
    return F.mse_loss(model(x), y)


x, y = gradc.randn(3, 4), gradc.randn(3, 2)
for _ in range(2):
    opt.zero_grad()
    train_step(x, y).backward()
    opt.step()
counters = gradc.compiler.counters
print("args", sys.argv[1:], "built", counters["compiles"] + counters["disk_hits"], "checking", train_step.checking)
"""

BREAK = """
import gradc


@gradc.compile
def relu_or_neg(x):
    if x.sum().item() > 0:
        return x.relu()
    return -x


@gradc.compile
def scale(x):
    return x * 2 + 1


relu_or_neg(gradc.ones(3))
scale(gradc.ones(3))
scale(gradc.ones(2, 5))
"""

RAISES = """
def check(value):
    raise ValueError(f"value {value} is out of range")


check(7)
"""


def gradc_cli(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradc", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)


def script(folder, name: str, text: str) -> str:
    (folder / name).write_text(textwrap.dedent(text))
    return name


def test_dump_writes_every_graph_and_two_dumps_diff_cleanly(tmp_path):
    name = script(tmp_path, "mlp.py", MLP)
    first = gradc_cli(tmp_path, "dump", name, "-o", "one", "--", "--lr", "3")
    assert first.returncode == 0, first.stderr
    assert "args ['--lr', '3']" in first.stdout
    table = first.stdout[first.stdout.index("graph "):].splitlines()
    assert table[0].split() == ["graph", "nodes", "kernels", "extern", "compile", "ms", "cache"]
    assert [row.split()[0] for row in table[1:]] == ["00_train_step_forward", "01_train_step_backward"]
    assert all(row.split()[-1] == "miss" for row in table[1:])

    one = tmp_path / "one"
    expected = {"summary.txt", "00_train_step_forward.c", "00_train_step_forward.dot",
                "00_train_step_forward.saved.txt", "01_train_step_backward.c", "01_train_step_backward.dot"}
    if shutil.which("dot"):
        expected |= {"00_train_step_forward.svg", "01_train_step_backward.svg"}
    assert {p.name for p in one.iterdir()} == expected
    assert (one / "00_train_step_forward.dot").read_text().startswith('digraph "00_train_step_forward"')
    saved = (one / "00_train_step_forward.saved.txt").read_text().splitlines()
    assert "relu [3, 8] float32" in "\n".join(saved) and "mlp.py:" in "\n".join(saved)
    summary = (one / "summary.txt").read_text()
    assert "00_train_step_forward (forward, c)" in summary and "k0_matmul" in summary

    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "07_old_forward.c").write_text("stale")
    (tmp_path / "two" / "notes.md").write_text("mine")
    second = gradc_cli(tmp_path, "dump", name, "--output", "two")
    assert second.returncode == 0, second.stderr
    assert "hit" in second.stdout
    two = tmp_path / "two"
    assert {p.name for p in two.iterdir()} == expected | {"notes.md"}
    for stem in expected - {"00_train_step_forward.svg", "01_train_step_backward.svg"}:
        assert (one / stem).read_text() == (two / stem).read_text(), stem


def test_dump_cuda_backend_and_html_report(tmp_path):
    name = script(tmp_path, "mlp.py", MLP)
    result = gradc_cli(tmp_path, "dump", name, "--backend", "cuda", "--html", "report.html")
    assert result.returncode == 0, result.stderr
    assert "report written to report.html" in result.stdout
    html = (tmp_path / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "00_train_step_forward" in html
    folder = tmp_path / "gradc_dump"
    for stem in ("00_train_step_forward", "01_train_step_backward"):
        assert "__global__" in (folder / f"{stem}.cu").read_text()
        assert (folder / f"{stem}.c").exists()


def test_explain_reports_breaks_and_recompiles(tmp_path):
    name = script(tmp_path, "brk.py", BREAK)
    result = gradc_cli(tmp_path, "explain", name)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "relu_or_neg (brk.py:5)" in out and "scale (brk.py:12): 2 entries" in out
    assert "graph break: Tensor.item()" in out and "brk.py:7: if x.sum().item() > 0:" in out
    assert "recompile: argument 0 shape changed from [3] to [2, 5]" in out
    assert "fallback: graph break" in out


def test_run_eager_and_check_modes(tmp_path):
    name = script(tmp_path, "mlp.py", MLP)
    eager = gradc_cli(tmp_path, "run", "--eager", name)
    assert eager.returncode == 0, eager.stderr
    assert "built 0 checking False" in eager.stdout
    check = gradc_cli(tmp_path, "run", "--check", name, "--", "x")
    assert check.returncode == 0, check.stderr
    assert "args ['x'] built 2 checking True" in check.stdout
    assert check.stderr.strip().splitlines()[-1] == "gradc run --check: 2 compiled call(s) matched eager"


def test_cache_info_and_clear_touch_only_cache_files(tmp_path):
    name = script(tmp_path, "mlp.py", MLP)
    assert gradc_cli(tmp_path, "run", name).returncode == 0
    cache = tmp_path / "gradc-cache"
    (cache / "keep.txt").write_text("not gradc's")
    info = gradc_cli(tmp_path, "cache", "info")
    assert info.returncode == 0, info.stderr
    assert f"location: {cache}" in info.stdout and "2 kernel(s) in 4 file(s)" in info.stdout
    assert "KiB" in info.stdout
    cleared = gradc_cli(tmp_path, "cache", "clear")
    assert cleared.returncode == 0 and "removed 4 file(s)" in cleared.stdout
    assert [p.name for p in cache.iterdir()] == ["keep.txt"]


def test_raising_script_shows_its_own_frames_only(tmp_path):
    name = script(tmp_path, "bad.py", RAISES)
    result = gradc_cli(tmp_path, "run", name)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "gradc: bad.py raised ValueError: value 7 is out of range"
    assert 'File "bad.py", line 3, in check' in result.stderr
    assert "runpy" not in result.stderr and "gradc/cli.py" not in result.stderr


def test_bad_option_is_a_usage_error(tmp_path):
    result = gradc_cli(tmp_path, "dump", "--bogus", "x.py")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["usage: gradc dump [options] SCRIPT.py [-- ARGS ...]",
                                          "gradc dump: error: unrecognized arguments: --bogus"]


@pytest.mark.parametrize("argv", [[], ["dump"], ["explain"], ["run"], ["cache"], ["cache", "info"],
                                  ["cache", "clear"]])
def test_help_of_every_subcommand(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: gradc {' '.join(argv)}".rstrip())


@pytest.mark.parametrize("argv", [["run", "--eager", "--check", "x.py"], ["cache", "info", "--", "x"], ["frobnicate"]])
def test_argument_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_script_is_one_line_and_keeps_an_earlier_dump(tmp_path, capsys):
    earlier = tmp_path / "out" / "00_f_inference.c"
    earlier.parent.mkdir()
    earlier.write_text("kept")
    assert cli.main(["dump", str(tmp_path / "absent.py"), "-o", str(earlier.parent)]) == 2
    assert capsys.readouterr().err == f"gradc: no such script: {tmp_path / 'absent.py'}\n"
    assert earlier.read_text() == "kept"


def test_sys_exit_code_propagates(tmp_path, capsys):
    path = tmp_path / "quits.py"
    path.write_text("import sys\nprint(sys.argv[1:])\nsys.exit(3)\n")
    assert cli.main(["run", str(path), "--", "a"]) == 3
    assert capsys.readouterr().out == "['a']\n"
