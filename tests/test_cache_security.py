"""What the kernel cache refuses to trust (SECURITY.md), and user text that cannot escape the
comments of the generated C and CUDA.

Loading a cached library runs its code, so each test plants something the cache must not
load or write to (a directory another user owns or could write, a tampered artifact) and
checks the compiled results stay correct, with one warning where the cache falls back.
These tests run as root in CI, and root ignores permission bits: a foreign owner is
simulated by changing the owner `os.stat` reports for that directory, and a read-only
directory by failing the cache's writes into it with the errno a read-only mount gives,
rather than by chmod.
"""
from __future__ import annotations

import ast
import errno
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc import compiler, nn
from gradc.compiler import cache


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """A fresh TMPDIR (where a fallback cache is made) and no fallback cache yet, so each
    test sees the process's first, and only, warning."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setattr(cache, "_private", None)
    return folder


def _tanh(x):
    return gradc.tanh(x * 0.5) - x


def _exp(x):
    return (x * 0.25).exp() + 1.0


def _sin(x):
    return gradc.sin(x) * x


def _compile(fn, x=None) -> dict:
    """Compile `fn` afresh (no in-memory entry), check it against eager and return the
    counters of that one compile."""
    x = gradc.linspace(-2.0, 2.0, 12) if x is None else x
    compiler.reset()
    np.testing.assert_allclose(gradc.compile(fn)(x).numpy(), fn(x).numpy(), rtol=1e-5, atol=1e-6)
    return dict(compiler.counters)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@contextmanager
def _cache_warnings() -> Iterator[list[str]]:
    """Collects the messages of the warnings about the kernel cache raised in the block."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield found
    found += [str(w.message) for w in caught if "kernel cache" in str(w.message)]


def test_cache_dir_is_created_private_and_a_readable_one_tightened(tmp_path, monkeypatch, private_tmp):
    nested = tmp_path / "a" / "b"
    monkeypatch.setenv("GRADC_CACHE_DIR", str(nested))
    assert _compile(_tanh)["compiles"] == 1
    assert stat.S_IMODE(nested.stat().st_mode) == 0o700 and len(_files(nested)) == 2  # metadata + artifact
    readable = tmp_path / "readable"
    readable.mkdir()
    readable.chmod(0o755)  # readable by others, writable by no one else: nothing can have been planted
    monkeypatch.setenv("GRADC_CACHE_DIR", str(readable))
    with _cache_warnings() as messages:
        assert _compile(_tanh)["compiles"] == 1
    assert messages == []
    assert stat.S_IMODE(readable.stat().st_mode) == 0o700 and len(_files(readable)) == 2
    assert list(private_tmp.iterdir()) == []  # no fallback was needed


def _planted(tmp_path, monkeypatch) -> tuple[Path, list[str]]:
    """A cache directory holding valid entries for `_tanh` (as another user could plant
    them), and its file names."""
    planted = tmp_path / "planted"
    monkeypatch.setenv("GRADC_CACHE_DIR", str(planted))
    assert _compile(_tanh)["compiles"] == 1
    assert _compile(_tanh)["disk_hits"] == 1  # usable as it is, by its owner
    return planted, _files(planted)


def _assert_refused(planted: Path, files: list[str], private_tmp: Path, reason: str) -> None:
    """Nothing in `planted` is loaded or written; one warning naming `reason`; kernels are
    cached in the private directory for the rest of the process."""
    with _cache_warnings() as messages:
        assert _compile(_tanh)["compiles"] == 1  # the planted entry is never loaded
        assert _compile(_exp)["compiles"] == 1
        assert _compile(_tanh)["disk_hits"] == 1  # from the private cache
    [message] = messages
    assert reason in message and str(planted) in message
    assert _files(planted) == files  # not written to either
    [private] = private_tmp.iterdir()
    assert private.name.startswith("gradc-cache-") and stat.S_IMODE(private.stat().st_mode) == 0o700
    assert len([n for n in _files(private) if n.endswith(".json")]) == 2


def test_cache_dir_owned_by_another_user_is_refused(tmp_path, monkeypatch, private_tmp):
    planted, files = _planted(tmp_path, monkeypatch)
    real_stat = os.stat

    def foreign_stat(path, *args, **kwargs):  # the directory (only) now belongs to someone else
        st = real_stat(path, *args, **kwargs)
        if os.fspath(path) != str(planted):
            return st
        fields = list(st)
        fields[stat.ST_UID] += 1
        return os.stat_result(fields)

    monkeypatch.setattr(os, "stat", foreign_stat)
    assert cache.cache_dir() is None and "owned by another user" in cache.refusal(planted)
    _assert_refused(planted, files, private_tmp, "owned by another user")


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777])
def test_group_or_world_writable_cache_dir_is_refused_not_repaired(tmp_path, monkeypatch, private_tmp, mode):
    planted, files = _planted(tmp_path, monkeypatch)
    planted.chmod(mode)
    _assert_refused(planted, files, private_tmp, "writable by other users")
    assert stat.S_IMODE(planted.stat().st_mode) == mode  # left as found: a chmod now would not undo a plant


def test_read_only_cache_dir_serves_its_entries_and_falls_back_once(tmp_path, monkeypatch, private_tmp):
    planted, files = _planted(tmp_path, monkeypatch)
    publish = cache._publish

    def read_only(root: Path, name: str, data: bytes) -> None:
        if root == planted:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(root / name))
        publish(root, name, data)

    monkeypatch.setattr(cache, "_publish", read_only)
    with _cache_warnings() as messages:
        assert _compile(_tanh)["disk_hits"] == 1  # what it holds is still trusted and used
        assert _compile(_exp)["compiles"] == 1
        assert _compile(_sin)["compiles"] == 1
        assert _compile(_exp)["disk_hits"] == 1  # from the private cache
    [message] = messages
    assert "cannot write the kernel cache" in message and "Read-only file system" in message
    assert _files(planted) == files
    [private] = private_tmp.iterdir()
    assert len([n for n in _files(private) if n.endswith(".json")]) == 2


def test_unusable_cache_path_falls_back_to_a_private_dir_removed_at_exit(tmp_path):
    # a child process, so the fallback's removal at exit can be seen
    blocker, scratch = tmp_path / "file", tmp_path / "tmp"
    blocker.write_text("not a directory")
    scratch.mkdir()
    child = textwrap.dedent("""
        import json, os, warnings
        import gradc
        from gradc import compiler

        x = gradc.randn(9)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                assert (gradc.compile(lambda v: v.exp() * 3)(x) - x.exp() * 3).abs().max().item() < 1e-5
        print(json.dumps({"counters": dict(compiler.counters), "private": os.listdir(os.environ["TMPDIR"]),
                          "warnings": [str(w.message) for w in caught]}))
    """)
    env = dict(os.environ, GRADC_CACHE_DIR=str(blocker), TMPDIR=str(scratch))
    done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["counters"]["compiles"] == 1 and report["counters"]["disk_hits"] == 1  # a cache, if private
    [warning] = report["warnings"]
    assert "is unusable (" in warning and str(blocker) in warning and report["private"][0].startswith("gradc-cache-")
    assert list(scratch.iterdir()) == []  # removed at exit
    assert blocker.read_text() == "not a directory"


def test_metadata_is_json_and_the_cache_never_imports_pickle(tmp_path):
    assert _compile(_tanh)["compiles"] == 1
    root = Path(os.environ["GRADC_CACHE_DIR"])
    [meta_file] = root.glob("*.json")
    meta = json.loads(meta_file.read_text())
    assert set(meta) == {"key", "artifact", "sha256", "gradc"} and meta["key"] == meta_file.stem
    assert cache.lookup(root, meta["key"]) == root / meta["artifact"]
    tree = ast.parse(Path(cache.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"pickle", "marshal", "shelve", "dill", "cloudpickle"}, imported


_SWAP_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import gradc
    from gradc import compiler
    from gradc.compiler import build

    loaded, library = [], build.Library

    def spy(path, entries):
        loaded.append(Path(path).name)
        return library(path, entries)

    build.Library = spy
    x = gradc.linspace(-2.0, 2.0, 12)
    functions = {"tanh": lambda v: gradc.tanh(v * 0.5) - v, "exp": lambda v: (v * 0.25).exp() + 1.0}
    results = {}
    for name in sys.argv[1:]:
        results[name] = [gradc.compile(functions[name])(x).tolist(), functions[name](x).tolist()]
    print(json.dumps({"loaded": loaded, "results": results, "counters": dict(compiler.counters)}))
""")


def _swap_child(cache_dir: Path, *names: str) -> dict:
    env = dict(os.environ, GRADC_CACHE_DIR=str(cache_dir))
    done = subprocess.run([sys.executable, "-c", _SWAP_CHILD, *names], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for compiled, eager in report["results"].values():
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    return report


def test_artifact_swapped_for_another_valid_library_is_never_loaded(tmp_path):
    # the worst tampering: a library that loads fine but computes something else. Fresh
    # processes on both sides: one that had the artifact loaded would keep its mapping.
    root = tmp_path / "shared"
    assert _swap_child(root, "tanh")["counters"]["compiles"] == 1
    [tanh_meta] = root.glob("*.json")
    assert _swap_child(root, "exp")["counters"]["compiles"] == 1
    [exp_meta] = set(root.glob("*.json")) - {tanh_meta}
    tampered = root / json.loads(tanh_meta.read_text())["artifact"]
    tampered.write_bytes((root / json.loads(exp_meta.read_text())["artifact"]).read_bytes())
    report = _swap_child(root, "tanh")  # checks the result against eager
    assert report["counters"]["compiles"] == 1 and report["counters"]["disk_hits"] == 0  # rebuilt
    assert report["loaded"] == [tampered.name]  # loaded once only: after the rebuild healed it
    assert cache.lookup(root, tanh_meta.stem) == tampered


HOSTILE = 'evil"\'*/\n#include <stdio.h>\n/* ??/ */ \\'
PARAMETER = 'w"\'*/\n#include "hostile"\n\\'


def _hostile_module() -> nn.Module:
    """A module whose class and parameter names hold quotes, comment delimiters, newlines
    and `#include` lines."""

    def __init__(self):
        nn.Module.__init__(self)
        self.register_parameter(PARAMETER, nn.Parameter(gradc.linspace(0.5, 1.5, 4)))

    def forward(self, x):
        return (x * getattr(self, PARAMETER)).tanh()

    forward.__qualname__ = HOSTILE + ".forward"
    return type(HOSTILE, (nn.Module,), {"__init__": __init__, "forward": forward})()


def _assert_inert(source: str, header: str) -> None:
    """User text in `source` stays inside comments: after C's line splicing and comment
    removal (the order the compiler applies them) no comment delimiter, quote or hostile
    word is left, and the only directives are gradc's own."""
    code = re.sub(r"/\*.*?\*/", " ", source.replace("\\\n", ""), flags=re.S)
    assert "*/" not in code and "/*" not in code
    directives = [line.strip() for line in code.splitlines() if line.strip().startswith("#")]
    assert directives and all(d == f'#include "{header}"' or d.startswith("#pragma ") for d in directives), directives
    strings = re.findall(r'"[^"\n]*"', code)
    assert set(strings) <= {f'"{header}"', '"C"'}, strings  # CUDA's kernels are `extern "C"`
    assert '"' not in re.sub(r'"[^"\n]*"', "", code) and "'" not in code
    for word in ("evil", "stdio", "hostile"):
        assert word not in code, word
    assert "evil" in source  # the function's name does appear, in a comment


@pytest.mark.parametrize("backend", ["c", "cuda"])
def test_hostile_names_stay_inside_comments(tmp_path, monkeypatch, backend):
    dump = tmp_path / "dump"
    monkeypatch.setenv("GRADC_DUMP_DIR", str(dump))
    monkeypatch.setenv("GRADC_DUMP_BACKEND", backend)  # with "cuda", each graph's CUDA is rendered too
    model, x = _hostile_module(), gradc.randn(3, 4)

    def f(v):
        return v.exp() * 2

    f.__qualname__ = HOSTILE
    compiled_model, compiled_f = gradc.compile(model), gradc.compile(f)
    with gradc.no_grad():
        np.testing.assert_allclose(compiled_model(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compiled_f(x).numpy(), f(x).numpy(), rtol=1e-5, atol=1e-6)
    assert compiler.counters["compiles"] == 2 and compiler.counters["fallbacks"] == 0
    suffix, header = (".cu", "gradc_cuda.h") if backend == "cuda" else (".c", "gradc_runtime.h")
    sources = sorted(dump.glob(f"*{suffix}"))
    assert len(sources) == 2 and all(p.parent == dump for p in sources)  # no name reached a path
    texts = [path.read_text() for path in sources]
    for text in texts:
        _assert_inert(text, header)
    assert sum("parameter w" in text and "hostile" in text for text in texts) == 1  # the module's header
