"""The on-disk kernel cache: safe to share between processes, never trusted blindly.

Layout under `$GRADC_CACHE_DIR` (default `~/.cache/gradc`), a directory created 0700 and
refused unless owned by the current user:
- `<key>.<sha>.so`: an immutable artifact named by its own content hash;
- `<key>.json`: metadata naming the artifact and its sha256 (JSON, never pickle).
The key is sha256 of (source, runtime header, compiler identity, flags, gradc version).
Writers build into a temp file and publish with `os.replace`, artifact before metadata,
so concurrent processes only ever see complete files; readers re-hash the artifact
before loading it and treat any mismatch as a miss.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .._version import __version__
from . import build
from .errors import BuildError
from .render import resource_dir


def cache_dir() -> Path | None:
    """The cache directory, created if needed; None (no disk cache) if it is unsafe."""
    root = Path(os.environ.get("GRADC_CACHE_DIR") or Path.home() / ".cache" / "gradc")
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.stat()
    except OSError:
        return None
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return None
    return root


def cache_key(source: str) -> str:
    header = (resource_dir("gradc.runtime", "runtime") / "gradc_runtime.h").read_text()
    parts = [source, header, build.compiler_identity(), " ".join(build.compiler()), " ".join(build.flags()),
             __version__]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lookup(root: Path, key: str) -> Path | None:
    """The verified artifact for `key`, or None."""
    try:
        meta = json.loads((root / f"{key}.json").read_text())
        path = root / meta["artifact"]
        if path.parent != root or meta.get("key") != key or _sha256(path) != meta["sha256"]:
            return None
        return path
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _publish(root: Path, name: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, root / name)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def store(root: Path, key: str, built: Path) -> Path:
    """Publish a freshly built library under `key`; returns its final path."""
    data = built.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    name = f"{key}.{sha[:16]}.so"
    if not (root / name).exists():
        _publish(root, name, data)
    meta = {"key": key, "artifact": name, "sha256": sha, "gradc": __version__}
    _publish(root, f"{key}.json", json.dumps(meta).encode())
    return root / name


def build_or_load(source: str, entries: list[str]) -> tuple[build.Library, bool]:
    """(library, came from disk) exposing the C functions `entries` of `source`. Compiles
    on a miss; raises BuildError on toolchain failure."""
    key = cache_key(source)
    root = cache_dir()
    if root is not None:
        hit = lookup(root, key)
        if hit is not None:
            try:
                return build.Library(hit, entries), True
            except BuildError:
                pass  # unloadable artifact: rebuild it
    with tempfile.TemporaryDirectory(prefix="gradc-so-") as tmp:
        built = Path(tmp) / "kernel.so"
        build.compile_source(source, built)
        if root is None:
            private = Path(tempfile.mkdtemp(prefix="gradc-private-"))
            target = private / "kernel.so"
            os.replace(built, target)
            return build.Library(target, entries), False
        try:
            target = store(root, key, built)
        except OSError as e:
            raise BuildError(f"cannot write the kernel cache in {root}: {e}") from e
        return build.Library(target, entries), False
