"""`save` / `load`: tensors and containers of them in a safetensors file, never pickle.

The file is plain safetensors: an 8-byte little-endian header length, a JSON header giving
each tensor's dtype, shape and byte range, then the raw little-endian C-order data. Each
tensor is stored under its key path in the saved object ("state.0.exp_avg"), so a model
state_dict (a flat dict of tensors) gives a file whose tensor names are its own keys,
readable by any safetensors reader.

Everything that is not a tensor (the containers, dict keys of any scalar type, tuples,
numbers, strings, None) is described by a JSON tree stored as a string in the header's
"__metadata__" under "gradc". Loading only parses JSON and copies bytes into arrays: no
code from the file ever runs. A safetensors file written by another tool (no "gradc"
entry) loads as a flat dict {name: tensor} in header order.

What is kept: values, dtypes, shapes, `requires_grad` and the device of each tensor. What
is not: views and storage sharing (each tensor is written on its own, contiguous, so two
views of one storage, or the same tensor reached twice, load as independent copies),
tensor subclasses (they load as Tensor), and the types of dict/list/tuple subclasses
(they load as dict, list, tuple). Numpy scalars are stored as Python numbers.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from typing import IO, Any

import numpy as np

from . import dtypes
from .device import CPU, as_device
from .factories import from_numpy
from .tensor import Tensor

__all__ = ["save", "load", "CorruptFileError"]

_DTYPES = {"BOOL": dtypes.bool_, "U8": dtypes.uint8, "I8": dtypes.int8, "I16": dtypes.int16,
           "I32": dtypes.int32, "I64": dtypes.int64, "F16": dtypes.float16, "F32": dtypes.float32,
           "F64": dtypes.float64}
_NAMES = {d: name for name, d in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # the safetensors format's own limit
_META_KEY = "gradc"
_VERSION = 1

FileLike = str | os.PathLike | IO[bytes]


# ---------------------------------------------------------------- save
def save(obj: Any, f: FileLike) -> None:
    """Write `obj` (a tensor, or nested dicts/lists/tuples of tensors, numbers, strings,
    bools and None) to `f`, a path or a binary file object."""
    tensors: dict[str, Tensor] = {}
    root = _encode(obj, (), tensors)
    structure = json.dumps({"version": _VERSION, "root": root}, allow_nan=False, separators=(",", ":"))
    arrays = {name: _little_endian(t) for name, t in tensors.items()}
    # data laid out by decreasing item size: every tensor then starts aligned to its own type
    order = sorted(arrays, key=lambda name: -arrays[name].itemsize)
    offsets, end = {}, 0
    for name in order:
        offsets[name] = (end, end + arrays[name].nbytes)
        end += arrays[name].nbytes
    header: dict[str, Any] = {"__metadata__": {_META_KEY: structure}}
    for name, arr in arrays.items():
        header[name] = {"dtype": _NAMES[tensors[name].dtype], "shape": list(arr.shape),
                        "data_offsets": list(offsets[name])}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)  # data starts 8-byte aligned (padding spaces are legal JSON)
    with _open(f, "wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for name in order:
            out.write(arrays[name].reshape(-1).view(np.uint8).data)


def _encode(obj: Any, path: tuple[str, ...], tensors: dict[str, Tensor]) -> Any:
    """The JSON node for `obj`; tensors are collected into `tensors` under unique names.

    Nodes: JSON scalars and lists stand for themselves; the one-key objects {"tensor": name}
    (with optional "requires_grad" and "device"), {"tuple": [...]}, {"dict": [[key, value],
    ...]} and {"float": "inf" | "-inf" | "nan"} for everything else."""
    if isinstance(obj, Tensor):
        name = _unique_name(".".join(path) or "tensor", tensors)
        tensors[name] = obj
        node: dict[str, Any] = {"tensor": name}
        if obj.requires_grad:
            node["requires_grad"] = True
        if obj.device != CPU:
            node["device"] = str(obj.device)
        return node
    if isinstance(obj, np.generic) and isinstance(obj, (np.bool_, np.number)):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else {"float": repr(float(obj))}
    if isinstance(obj, dict):
        return {"dict": [[_encode_key(k), _encode(v, (*path, str(k)), tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, (*path, str(i)), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, (*path, str(i)), tensors) for i, v in enumerate(obj)]
    raise TypeError(f"gradc.save can't store an object of type {type(obj).__name__}: only tensors, dicts, lists, "
                    "tuples, numbers, strings, bools and None")


def _encode_key(key: Any) -> Any:
    if isinstance(key, Tensor) or not isinstance(key, (str, int, float, tuple, type(None), np.generic)):
        raise TypeError(f"gradc.save can't store a dict key of type {type(key).__name__}")
    return _encode(key, (), {})


def _unique_name(name: str, taken: dict[str, Tensor]) -> str:
    candidate, n = name, 0
    while candidate in taken or candidate == "__metadata__":
        n += 1
        candidate = f"{name}#{n}"
    return candidate


def _little_endian(t: Tensor) -> np.ndarray:
    arr = t.detach()._host()  # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    return arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=not arr.flags.c_contiguous)


# ---------------------------------------------------------------- load
def load(f: FileLike, map_location: str | Any | None = None, *, weights_only: bool | None = None) -> Any:
    """Read what `save` wrote (or any safetensors file) from a path or binary file object.

    Tensors go to `map_location` when given (a device or its name), else to the device they
    were saved from (the CPU for files from other tools). `weights_only` is accepted for
    PyTorch compatibility: a gradc file can only hold data, so every load is weights-only.
    Raises CorruptFileError (a ValueError) naming the problem for a file that is not valid
    safetensors, and ValueError for valid ones holding dtypes gradc lacks (bfloat16, ...)."""
    del weights_only
    target = as_device(map_location) if map_location is not None else None
    with _open(f, "rb") as fh:
        entries, metadata = _read_header(fh)
        arrays = _read_data(fh, entries)
    tensors = {name: from_numpy(arr) for name, arr in arrays.items()}
    structure = metadata.get(_META_KEY)
    if structure is None:
        return {name: _place(t, target, None) for name, t in tensors.items()}
    try:
        tree = json.loads(structure, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise _corrupt(f"the gradc structure is not valid JSON ({e})") from None
    if not isinstance(tree, dict) or tree.get("version") != _VERSION or "root" not in tree:
        raise _corrupt("unknown gradc structure version (written by a newer gradc?)")
    try:
        return _decode(tree["root"], tensors, target)
    except RecursionError:
        raise _corrupt("the gradc structure is nested too deeply") from None


def _read_header(fh: IO[bytes]) -> tuple[dict[str, tuple[dtypes.dtype, tuple[int, ...], int, int]], dict]:
    """The validated tensor entries {name: (dtype, shape, begin, end)} and the metadata."""
    (size,) = struct.unpack("<Q", _read_exact(fh, 8, "the header length"))
    if size > _MAX_HEADER:
        raise _corrupt(f"header length {size} exceeds the limit of {_MAX_HEADER} bytes")
    raw = _read_exact(fh, size, "the header")
    if not raw.startswith(b"{"):
        raise _corrupt("the header is not a JSON object")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except CorruptFileError:
        raise
    except (ValueError, RecursionError) as e:
        raise _corrupt(f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _corrupt("the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _corrupt("__metadata__ must map strings to strings")
    entries = {name: _parse_entry(name, entry) for name, entry in header.items()}
    data_size = _remaining_bytes(fh)
    last_end, last_name = 0, None
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda e: e[1][2:]):
        if data_size is not None and end > data_size:
            raise _corrupt(f"tensor {name!r} ends at byte {end}, past the end of the data ({data_size} bytes)")
        if begin < last_end and end > begin:
            raise _corrupt(f"tensors {last_name!r} and {name!r} overlap")
        if end > begin:
            last_end, last_name = end, name
    return entries, metadata


def _parse_entry(name: str, entry: Any) -> tuple[dtypes.dtype, tuple[int, ...], int, int]:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise _corrupt(f"tensor {name!r} needs 'dtype', 'shape' and 'data_offsets'")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in _DTYPES:
        if isinstance(code, str) and code.isupper() and code.replace("_", "").isalnum():
            raise ValueError(f"gradc.load: tensor {name!r} has dtype {code}, which gradc does not support "
                             f"(supported: {', '.join(_DTYPES)})")
        raise _corrupt(f"tensor {name!r} has unknown dtype {code!r}")
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise _corrupt(f"tensor {name!r} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)
            and offsets[0] <= offsets[1]):
        raise _corrupt(f"tensor {name!r} has invalid data_offsets {offsets!r}")
    dt = _DTYPES[code]
    nbytes = math.prod(shape) * dt.itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise _corrupt(f"tensor {name!r} of shape {shape} and dtype {code} needs {nbytes} bytes, but its "
                       f"data_offsets {offsets} span {offsets[1] - offsets[0]}")
    return dt, tuple(shape), offsets[0], offsets[1]


def _read_data(fh: IO[bytes], entries: dict) -> dict[str, np.ndarray]:
    """Each tensor's bytes read straight into a fresh array, in file order (any readable
    stream will do; a seekable one skips gaps without reading them)."""
    arrays, position = {}, 0
    for name, (dt, shape, begin, end) in sorted(entries.items(), key=lambda e: e[1][2]):
        if begin < position:  # an empty tensor placed inside another's range: nothing to read
            arrays[name] = np.empty(shape, dt.np)
            continue
        _skip(fh, begin - position)
        arr = np.empty(shape, dt.np.newbyteorder("<"))
        _read_into(fh, arr.reshape(-1).view(np.uint8), f"the data of tensor {name!r}")
        arrays[name] = arr.astype(dt.np, copy=False)
        position = end
    return {name: arrays[name] for name in entries}


def _decode(node: Any, tensors: dict[str, Tensor], target: Any) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, tensors, target) for v in node]
    if not isinstance(node, dict):
        raise _corrupt(f"unexpected node {node!r} in the gradc structure")
    if "tensor" in node:
        name = node["tensor"]
        if not isinstance(name, str) or name not in tensors:
            raise _corrupt(f"the gradc structure refers to a missing tensor {name!r}")
        t = _place(tensors[name], target, node.get("device"))
        if node.get("requires_grad") is True:
            if not t.dtype.is_floating_point:
                raise _corrupt(f"tensor {name!r} of dtype {t.dtype.name} can't require grad")
            t.requires_grad_(True)
        return t
    if len(node) != 1:
        raise _corrupt(f"unexpected node {node!r} in the gradc structure")
    (tag, value), = node.items()
    if tag == "tuple" and isinstance(value, list):
        return tuple(_decode(v, tensors, target) for v in value)
    if tag == "dict" and isinstance(value, list):
        out = {}
        for pair in value:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise _corrupt("a dict entry in the gradc structure is not a [key, value] pair")
            key = _decode(pair[0], tensors, target)
            if isinstance(key, Tensor) or not _hashable(key):
                raise _corrupt(f"invalid dict key {pair[0]!r} in the gradc structure")
            out[key] = _decode(pair[1], tensors, target)
        return out
    if tag == "float" and value in ("inf", "-inf", "nan"):
        return float(value)
    raise _corrupt(f"unexpected node {node!r} in the gradc structure")


def _place(t: Tensor, target: Any, saved_device: Any) -> Tensor:
    dev = target if target is not None else (as_device(saved_device) if saved_device is not None else CPU)
    return t if dev == CPU else t.to(dev)


# ---------------------------------------------------------------- file helpers
def _open(f: FileLike, mode: str):
    if isinstance(f, (str, os.PathLike)):
        return open(f, mode)  # (closed by the caller's `with`)
    return contextlib.nullcontext(f)


def _read_exact(fh: IO[bytes], n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _corrupt(f"the file is truncated (reading {what})")
    return data


def _read_into(fh: IO[bytes], buf: np.ndarray, what: str) -> None:
    view, filled = memoryview(buf), 0
    while filled < len(view):
        got = fh.readinto(view[filled:])
        if not got:
            raise _corrupt(f"the file is truncated (reading {what})")
        filled += got


def _skip(fh: IO[bytes], n: int) -> None:
    if n:
        _read_exact(fh, n, "the data")


def _remaining_bytes(fh: IO[bytes]) -> int | None:
    """Bytes left after the current position, when the stream can tell (else None)."""
    try:
        if not fh.seekable():
            return None
        here = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        fh.seek(here)
        return end - here
    except (AttributeError, OSError):
        return None


def _hashable(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


def _is_count(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _corrupt(f"the header names {key!r} twice")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class CorruptFileError(ValueError):
    """Raised by `load` for a file that is not valid safetensors (or a damaged gradc structure)."""


def _corrupt(reason: str) -> CorruptFileError:
    return CorruptFileError(f"gradc.load: not a valid safetensors file: {reason}")
