"""The on-disk kernel cache: safe to share between processes, never trusted blindly.

Layout under `$GRADC_CACHE_DIR` (default `~/.cache/gradc`), a directory created 0700:
- `<key>.<sha>.so`: an immutable artifact named by its own content hash;
- `<key>.json`: metadata naming the artifact and its sha256 (JSON, never pickle);
- `<key>.lock`: present only while a process builds `key` (see below).
The key is sha256 of (source, runtime header, compiler identity, flags, host CPU, gradc
version).

Loading a library runs its code, so the directory is used only if nobody else can have
written to it: it must be a directory owned by the current user and writable by no group
or other user. One that is not is refused, never repaired: files someone else could have
planted are not made safe by a chmod after the fact. A refused directory, or one that
cannot be written (a read-only mount), costs one warning per process; kernels are then
cached in a private directory of this process (mkdtemp, 0700, removed at exit), while a
read-only one still serves the entries it holds. A directory merely readable by others
(nothing could have been planted) is tightened to 0700 silently. SECURITY.md says why.

Writers build into a temp file and publish with `os.replace`, artifact before metadata,
so concurrent processes only ever see complete files; readers re-hash the artifact
before loading it and treat any mismatch as a miss. On a miss, builders of one key take
an exclusive `flock` on its lock file and look again once they hold it, so concurrent
processes build each kernel once and the others load that build. A damaged artifact is
replaced (never reused because its name exists), and an artifact its metadata no longer
names is removed.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from .._version import __version__
from . import build
from .config import log
from .errors import BuildError
from .render import resource_dir

try:
    import fcntl
except ImportError:  # not POSIX: no build lock; concurrent builds stay correct, only duplicated
    fcntl = None

# this process's own cache, made (with the one warning) when the configured one is refused or unwritable
_private: Path | None = None


def configured_dir() -> Path:
    """Where the cache should be: $GRADC_CACHE_DIR, else ~/.cache/gradc (not checked)."""
    return Path(os.environ.get("GRADC_CACHE_DIR") or Path.home() / ".cache" / "gradc")


def refusal(root: Path) -> str | None:
    """Why `root` cannot hold the cache (None if it can), creating it 0700 if missing and
    taking away read access others have to a directory that is otherwise ours alone."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.stat()
        if not stat.S_ISDIR(st.st_mode):
            return f"the kernel cache {root} is not a directory"
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            return f"the kernel cache {root} is owned by another user (uid {st.st_uid})"
        if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o022:
            return f"the kernel cache {root} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
        if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(root, 0o700)
    except OSError as e:
        return f"the kernel cache {root} is unusable ({e})"
    return None


def cache_dir() -> Path | None:
    """The configured cache directory if it can be trusted (see `refusal`), else None."""
    root = configured_dir()
    return None if refusal(root) else root


def _private_dir(reason: str) -> Path:
    """This process's private cache, made on first use with the process's one warning."""
    global _private
    if _private is None:
        _private = Path(tempfile.mkdtemp(prefix="gradc-cache-"))  # 0700, created by us alone
        atexit.register(shutil.rmtree, _private, ignore_errors=True)
        warnings.warn(f"gradc.compile: {reason}; caching kernels in {_private} for this process only",
                      stacklevel=2)
    return _private


_CACHE_FILE = re.compile(r"[0-9a-f]{64}(\.[0-9a-f]{16}\.so|\.json|\.lock)")


def entries() -> list[Path]:
    """The cache's own files (artifacts, metadata, build locks; never anything else in the
    folder), sorted by name; [] when there is no usable cache."""
    root = cache_dir()
    if root is None:
        return []
    return sorted(p for p in root.iterdir() if _CACHE_FILE.fullmatch(p.name) and p.is_file() and not p.is_symlink())


def clear() -> int:
    """Remove the cache's own files; returns how many. Safe while other processes run:
    a loaded library keeps its mapping, and a build whose lock vanished retries."""
    removed = 0
    for path in entries():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def cache_key(source: str) -> str:
    header = (resource_dir("gradc.runtime", "runtime") / "gradc_runtime.h").read_text()
    parts = [source, header, build.compiler_identity(), " ".join(build.compiler()), " ".join(build.flags()),
             build.host_identity(), __version__]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _artifact(root: Path, key: str, meta) -> Path | None:
    """The artifact `meta` names, if it is a plain name of this key's inside `root`."""
    name = meta.get("artifact") if isinstance(meta, dict) else None
    if not isinstance(name, str) or "/" in name or os.sep in name or not name.startswith(f"{key}."):
        return None
    return root / name


def lookup(root: Path, key: str) -> Path | None:
    """The verified artifact for `key`, or None."""
    try:
        meta = json.loads((root / f"{key}.json").read_text())
        path = _artifact(root, key, meta)
        if path is None or meta.get("key") != key or meta.get("gradc") != __version__:
            return None
        if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
            return None
        if _sha256(path) != meta["sha256"]:
            return None
        return path
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
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
    try:
        intact = _sha256(root / name) == sha
    except OSError:
        intact = False
    if not intact:  # absent, or damaged: never trust a file for its name alone
        _publish(root, name, data)
    try:
        previous = _artifact(root, key, json.loads((root / f"{key}.json").read_text()))
    except (OSError, ValueError):
        previous = None
    meta = {"key": key, "artifact": name, "sha256": sha, "gradc": __version__}
    _publish(root, f"{key}.json", json.dumps(meta).encode())
    if previous is not None and previous.name != name:
        with contextlib.suppress(OSError):
            previous.unlink()  # orphaned (a nondeterministic compiler); processes using it keep their mapping
    return root / name


@contextlib.contextmanager
def _build_lock(root: Path, key: str) -> Iterator[None]:
    """Hold the exclusive build lock of `key` (best effort: without flock, no lock). The
    lock file is removed by its holder; a waiter that wakes on a removed file retries."""
    path, fd = root / f"{key}.lock", None
    if fcntl is not None:
        for _ in range(1000):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                mine, there = os.fstat(fd), os.stat(path)
                if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                    break
            except FileNotFoundError:
                pass  # the previous holder removed it: lock the new one
            except OSError:  # no locking on this file system
                os.close(fd)
                fd = None
                break
            os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)


def _load(path: Path, entries: list[str]) -> build.Library | None:
    try:
        return build.Library(path, entries)
    except BuildError as e:
        log.debug("gradc cache: %s; rebuilding", e)
        return None


def build_or_load(source: str, entries: list[str]) -> tuple[build.Library, bool]:
    """(library, came from disk) exposing the C functions `entries` of `source`. Compiles
    on a miss; raises BuildError on toolchain failure. Looks in the configured cache (if
    trusted) and in this process's private one (if made); builds into the configured one,
    or the private one where that is refused or cannot be written."""
    key = cache_key(source)
    root = configured_dir()
    reason = refusal(root)
    if reason is not None:
        root = _private_dir(reason)
    failed = []
    for place in dict.fromkeys(p for p in (root, _private) if p is not None):
        hit = lookup(place, key)
        if hit is not None:
            library = _load(hit, entries)
            if library is not None:
                return library, True
            failed.append(hit)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_build_lock(root, key))
        hit = lookup(root, key)  # a peer may have built it while we waited
        if hit is not None and hit not in failed:
            library = _load(hit, entries)
            if library is not None:
                return library, True
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="gradc-so-"))
        built = Path(tmp) / "kernel.so"
        build.compile_source(source, built)
        try:
            target = store(root, key, built)
        except OSError as e:  # a read-only directory or file system, a full disk
            target = store(_private_dir(f"cannot write the kernel cache {root} ({e})"), key, built)
        return build.Library(target, entries), False
