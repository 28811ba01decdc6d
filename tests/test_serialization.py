"""gradc.save / gradc.load: safetensors files, nested structures, corrupt files, no pickle."""
from __future__ import annotations

import io
import json
import math
import pickle
import struct

import numpy as np
import pytest
from helpers import assert_close

import gradc
from gradc.serialization import CorruptFileError


def _roundtrip(obj, **load_kwargs):
    buf = io.BytesIO()
    gradc.save(obj, buf)
    buf.seek(0)
    return gradc.load(buf, **load_kwargs)


def _parse(raw: bytes):
    """The safetensors header and data section of `raw`, parsed by hand from the spec."""
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:], 8 + n


def _plain_file(tensors: dict, metadata=None, mutate=None) -> bytes:
    """A safetensors file as another tool would write it (numpy arrays in, no gradc entry);
    `mutate(header)` may damage the header before it is written."""
    codes = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64", np.dtype(np.float16): "F16",
             np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if mutate is not None:
        mutate(header)
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


ALL_DTYPES = [gradc.bool, gradc.uint8, gradc.int8, gradc.int16, gradc.int32, gradc.int64, gradc.float16,
              gradc.float32, gradc.float64]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3, 4), (3, 0, 2)])
def test_tensor_roundtrip_every_dtype_and_shape(dtype, shape):
    values = np.random.default_rng(0).standard_normal(shape) * 50
    t = gradc.tensor(values).to(dtype)
    out = _roundtrip(t)
    assert isinstance(out, gradc.Tensor) and out.dtype is dtype and out.shape == t.shape
    assert np.array_equal(out.numpy(), t.numpy())
    assert out.is_contiguous() and not out.requires_grad


def test_non_contiguous_tensors_are_saved_contiguous():
    base = gradc.arange(24.0).reshape(4, 6)
    views = {"t": base.t(), "slice": base[1:, ::2], "expanded": gradc.arange(3.0).expand(4, 3)}
    out = _roundtrip(views)
    for name, view in views.items():
        assert out[name].is_contiguous()
        assert_close(out[name], view)


def test_tensors_sharing_storage_load_independent():
    base = gradc.arange(6.0)
    out = _roundtrip({"base": base, "head": base[:3], "again": base})
    out["base"].add_(100)
    assert_close(out["head"], gradc.tensor([0.0, 1.0, 2.0]))
    assert_close(out["again"], gradc.arange(6.0))


def test_nested_structure_roundtrip():
    t1, t2 = gradc.randn(2, 3), gradc.arange(4)
    obj = {
        "model": {"layer.weight": t1, "layer.bias": gradc.zeros(3)},
        "list": [t2, 1, 2.5, "text", None, True, [], {}],
        "tuple": (0.9, 0.999),
        3: {"nested": (t2, [t1])},
        (1, "k"): "tuple key",
        2.5: "float key",
        None: "none key",
        False: "bool key",
        "floats": [math.inf, -math.inf, 1e-300, -0.0],
        "big": 2 ** 80,
        "unicode ✓": "ünïcode",
    }
    out = _roundtrip(obj)
    assert list(out) == list(obj)
    assert_close(out["model"]["layer.weight"], t1)
    assert_close(out[3]["nested"][1][0], t1)
    assert isinstance(out[3]["nested"], tuple) and isinstance(out[3]["nested"][1], list)
    assert out["tuple"] == (0.9, 0.999) and isinstance(out["tuple"], tuple)
    assert out["list"][1:] == [1, 2.5, "text", None, True, [], {}]
    assert type(out["list"][1]) is int and type(out["list"][5]) is bool
    assert out[(1, "k")] == "tuple key" and out[2.5] == "float key" and out[None] == "none key"
    assert out[False] == "bool key"
    assert out["floats"][:3] == [math.inf, -math.inf, 1e-300] and math.copysign(1, out["floats"][3]) == -1
    assert out["big"] == 2 ** 80 and out["unicode ✓"] == "ünïcode"
    nan = _roundtrip([math.nan])[0]
    assert math.isnan(nan)


def test_non_tensor_roots_and_numpy_scalars():
    assert _roundtrip(None) is None
    assert _roundtrip("s") == "s"
    assert _roundtrip((1, 2)) == (1, 2)
    out = _roundtrip({"n": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True)})
    assert out == {"n": 0.5, "i": 3, "b": True} and type(out["i"]) is int and type(out["b"]) is bool


def test_requires_grad_is_kept():
    w = gradc.randn(3, requires_grad=True)
    out = _roundtrip({"w": w, "d": w.detach()})
    assert out["w"].requires_grad and out["w"].is_leaf and not out["d"].requires_grad
    assert_close(out["w"].detach(), w.detach())


def test_unsupported_objects_raise():
    with pytest.raises(TypeError, match="can't store an object of type set"):
        gradc.save({"s": {1, 2}}, io.BytesIO())
    with pytest.raises(TypeError, match="can't store an object of type object"):
        gradc.save([object()], io.BytesIO())
    with pytest.raises(TypeError, match="can't store a dict key of type Tensor"):
        gradc.save({gradc.zeros(1): 1}, io.BytesIO())


def test_paths_and_file_objects(tmp_path):
    sd = {"w": gradc.randn(2, 2)}
    gradc.save(sd, tmp_path / "a.safetensors")
    gradc.save(sd, str(tmp_path / "b.safetensors"))
    with open(tmp_path / "c.safetensors", "wb") as fh:
        gradc.save(sd, fh)
    for name in "abc":
        path = tmp_path / f"{name}.safetensors"
        assert_close(gradc.load(path)["w"], sd["w"])
        assert_close(gradc.load(str(path), map_location="cpu")["w"], sd["w"])
        with open(path, "rb") as fh:
            assert_close(gradc.load(fh, weights_only=True)["w"], sd["w"])
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "c.safetensors").read_bytes()


# ---------------------------------------------------------------- the file format
def test_state_dict_file_is_plain_safetensors(torch):
    sd = {"fc1.weight": gradc.randn(4, 3), "fc1.bias": gradc.randn(4).to(gradc.float16),
          "steps": gradc.tensor([7], dtype=gradc.int64), "mask": gradc.tensor([True, False])}
    buf = io.BytesIO()
    gradc.save(sd, buf)
    header, data, data_start = _parse(buf.getvalue())
    assert data_start % 8 == 0
    metadata = header.pop("__metadata__")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    assert list(header) == list(sd)  # the tensor names are the state_dict's keys
    codes = {"fc1.weight": "F32", "fc1.bias": "F16", "steps": "I64", "mask": "BOOL"}
    torch_dtypes = {"F32": torch.float32, "F16": torch.float16, "I64": torch.int64, "BOOL": torch.bool}
    spans = []
    for name, entry in header.items():
        assert entry["dtype"] == codes[name] and entry["shape"] == list(sd[name].shape)
        begin, end = entry["data_offsets"]
        spans.append((begin, end))
        assert begin % sd[name].element_size() == 0  # each tensor aligned to its item size
        # what a torch user would do with the bytes
        ours = torch.frombuffer(bytearray(data[begin:end]), dtype=torch_dtypes[entry["dtype"]])
        assert torch.equal(ours.reshape(entry["shape"]), torch.from_numpy(sd[name].numpy()))
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # no gaps, no overlaps


def test_nested_tensors_are_named_by_key_path():
    buf = io.BytesIO()
    gradc.save({"state": {0: {"exp_avg": gradc.zeros(2)}}, "x": [gradc.ones(1), (gradc.ones(1),)],
                "__metadata__": gradc.ones(1)}, buf)
    header, _, _ = _parse(buf.getvalue())
    names = [k for k in header if k != "__metadata__"]
    assert names == ["state.0.exp_avg", "x.0", "x.1.0", "__metadata__#1"]
    buf.seek(0)
    assert_close(gradc.load(buf)["__metadata__"], gradc.ones(1))


def test_top_level_tensor_name():
    buf = io.BytesIO()
    gradc.save(gradc.ones(2), buf)
    header, _, _ = _parse(buf.getvalue())
    assert [k for k in header if k != "__metadata__"] == ["tensor"]


def test_name_collisions_get_suffixes():
    obj = {"a.b": gradc.zeros(1), "a": {"b": gradc.ones(1)}}
    out = _roundtrip(obj)
    assert_close(out["a.b"], gradc.zeros(1))
    assert_close(out["a"]["b"], gradc.ones(1))


def test_foreign_file_loads_as_flat_dict():
    arrays = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array([1, -2], np.int64),
              "e": np.zeros((0, 2), np.float16)}
    for metadata in (None, {"format": "pt"}):
        out = gradc.load(io.BytesIO(_plain_file(arrays, metadata)))
        assert list(out) == ["b", "a", "e"]
        for name, arr in arrays.items():
            assert out[name].dtype is gradc.from_numpy(arr).dtype
            assert np.array_equal(out[name].numpy(), arr)


def test_loaded_tensors_are_writable_and_independent():
    raw = _plain_file({"x": np.ones(3, np.float32), "y": np.ones(3, np.float32)})
    out = gradc.load(io.BytesIO(raw))
    out["x"].mul_(5)
    assert_close(out["y"], gradc.ones(3))


def test_cross_check_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    sd = {"w": gradc.randn(3, 2), "i": gradc.arange(5, dtype=gradc.int32)}
    gradc.save(sd, tmp_path / "ours.safetensors")
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert sorted(theirs) == sorted(sd)
    for name in sd:
        assert np.array_equal(theirs[name], sd[name].numpy())
    st.save_file({k: v.numpy() for k, v in sd.items()}, str(tmp_path / "theirs.safetensors"))
    back = gradc.load(tmp_path / "theirs.safetensors")
    for name in sd:
        assert_close(back[name], sd[name])


# ---------------------------------------------------------------- checkpoints
def test_optimizer_checkpoint_roundtrip_continues_identically():
    def make(values):
        params = [gradc.tensor(v, requires_grad=True) for v in values]
        opt = gradc.optim.Adam([{"params": params[:1], "lr": 0.1}, {"params": params[1:]}], lr=0.01,
                               amsgrad=True)
        return params, opt

    def train(params, opt, n):
        for _ in range(n):
            opt.zero_grad()
            sum(((p - 3.0) ** 2).sum() for p in params).backward()
            opt.step()

    init = [np.array([1.0, -1.0], np.float32), np.array([[0.5], [2.0]], np.float32)]
    p1, opt1 = make(init)
    train(p1, opt1, 3)
    sched = gradc.optim.lr_scheduler.StepLR(opt1, step_size=2, gamma=0.5)
    checkpoint = {"model": {f"p{i}": p for i, p in enumerate(p1)}, "optim": opt1.state_dict(),
                  "sched": sched.state_dict(), "epoch": 3}
    loaded = _roundtrip(checkpoint)
    osd = loaded["optim"]
    assert osd["param_groups"][1]["betas"] == (0.9, 0.999) and isinstance(osd["param_groups"][1]["betas"], tuple)
    assert sorted(osd["state"]) == [0, 1] and osd["state"][0]["step"].dtype is gradc.float32
    assert osd["param_groups"] == opt1.state_dict()["param_groups"]
    assert loaded["sched"] == sched.state_dict() and loaded["epoch"] == 3

    p2, opt2 = make([p.detach().numpy() for p in loaded["model"].values()])
    opt2.load_state_dict(osd)
    train(p1, opt1, 4)
    train(p2, opt2, 4)
    for a, b in zip(p1, p2):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())


# ---------------------------------------------------------------- corrupt files
def _valid() -> bytes:
    buf = io.BytesIO()
    gradc.save({"a": gradc.arange(4.0), "b": {"c": gradc.ones(2, dtype=gradc.int64)}}, buf)
    return buf.getvalue()


def _rewrite_header(raw: bytes, edit) -> bytes:
    header, data, _ = _parse(raw)
    edit(header)
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def _framed(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


def _set_structure(tree):
    def edit(header):
        header["__metadata__"]["gradc"] = json.dumps(tree)
    return edit


CORRUPT = {
    "empty": (lambda: b"", "truncated"),
    "short_length": (lambda: b"\x01\x00", "truncated"),
    "huge_header": (lambda: struct.pack("<Q", 2 ** 40) + b"{}", "exceeds the limit"),
    "truncated_header": (lambda: struct.pack("<Q", 100) + b'{"a":', "truncated"),
    "not_json": (lambda: _framed(b"{abc}"), "not valid JSON"),
    "not_object": (lambda: _framed(b"[]"), "not a JSON object"),
    "not_utf8": (lambda: _framed(b"{\xff}"), "not valid JSON"),
    "nan_constant": (lambda: _plain_file({"x": np.ones(1, np.float32)},
                                         mutate=lambda h: h["x"].update(shape=[float("nan")])), "not valid JSON"),
    "duplicate_name": (lambda: _framed(b'{"x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'
                                       b'"x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'), "names 'x' twice"),
    "entry_not_object": (lambda: _plain_file({}, mutate=lambda h: h.update(x=[1])), "needs 'dtype'"),
    "missing_offsets": (lambda: _plain_file({"x": np.ones(2, np.float32)},
                                            mutate=lambda h: h["x"].pop("data_offsets")), "needs 'dtype'"),
    "unknown_dtype": (lambda: _plain_file({"x": np.ones(2, np.float32)},
                                          mutate=lambda h: h["x"].update(dtype="f32")), "unknown dtype 'f32'"),
    "negative_shape": (lambda: _plain_file({"x": np.ones(2, np.float32)},
                                           mutate=lambda h: h["x"].update(shape=[-2])), "invalid shape"),
    "bool_shape": (lambda: _plain_file({"x": np.ones(1, np.float32)},
                                       mutate=lambda h: h["x"].update(shape=[True])), "invalid shape"),
    "reversed_offsets": (lambda: _plain_file({"x": np.ones(2, np.float32)},
                                             mutate=lambda h: h["x"].update(data_offsets=[8, 0])),
                         "invalid data_offsets"),
    "size_mismatch": (lambda: _plain_file({"x": np.ones(2, np.float32)},
                                          mutate=lambda h: h["x"].update(shape=[3])), "needs 12 bytes"),
    "out_of_bounds": (lambda: _plain_file({"x": np.ones(2, np.float32)},
                                          mutate=lambda h: h["x"].update(data_offsets=[4, 12])), "past the end"),
    "overlap": (lambda: _plain_file({"x": np.ones(2, np.float32), "y": np.ones(2, np.float32)},
                                    mutate=lambda h: h["y"].update(data_offsets=[4, 12])), "overlap"),
    "truncated_data": (lambda: _valid()[:-3], "past the end"),
    "bad_metadata": (lambda: _plain_file({}, metadata={"k": 1}), "__metadata__ must map strings to strings"),
    "structure_not_json": (lambda: _rewrite_header(_valid(), lambda h: h["__metadata__"].update(gradc="{")),
                           "structure is not valid JSON"),
    "structure_version": (lambda: _rewrite_header(_valid(), _set_structure({"version": 99, "root": None})),
                          "unknown gradc structure version"),
    "missing_tensor": (lambda: _rewrite_header(_valid(), _set_structure({"version": 1, "root": {"tensor": "zz"}})),
                       "missing tensor 'zz'"),
    "unknown_tag": (lambda: _rewrite_header(_valid(), _set_structure({"version": 1, "root": {"set": [1]}})),
                    "unexpected node"),
    "bad_dict_pair": (lambda: _rewrite_header(_valid(), _set_structure({"version": 1, "root": {"dict": [[1]]}})),
                      "not a \\[key, value\\] pair"),
    "unhashable_key": (lambda: _rewrite_header(_valid(),
                                               _set_structure({"version": 1, "root": {"dict": [[[1], 2]]}})),
                       "invalid dict key"),
    "unhashable_nested_key": (lambda: _rewrite_header(_valid(), _set_structure(
        {"version": 1, "root": {"dict": [[{"tuple": [{"tuple": [[1]]}]}, 2]]}})), "invalid dict key"),
    "int_requires_grad": (lambda: _rewrite_header(_valid(), _set_structure(
        {"version": 1, "root": {"tensor": "b.c", "requires_grad": True}})), "can't require grad"),
    "deep_structure": (lambda: _rewrite_header(_valid(), lambda h: h["__metadata__"].update(
        gradc='{"version":1,"root":' + "[" * 100000 + "]" * 100000 + "}")), "structure"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_files_raise_clear_errors(name):
    make, message = CORRUPT[name]
    with pytest.raises(CorruptFileError, match=message):
        gradc.load(io.BytesIO(make()))


def test_truncated_data_on_a_stream_that_cannot_seek():
    class Stream(io.RawIOBase):
        def __init__(self, raw):
            self.inner = io.BytesIO(raw)

        def readable(self):
            return True

        def readinto(self, b):
            return self.inner.readinto(b)

    assert_close(gradc.load(Stream(_valid()))["a"], gradc.arange(4.0))
    with pytest.raises(CorruptFileError, match="truncated"):
        gradc.load(Stream(_valid()[:-3]))


def test_dtypes_gradc_lacks_are_refused_by_name():
    raw = _plain_file({"x": np.ones(2, np.float16)}, mutate=lambda h: h["x"].update(dtype="BF16"))
    with pytest.raises(ValueError, match="dtype BF16, which gradc does not support"):
        gradc.load(io.BytesIO(raw))


def test_load_never_unpickles(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    raw = _valid()
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    out = gradc.load(io.BytesIO(raw))
    assert_close(out["b"]["c"], gradc.ones(2, dtype=gradc.int64))
