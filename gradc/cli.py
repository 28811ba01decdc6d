"""The `gradc` command line (`gradc ...`, `python -m gradc ...`): run a user's script under
the compiler's switches and show what the compiler made of it.

Contract: `main(argv)` returns the exit code. Scripts run in this process (as `__main__`,
with their folder first on sys.path and `sys.argv == [SCRIPT, *ARGS]`, both restored
after), with the environment variables a subcommand needs set for the run only. Nothing
the user does wrong shows a traceback of gradc's own code: a missing script, a bad option
(argparse's usage line, exit 2) or a script that raises (its own frames, then one
`gradc: SCRIPT raised ...` line, exit 1) each end in one clear line; a script's
`sys.exit(n)` becomes the exit code.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from ._version import __version__

_PACKAGE = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (each has its own `--help`)."""
    parser = argparse.ArgumentParser(prog="gradc", description="gradc: PyTorch-style tensors, "
                                     "autograd and a compiler to readable C/CUDA.")
    parser.add_argument("--version", action="version", version=f"gradc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dump = commands.add_parser("dump", help="run a script and write every compiled graph's source, "
                               "picture and schedule", description="Run SCRIPT with dumping on and write, per "
                               "compiled graph, its source (.c, and .cu with --backend cuda), its graph (.dot, "
                               ".svg where Graphviz is installed), the nodes a training forward saves "
                               "(.saved.txt) and summary.txt; print a table of the graphs.")
    _script_arguments(dump)
    dump.add_argument("-o", "--output", metavar="DIR", default="gradc_dump",
                      help="folder to write into (default: ./gradc_dump); an earlier dump's files there are "
                           "replaced, other files are left alone")
    dump.add_argument("--backend", choices=("c", "cuda"), default="c",
                      help="source to show: c (what runs) or cuda (rendered for every graph, never launched: "
                           "the script still runs on the CPU)")
    dump.add_argument("--html", metavar="REPORT.html", help="also write a one-page HTML report")
    dump.set_defaults(handler=_dump, parser=dump)

    explain = commands.add_parser("explain", help="run a script and report what each compiled function did",
                                  description="Run SCRIPT, then report per compiled function: its graphs, "
                                  "graph breaks (with the source line and reason), recompiles (with the guard "
                                  "that failed) and fallbacks to eager.")
    _script_arguments(explain)
    explain.set_defaults(handler=_explain, parser=explain)

    run = commands.add_parser("run", help="run a script with every compiled function in eager or check mode",
                              description="Run SCRIPT; with --eager every compiled function runs as plain "
                              "Python (GRADC_EAGER=1), with --check every compiled function runs compiled and "
                              "eager and compares them (GRADC_MODE=check).")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--eager", action="store_true", help="run every compiled function eagerly")
    mode.add_argument("--check", action="store_true", help='run every compiled function in mode="check"')
    _script_arguments(run)
    run.set_defaults(handler=_run, parser=run)

    export = commands.add_parser("export", help="write a model or function as dependency-free C",
                                 description="Load SCRIPT.py (not as __main__: its main() does not run), take "
                                 "NAME from it (an nn.Module, a Module class, a function of tensors, or a function "
                                 "with no required arguments that returns one of those) and write model.h, model.c, "
                                 "main_example.c (and weights.bin) for inputs like the --example ones. Build with: "
                                 "cc -O2 -std=c99 model.c main_example.c -lm")
    export.usage = f"{export.prog} SCRIPT.py:NAME --example EXPR [--example EXPR ...] -o DIR [options]"
    export.add_argument("target", metavar="SCRIPT.py:NAME", help="the script and the name of the model in it")
    export.add_argument("--example", action="append", required=True, metavar="EXPR",
                        help='an example input, as a gradc expression: "randn(1, 64)", "zeros(2, 3, dtype=int64)"; '
                             "once per input, in order")
    export.add_argument("-o", "--output", metavar="DIR", required=True, help="folder to write the files into")
    export.add_argument("--weights", choices=("embed", "file"), default="embed",
                        help="embed: weights as C arrays in model.c (default); file: weights.bin, read by "
                             "model_load(path)")
    export.add_argument("--state", metavar="FILE", help="load this state dict (gradc.save file) into the model first")
    export.add_argument("--dynamic", action="store_true",
                        help="make the first input's first dim (the batch) an argument of model_run")
    export.add_argument("--openmp", action="store_true", help="keep OpenMP pragmas (then build with -fopenmp)")
    export.set_defaults(handler=_export, parser=export)

    cache = commands.add_parser("cache", help="inspect or clear the on-disk kernel cache",
                                description="The on-disk kernel cache ($GRADC_CACHE_DIR, default "
                                "~/.cache/gradc).")
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = actions.add_parser("info", help="where the cache is, how many kernels it holds and their size",
                              description="Print the cache's location, number of kernels and total size.")
    info.set_defaults(handler=_cache_info, parser=info)
    clear = actions.add_parser("clear", help="remove gradc's cache files (and nothing else)",
                               description="Remove the kernel cache's files (.so, .json, .lock); other files in "
                               "the folder are left alone.")
    clear.set_defaults(handler=_cache_clear, parser=clear)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:  # split here, not by argparse: it mishandles options between SCRIPT and "--"
        at = argv.index("--")
        argv, script_args = argv[:at], argv[at + 1:]
    ns, unknown = build_parser().parse_known_args(argv)
    if script_args and "script" not in ns:
        unknown += ["--", *script_args]
    if unknown:  # the subcommand's own usage line, not the top-level one argparse would print
        ns.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    ns.args = script_args
    if "script" in ns and not Path(ns.script).is_file():
        _error(f"no such script: {ns.script}")
        return 2
    try:
        return ns.handler(ns)
    except OSError as e:
        _error(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 1


def _script_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = f"{parser.prog} [options] SCRIPT.py [-- ARGS ...]"
    parser.add_argument("script", metavar="SCRIPT.py", help="the Python script to run; arguments after -- "
                        "are its sys.argv[1:]")


def _error(message: str) -> None:
    print(f"gradc: {message}", file=sys.stderr)


def _dump(ns: argparse.Namespace) -> int:
    from .compiler import dump

    folder = Path(ns.output)
    if folder.exists() and not folder.is_dir():
        _error(f"{folder} is not a folder")
        return 1
    dump.clear_folder(folder)
    variables = {"GRADC_DUMP_DIR": str(folder.resolve()), "GRADC_DUMP_BACKEND": ns.backend}
    code = _run_script(ns.script, ns.args, variables)
    records = list(dump.records)
    dump.write_files(records, folder)
    if ns.html:
        try:
            from .compiler.report import write_html
        except ImportError:
            _error("the HTML report is not available in this version")
            return 1
        write_html(records, ns.html)
        print(f"gradc dump: report written to {ns.html}")
    if records:
        print(f"gradc dump: {len(records)} graph(s) written to {folder}")
        print(dump.table(records, timings=True), end="")
    else:
        print(f"gradc dump: no graph was compiled (summary in {folder})")
    return code


def _explain(ns: argparse.Namespace) -> int:
    from .compiler import history

    code = _run_script(ns.script, ns.args, {})
    print(history.report())
    return code


def _run(ns: argparse.Namespace) -> int:
    variables = {"GRADC_EAGER": "1"} if ns.eager else {"GRADC_MODE": "check"} if ns.check else {}
    code = _run_script(ns.script, ns.args, variables)
    if ns.check and code == 0:  # a mismatch raised CompileCheckError: the script failed instead
        from .compiler import counters

        print(f"gradc run --check: {counters['checks']} compiled call(s) matched eager", file=sys.stderr)
    return code


def _export(ns: argparse.Namespace) -> int:
    import gradc

    script, _, name = ns.target.rpartition(":")
    if not script or not name.isidentifier():
        _error(f"export: expected SCRIPT.py:NAME, got {ns.target!r}")
        return 2
    if not Path(script).is_file():
        _error(f"no such script: {script}")
        return 2
    saved_path = sys.path[:]
    sys.path.insert(0, str(Path(script).resolve().parent))
    try:
        namespace = runpy.run_path(script, run_name="gradc_export")
    except Exception as e:
        _report(script, e)
        return 1
    finally:
        sys.path[:] = saved_path
    if name not in namespace:
        _error(f"export: {script} defines no {name!r}")
        return 2
    try:
        model = _model(namespace[name], ns.state)
        examples = [_example(expr) for expr in ns.example]
        paths = gradc.export(model, examples, ns.output, weights=ns.weights, dynamic=ns.dynamic, openmp=ns.openmp)
    except gradc.ExportError as e:
        print(str(e).replace("gradc.export: ", "gradc export: ", 1), file=sys.stderr)
        return 1
    except (ValueError, TypeError, RuntimeError, SyntaxError, NameError) as e:
        _error(f"export: {e}")
        return 1
    for path in paths:
        print(f"wrote {path} ({_human(path.stat().st_size)})")
    sources = " ".join(str(Path(ns.output) / f) for f in ("model.c", "main_example.c"))
    print(f"build: cc -O2 -std=c99 -Wall {sources} -lm{' -fopenmp' if ns.openmp else ''} -o model")
    return 0


def _model(obj, state: str | None):
    """The thing to export: a module or function as it is, a Module class instantiated, a
    factory (a function without required parameters) called; then `state` loaded."""
    import inspect

    import gradc
    from gradc import nn

    if isinstance(obj, type) and issubclass(obj, nn.Module):
        obj = obj()
    elif inspect.isfunction(obj) and all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                                         for p in inspect.signature(obj).parameters.values()):
        obj = obj()
    if not callable(obj):
        raise TypeError(f"{type(obj).__name__} is not a module or a function")
    if state is not None:
        if not isinstance(obj, nn.Module):
            raise TypeError("--state needs a module")
        obj.load_state_dict(gradc.load(state))
    return obj


_EXAMPLE_NAMES = ("randn", "rand", "randint", "zeros", "ones", "full", "arange", "linspace", "tensor",
                  "float32", "float64", "int64", "int32", "uint8")


def _example(expr: str):
    """An --example expression evaluated with gradc's factories and dtypes in scope."""
    import gradc

    scope = {name: getattr(gradc, name) for name in _EXAMPLE_NAMES}
    value = eval(expr, {"__builtins__": {}}, scope)
    if not isinstance(value, gradc.Tensor):
        raise TypeError(f"--example {expr!r} is a {type(value).__name__}, not a tensor")
    return value


def _cache_info(ns: argparse.Namespace) -> int:
    from .compiler import cache

    root = cache.cache_dir()
    if root is None:
        _error("the cache folder is unusable (not a folder, not owned by you, or writable by others)")
        return 1
    files = cache.entries()
    kernels = sum(path.suffix == ".json" for path in files)
    size = sum(path.stat().st_size for path in files)
    print(f"location: {root}")
    print(f"entries:  {kernels} kernel(s) in {len(files)} file(s)")
    print(f"size:     {_human(size)}")
    return 0


def _cache_clear(ns: argparse.Namespace) -> int:
    from .compiler import cache

    root = cache.cache_dir()
    if root is None:
        _error("the cache folder is unusable (not a folder, not owned by you, or writable by others)")
        return 1
    print(f"removed {cache.clear()} file(s) from {root}")
    return 0


def _human(size: int) -> str:
    """A byte count in the largest binary unit that keeps it at least 1: `3.2 MiB`."""
    units, value, unit = ("B", "KiB", "MiB", "GiB"), float(size), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{size} B" if unit == 0 else f"{value:.1f} {units[unit]}"


def _run_script(script: str, args: list[str], variables: dict[str, str]) -> int:
    """Run `script` as `__main__` with `variables` set in the environment for the run, after
    resetting the compiler. Returns its exit code (0, a `sys.exit` code, or 1 after
    reporting an exception)."""
    from . import compiler

    compiler.reset()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).resolve().parent))
    try:
        with _environment(variables):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        return _exit_code(e.code)
    except KeyboardInterrupt:
        _error(f"{script} was interrupted")
        return 130
    except Exception as e:  # the user's script failed: report it as theirs
        _report(script, e)
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        sys.stdout.flush()
    return 0


def _exit_code(code: object) -> int:
    """sys.exit's argument as an exit status: None is 0, a message is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """Set `variables` in os.environ, restoring the previous values (or absence) after."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _report(script: str, error: BaseException) -> None:
    """The script's own traceback frames (from its first, leaving out runpy's and gradc's),
    then one summary line."""
    frames = traceback.extract_tb(error.__traceback__)
    first = Path(script).resolve()
    start = next((i for i, f in enumerate(frames) if Path(f.filename).resolve() == first), len(frames))
    frames = [f for f in frames[start:] if not Path(f.filename).resolve().is_relative_to(_PACKAGE)]
    sys.stdout.flush()
    if frames:
        print("Traceback (most recent call last):", file=sys.stderr)
        print("".join(traceback.format_list(frames)), end="", file=sys.stderr)
    detail = str(error)
    _error(f"{script} raised {type(error).__name__}" + (f": {detail}" if detail else ""))
