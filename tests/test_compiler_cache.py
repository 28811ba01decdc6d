"""The on-disk kernel cache across processes: concurrent cold compiles, warm starts that
never run the C compiler, corrupted entries, and keys that change with gradc's version and
the compiler's identity.

Children are separate interpreters sharing one GRADC_CACHE_DIR; each prints one JSON line
with its compiled and eager results, the compiler counters and any warnings it saw.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import gradc
from gradc import compiler
from gradc.compiler import build, cache

_CHILD = textwrap.dedent("""
    import json, os, sys, time, warnings
    from pathlib import Path
    import gradc
    from gradc import compiler

    def pointwise(x):
        return gradc.tanh(x * 0.5 + 1.0) * x - 0.25

    def softmax(x):
        e = (x - x.amax(dim=-1, keepdim=True)).exp()
        return e / e.sum(dim=-1, keepdim=True)

    go = os.environ.get("GRADC_TEST_GO")
    if go:  # start barrier: say we are ready (gradc imported), then wait for the signal
        Path(os.environ["GRADC_TEST_READY"]).touch()
        deadline = time.monotonic() + 30
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                sys.exit("no start signal")
            time.sleep(0.001)
    x = gradc.arange(24, dtype=gradc.float32).reshape(4, 6) / 7.0 - 1.5
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for fn in [pointwise, softmax][:int(os.environ.get("GRADC_TEST_FUNCTIONS", "2"))]:
            out[fn.__name__] = [gradc.compile(fn)(x).tolist(), fn(x).tolist()]
    print(json.dumps({"results": out, "counters": dict(compiler.counters),
                      "warnings": [str(w.message) for w in caught]}))
""")


def _spawn(cache_dir: Path, **env) -> subprocess.Popen:
    full = dict(os.environ, GRADC_CACHE_DIR=str(cache_dir), **env)
    return subprocess.Popen([sys.executable, "-c", _CHILD], env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    """The child's report, after checking it exited cleanly with eager-correct results,
    no warnings and no fallbacks."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    for name, (compiled, eager) in report["results"].items():
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6, err_msg=name)
    assert report["warnings"] == [], report
    assert report["counters"]["fallbacks"] == 0 and report["counters"]["graph_breaks"] == 0, report
    return report


def _run(cache_dir: Path, **env) -> dict:
    return _finish(_spawn(cache_dir, **env))


def _entries(cache_dir: Path) -> dict[str, list[str]]:
    """key -> the artifact names stored for it; asserts nothing else lies in the directory."""
    names = sorted(p.name for p in cache_dir.iterdir())
    keys = {n[:-5] for n in names if n.endswith(".json")}
    artifacts = {k: [n for n in names if n.startswith(k + ".") and n.endswith(".so")] for k in keys}
    assert sorted([*(k + ".json" for k in keys), *sum(artifacts.values(), [])]) == names, names  # no temp files
    return artifacts


def _check_entry(cache_dir: Path, key: str) -> Path:
    """The single artifact of `key`, checked against its metadata."""
    meta = json.loads((cache_dir / f"{key}.json").read_text())
    path = cache_dir / meta["artifact"]
    assert meta["key"] == key and hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]
    return path


def test_concurrent_cold_compiles_build_once_and_agree(tmp_path):
    shared = tmp_path / "shared"
    go = tmp_path / "go"
    procs = [_spawn(shared, GRADC_TEST_GO=str(go), GRADC_TEST_READY=str(tmp_path / f"ready{i}")) for i in range(4)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "children did not start"
        time.sleep(0.005)
    go.touch()  # all four compile the same two graphs at the same moment
    reports = [_finish(p) for p in procs]
    for r in reports:
        assert r["counters"]["compiles"] + r["counters"]["disk_hits"] == 2, r  # each graph built or loaded
    assert sum(r["counters"]["compiles"] for r in reports) == 2  # one build per graph across processes
    results = [r["results"] for r in reports]
    assert all(r == results[0] for r in results)  # bit-identical: every process ran the same kernels
    entries = _entries(shared)
    assert len(entries) == 2 and all(len(a) == 1 for a in entries.values()), entries
    for key in entries:
        _check_entry(shared, key)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in shared.iterdir())


def _cc_wrapper(folder: Path, name: str, version: str | None = None) -> Path:
    """A shell script delegating to the real `cc` that logs each call's arguments to
    $GRADC_TEST_CC_LOG, fails every build when $GRADC_TEST_CC_FAIL is set, and, given
    `version`, reports that as its --version."""
    real = shutil.which("cc")
    assert real, "the tests need a C compiler"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    version_line = f'if [ "$1" = --version ]; then echo "{version}"; exit 0; fi\n' if version else ""
    script.write_text("#!/bin/sh\n"
                      'if [ -n "$GRADC_TEST_CC_LOG" ]; then echo "$*" >> "$GRADC_TEST_CC_LOG"; fi\n'
                      + version_line +
                      'if [ -n "$GRADC_TEST_CC_FAIL" ] && [ "$1" != --version ]; then exit 1; fi\n'
                      f'exec {real} "$@"\n')
    script.chmod(0o755)
    return script


def test_warm_cache_in_a_fresh_process_never_builds(tmp_path):
    # `cc` on PATH is a logging wrapper, so both processes see the same compiler command and
    # identity (hence the same keys); in the second one every build would fail.
    _cc_wrapper(tmp_path / "bin", "cc")
    shared, cold_log, warm_log = tmp_path / "shared", tmp_path / "cold.log", tmp_path / "warm.log"
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    cold = _run(shared, PATH=path, GRADC_TEST_CC_LOG=str(cold_log))
    assert cold["counters"]["compiles"] == 2 and cold["counters"]["disk_hits"] == 0
    assert sum("--version" not in line for line in cold_log.read_text().splitlines()) == 2  # the wrapper was used
    warm = _run(shared, PATH=path, GRADC_TEST_CC_LOG=str(warm_log), GRADC_TEST_CC_FAIL="1")
    assert warm["counters"]["compiles"] == 0 and warm["counters"]["disk_hits"] == 2
    assert warm["results"] == cold["results"]
    calls = warm_log.read_text().splitlines() if warm_log.exists() else []
    assert all(line.strip() == "--version" for line in calls), calls  # at most the identity probe


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_sha(path: Path) -> None:
    meta = json.loads(path.read_text())
    meta["sha256"] = "0" * 64
    path.write_text(json.dumps(meta))


def _escape(path: Path) -> None:
    meta = json.loads(path.read_text())
    outside = path.parent.parent / meta["artifact"]
    shutil.copy(path.parent / meta["artifact"], outside)  # a valid artifact, but outside the cache
    meta["artifact"] = f"../{meta['artifact']}"
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("target,damage", [
    ("so", _flip), ("so", _truncate), ("so", lambda p: p.write_bytes(b"")),
    ("json", _truncate), ("json", lambda p: p.write_bytes(b"\xff\xfe not json")), ("json", _wrong_sha),
    ("json", _escape),
])
def test_corrupted_entry_is_rebuilt_not_loaded(tmp_path, target, damage):
    shared = tmp_path / "shared"
    cold = _run(shared, GRADC_TEST_FUNCTIONS="1")
    assert cold["counters"]["compiles"] == 1
    [(key, [artifact])] = _entries(shared).items()
    good = (shared / artifact).read_bytes()
    damage(shared / (artifact if target == "so" else f"{key}.json"))
    again = _run(shared, GRADC_TEST_FUNCTIONS="1")  # a fresh process: nothing loaded from before
    assert again["counters"]["compiles"] == 1 and again["counters"]["disk_hits"] == 0
    assert again["results"] == cold["results"]
    assert _entries(shared) == {key: [artifact]}  # healed in place (the build is deterministic)
    assert _check_entry(shared, key).read_bytes() == good
    assert cache.lookup(shared, key) == shared / artifact  # and served from disk again


def _gelu(x):
    return 0.5 * x * (1 + gradc.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def _compile_once(x) -> dict:
    compiler.reset()
    np.testing.assert_allclose(gradc.compile(_gelu)(x).numpy(), _gelu(x).numpy(), rtol=1e-5, atol=1e-6)
    return dict(compiler.counters)


def test_other_gradc_version_or_compiler_identity_is_not_reused(tmp_path, monkeypatch):
    x = gradc.randn(33)
    base = cache.cache_key("int x;")
    assert _compile_once(x)["compiles"] == 1
    assert _compile_once(x)["disk_hits"] == 1  # a new compiled function: served from disk

    version = cache.__version__
    monkeypatch.setattr(cache, "__version__", "0.0.0-other")
    assert cache.cache_key("int x;") != base
    assert _compile_once(x)["compiles"] == 1  # a cache written by another gradc version is not reused
    monkeypatch.setattr(cache, "__version__", version)
    assert _compile_once(x)["disk_hits"] == 1

    log = tmp_path / "cc.log"
    monkeypatch.setenv("GRADC_TEST_CC_LOG", str(log))
    monkeypatch.setenv("CC", str(_cc_wrapper(tmp_path / "bin", "other-cc", version="other-cc 99.1 (not cc)")))
    assert build.compiler_identity() == "other-cc 99.1 (not cc)"
    assert cache.cache_key("int x;") != base
    assert _compile_once(x)["compiles"] == 1  # another compiler identity: rebuilt with it
    assert any("--version" not in line for line in log.read_text().splitlines())
    assert _compile_once(x)["disk_hits"] == 1
    monkeypatch.delenv("CC")
    assert cache.cache_key("int x;") == base and _compile_once(x)["disk_hits"] == 1
    assert len(_entries(Path(os.environ["GRADC_CACHE_DIR"]))) == 3


def test_same_command_new_identity_changes_the_key(tmp_path, monkeypatch):
    # the identity is probed per compiler binary: replacing what `cc` resolves to (an
    # upgrade, another PATH) changes the key even within one process
    before = cache.cache_key("int x;")
    _cc_wrapper(tmp_path / "bin", "cc", version="cc (Imaginary) 1.0")
    path = os.environ.get("PATH", "")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{path}")
    assert build.compiler_identity() == "cc (Imaginary) 1.0"
    assert cache.cache_key("int x;") != before
    monkeypatch.setenv("PATH", path)
    assert cache.cache_key("int x;") == before
