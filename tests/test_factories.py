"""Factories (dtypes, shapes, defaults), the RNG seed, and dtype promotion, against PyTorch."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import assert_close

import gradc

pytestmark = pytest.mark.filterwarnings("ignore:Creating a tensor from a list of numpy.ndarrays:UserWarning")


def _name(dt) -> str:
    """'float32' for gradc.float32 and torch.float32 alike."""
    return dt.name if isinstance(dt, gradc.dtype) else str(dt).replace("torch.", "")


def _same_meta(g, t):
    assert tuple(g.shape) == tuple(t.shape)
    assert _name(g.dtype) == _name(t.dtype)
    assert g.is_contiguous() and g.stride() == t.stride()


# ---------------------------------------------------------------- shapes and default dtypes
SIZE_ARGS = [((2, 3), {}), (((2, 3),), {}), (([4],), {}), ((0, 3), {}), (((),), {}), ((5,), {}),
             ((2, 1, 3), {"dtype": "float64"}), ((3,), {"dtype": "int32"}), ((2,), {"dtype": "bool"}),
             ((2, 2), {"dtype": "int64"}), ((2,), {"dtype": "float16"}), ((2,), {"dtype": "uint8"})]


def _kw(lib, kw):
    return {k: getattr(lib, v) if k == "dtype" else v for k, v in kw.items()}


@pytest.mark.parametrize("name", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("args,kw", SIZE_ARGS)
def test_sized_factories(torch, name, args, kw):
    g = getattr(gradc, name)(*args, **_kw(gradc, kw))
    t = getattr(torch, name)(*args, **_kw(torch, kw))
    _same_meta(g, t)
    if name != "empty":
        assert_close(g, t.numpy())
    assert not g.requires_grad and g.is_leaf and g.grad_fn is None
    assert g.device == gradc.device("cpu")


def test_size_object_accepted(torch):
    s = gradc.zeros(2, 3).shape
    for fn in (gradc.zeros, gradc.ones, gradc.empty, gradc.rand, gradc.randn):
        assert fn(s).shape == s
    assert gradc.full(s, 2.0).shape == s


@pytest.mark.parametrize("fill,kw", [
    (1, {}), (1.5, {}), (True, {}), (-3, {"dtype": "float64"}), (2.5, {"dtype": "int32"}),
    (0, {"dtype": "bool"}), (7, {"dtype": "uint8"}),
])
def test_full_dtype_inference(torch, fill, kw):
    g = gradc.full((2, 3), fill, **_kw(gradc, kw))
    t = torch.full((2, 3), fill, **_kw(torch, kw))
    _same_meta(g, t)
    assert_close(g, t.numpy())


@pytest.mark.parametrize("args,kw", [
    ((5,), {}), ((5.0,), {}), ((1, 10, 3), {}), ((0, 1, 0.1), {}), ((5, 0, -1), {}), ((-3, 3), {}),
    ((0, 10), {"dtype": "float64"}), ((0.5, 4), {}), ((0, 2.5, 0.5), {"dtype": "float64"}),
    ((10,), {"dtype": "int32"}), ((0,), {}), ((3, 3), {}), ((1, 2, 0.3), {}), ((0, -1, -0.25), {}),
    ((np.int64(4),), {}), ((1, 10, 2.5), {"dtype": "int64"}), ((0.5, 4), {"dtype": "int64"}),
    ((-1.5, 3, 1.2), {"dtype": "int32"}), ((0, 5, 1.5), {"dtype": "int64"}), ((0, 0, -1), {}),
    ((10, 0, -3), {"dtype": "int16"}), ((-1.0, -4.0, -0.5), {}),
])
def test_arange(torch, args, kw):
    g = gradc.arange(*args, **_kw(gradc, kw))
    t = torch.arange(*args, **_kw(torch, kw))
    _same_meta(g, t)
    assert_close(g, t.numpy())


def test_arange_errors(torch):
    with pytest.raises(RuntimeError):
        torch.arange(0, 3, 0)
    with pytest.raises(RuntimeError):
        gradc.arange(0, 3, 0)
    for args in ((0, 3, -1), (3, 0), (0, 3, 0)):
        with pytest.raises(RuntimeError) as tinfo:
            torch.arange(*args)
        with pytest.raises(RuntimeError) as info:
            gradc.arange(*args)
        assert str(info.value) == str(tinfo.value)


@pytest.mark.parametrize("args,kw", [
    ((0, 1, 5), {}), ((-2, 2, 1), {}), ((1, 1, 3), {}), ((0, 10, 0), {}), ((0, 1, 7), {"dtype": "float64"}),
    ((0, 10, 5), {"dtype": "int64"}), ((3, -1, 4), {}),
])
def test_linspace(torch, args, kw):
    g = gradc.linspace(*args, **_kw(gradc, kw))
    t = torch.linspace(*args, **_kw(torch, kw))
    _same_meta(g, t)
    assert_close(g, t.numpy())


@pytest.mark.parametrize("args,kw", [((3,), {}), ((2, 4), {}), ((4, 2), {}), ((3,), {"dtype": "int64"}),
                                     ((0,), {}), ((2,), {"dtype": "bool"})])
def test_eye(torch, args, kw):
    g = gradc.eye(*args, **_kw(gradc, kw))
    t = torch.eye(*args, **_kw(torch, kw))
    _same_meta(g, t)
    assert_close(g, t.numpy())


# ---------------------------------------------------------------- tensor(): dtype inference
TENSOR_DATA = [
    1, 2.5, True, [1, 2, 3], [1.0, 2], [True, False], [True, 1], [[1, 2], [3, 4]], [], [[]],
    [[1.5], [2.5]], np.float64(1.5), np.int32(3), np.array([1, 2], dtype=np.int32),
    np.array([1.0, 2.0]), np.array([1.0], dtype=np.float16), np.array([[True]]), np.array(3),
    np.arange(6, dtype=np.uint8).reshape(2, 3), (1, 2), [np.float32(1), np.float32(2)],
    [np.float64(1.0), 2], [1, np.float16(2)], [np.int32(1), np.int64(2)], [np.int32(1), 2.5], [np.int32(1), 2],
    np.bool_(True), [np.array([1, 2], dtype=np.int16), np.array([3, 4], dtype=np.int16)], [[1, 2.5], [True, 0]],
]


@pytest.mark.parametrize("data", TENSOR_DATA, ids=lambda d: type(d).__name__ + ":" + repr(d).replace("\n", ""))
def test_tensor_dtype_inference(torch, data):
    g, t = gradc.tensor(data), torch.tensor(data)
    _same_meta(g, t)
    assert_close(g, t.numpy())


def test_tensor_copies_data(torch):
    a = np.arange(4.0)
    g = gradc.tensor(a)
    a[0] = 100
    assert g[0].item() == 0.0
    src = gradc.arange(3.0)
    c = gradc.tensor(src)
    assert c.untyped_storage() is not src.untyped_storage()
    src.add_(1)
    assert c.tolist() == [0.0, 1.0, 2.0]


def test_tensor_from_tensors_and_dtype_arg(torch):
    parts = [gradc.tensor(1.0), gradc.tensor(2.0)]
    g = gradc.tensor(parts)
    t = torch.tensor([torch.tensor(1.0), torch.tensor(2.0)])
    _same_meta(g, t)
    g2 = gradc.tensor([[1, 2], [3, 4]], dtype=gradc.float64)
    t2 = torch.tensor([[1, 2], [3, 4]], dtype=torch.float64)
    _same_meta(g2, t2)
    g3 = gradc.tensor([1.7, -2.7], dtype=gradc.int64)
    t3 = torch.tensor([1.7, -2.7], dtype=torch.int64)
    assert_close(g3, t3.numpy())
    g4 = gradc.tensor(3.5, requires_grad=True)
    assert g4.requires_grad and g4.is_leaf and g4.ndim == 0


def test_tensor_bad_data(torch):
    with pytest.raises((TypeError, ValueError)):
        torch.tensor([[1, 2], [3]])
    with pytest.raises((TypeError, ValueError)):
        gradc.tensor([[1, 2], [3]])
    with pytest.raises(TypeError):
        gradc.tensor("abc")


# ---------------------------------------------------------------- *_like
LIKE_SOURCES = [
    lambda lib: lib.zeros(2, 3),
    lambda lib: lib.zeros(2, 3, dtype=lib.int32),
    lambda lib: lib.zeros(3, 2).t(),
    lambda lib: lib.zeros((), dtype=lib.float64),
    lambda lib: lib.zeros(2, dtype=lib.bool),
]


@pytest.mark.parametrize("make", LIKE_SOURCES)
@pytest.mark.parametrize("name,extra", [("zeros_like", ()), ("ones_like", ()), ("empty_like", ()),
                                        ("full_like", (3,)), ("rand_like", ()), ("randn_like", ())])
def test_like_factories(torch, make, name, extra):
    g, t = make(gradc), make(torch)
    if name in ("rand_like", "randn_like") and not t.dtype.is_floating_point:
        with pytest.raises(RuntimeError):
            getattr(torch, name)(t)
        with pytest.raises((RuntimeError, TypeError)):
            getattr(gradc, name)(g)
        return
    gl, tl = getattr(gradc, name)(g, *extra), getattr(torch, name)(t, *extra)
    assert tuple(gl.shape) == tuple(tl.shape)
    assert _name(gl.dtype) == _name(tl.dtype)
    assert gl.untyped_storage() is not g.untyped_storage()
    if name in ("zeros_like", "ones_like", "full_like"):
        assert_close(gl, tl.numpy())
    gd = getattr(gradc, name)(g, *extra, dtype=gradc.float64)
    td = getattr(torch, name)(t, *extra, dtype=torch.float64)
    assert _name(gd.dtype) == _name(td.dtype)
    gr = getattr(gradc, name)(gradc.zeros(2), *extra, requires_grad=True)
    assert gr.requires_grad and gr.is_leaf


def test_full_like_fill_keeps_input_dtype(torch):
    g = gradc.full_like(gradc.zeros(3, dtype=gradc.int64), 2.9)
    t = torch.full_like(torch.zeros(3, dtype=torch.int64), 2.9)
    _same_meta(g, t)
    assert_close(g, t.numpy())


# ---------------------------------------------------------------- random factories and the seed
@pytest.mark.parametrize("fn", [
    lambda: gradc.rand(3, 4), lambda: gradc.randn(5), lambda: gradc.randint(0, 10, (6,)),
    lambda: gradc.randperm(8), lambda: gradc.rand_like(gradc.zeros(2, 2)),
    lambda: gradc.randn(2, dtype=gradc.float64), lambda: gradc.randint(5, (3, 3)),
])
def test_manual_seed_reproducible(fn):
    gradc.manual_seed(123)
    a = fn()
    b = fn()
    gradc.manual_seed(123)
    c = fn()
    gradc.manual_seed(124)
    d = fn()
    assert a.tolist() == c.tolist()
    assert a.tolist() != b.tolist() or a.numel() <= 1
    assert a.tolist() != d.tolist() or a.numel() <= 1


def test_random_factory_dtypes_and_ranges(torch):
    for name, args in (("rand", (1000,)), ("randn", (1000,)), ("rand", (2, 3)), ("randn", ((4,),))):
        g, t = getattr(gradc, name)(*args), getattr(torch, name)(*args)
        _same_meta(g, t)
        g64 = getattr(gradc, name)(*args, dtype=gradc.float64)
        assert g64.dtype is gradc.float64
    u = gradc.rand(10000).numpy()
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.02
    n = gradc.randn(10000).numpy()
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1.0) < 0.05
    r = gradc.randint(-3, 4, (5000,))
    tr = torch.randint(-3, 4, (5000,))
    _same_meta(r, tr)
    assert set(r.tolist()) == set(range(-3, 4))
    r2 = gradc.randint(3, (10,))
    tr2 = torch.randint(3, (10,))
    _same_meta(r2, tr2)
    assert min(r2.tolist()) >= 0 and max(r2.tolist()) < 3
    p = gradc.randperm(20)
    _same_meta(p, torch.randperm(20))
    assert sorted(p.tolist()) == list(range(20))


# ---------------------------------------------------------------- requires_grad=
@pytest.mark.parametrize("make", [
    lambda lib: lib.zeros(2, requires_grad=True), lambda lib: lib.ones(2, 3, requires_grad=True),
    lambda lib: lib.rand(2, requires_grad=True), lambda lib: lib.randn(2, requires_grad=True),
    lambda lib: lib.full((2,), 1.5, requires_grad=True), lambda lib: lib.tensor([1.0], requires_grad=True),
    lambda lib: lib.arange(3.0, requires_grad=True), lambda lib: lib.linspace(0, 1, 3, requires_grad=True),
    lambda lib: lib.eye(2, requires_grad=True), lambda lib: lib.empty(2, requires_grad=True),
])
def test_factory_requires_grad(torch, make):
    g, t = make(gradc), make(torch)
    assert g.requires_grad and t.requires_grad
    assert g.is_leaf and g.grad_fn is None
    (g * 2).sum().backward()
    assert g.grad is not None and g.grad.shape == g.shape


@pytest.mark.parametrize("make", [
    lambda lib: lib.zeros(2, dtype=lib.int64, requires_grad=True),
    lambda lib: lib.tensor([1, 2], requires_grad=True),
    lambda lib: lib.arange(3, requires_grad=True),
    lambda lib: lib.full((2,), 1, requires_grad=True),
])
def test_factory_requires_grad_int_raises(torch, make):
    with pytest.raises(RuntimeError) as tinfo:
        make(torch)
    with pytest.raises(RuntimeError) as info:
        make(gradc)
    assert "Tensors of floating point" in str(tinfo.value)
    assert "Tensors of floating point" in str(info.value)


# ---------------------------------------------------------------- dtype promotion
DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


def _operand(lib, kind, dt):
    if kind == "dim":
        return lib.ones(2, dtype=getattr(lib, dt))
    if kind == "zero":
        return lib.ones((), dtype=getattr(lib, dt))
    return {"bool": True, "int64": 2, "float32": 2.5}[dt]   # Python scalars


GRID = ([("dim", a, "dim", b) for a, b in itertools.product(DTYPES, DTYPES)]
        + [("dim", a, "zero", b) for a, b in itertools.product(DTYPES, DTYPES)]
        + [("zero", a, "zero", b) for a, b in itertools.product(DTYPES, DTYPES)]
        + [(k, a, "scalar", s) for k in ("dim", "zero") for a in DTYPES for s in ("bool", "int64", "float32")])


@pytest.mark.parametrize("ka,a,kb,b", GRID)
def test_result_type_matches_torch(torch, ka, a, kb, b):
    ga, gb = _operand(gradc, ka, a), _operand(gradc, kb, b)
    ta, tb = _operand(torch, ka, a), _operand(torch, kb, b)
    expected = _name(torch.result_type(ta, tb))
    assert gradc.result_type(ga, gb).name == expected
    assert gradc.result_type(gb, ga).name == expected
    assert _name((ga + gb).dtype) == _name((ta + tb).dtype) == expected
    assert _name((gb * ga).dtype) == _name((tb * ta).dtype) == expected


def test_promote_types_matches_torch(torch):
    for a, b in itertools.product(DTYPES, DTYPES):
        expected = _name(torch.promote_types(getattr(torch, a), getattr(torch, b)))
        assert gradc.promote_types(getattr(gradc, a), getattr(gradc, b)).name == expected


@pytest.mark.parametrize("dt", ["float64", "float16"])
def test_default_dtype_changes_factories(torch, dt):
    old = gradc.get_default_dtype()
    try:
        gradc.set_default_dtype(getattr(gradc, dt))
        assert gradc.zeros(2).dtype.name == dt
        assert gradc.tensor([1.5]).dtype.name == dt
        assert gradc.arange(2.0).dtype.name == dt
        assert gradc.full((1,), 2.5).dtype.name == dt
        assert (gradc.tensor([1, 2]) * 1.5).dtype.name == dt
        assert gradc.tensor([1, 2]).dtype is gradc.int64
    finally:
        gradc.set_default_dtype(old)
    assert gradc.zeros(2).dtype is old
    with pytest.raises(TypeError):
        gradc.set_default_dtype(gradc.int64)


@pytest.mark.parametrize("fill", [np.int32(3), np.float64(1.5), np.float16(2.5), np.int8(-2)], ids=repr)
def test_full_numpy_scalar_fill(torch, fill):
    g, t = gradc.full((2,), fill), torch.full((2,), fill)
    _same_meta(g, t)
    assert_close(g, t.numpy())


def test_full_tensor_fill(torch):
    for fill in (3.0, 2):
        g, t = gradc.full((2,), gradc.tensor(fill)), torch.full((2,), torch.tensor(fill))
        _same_meta(g, t)
        assert_close(g, t.numpy())


def test_as_tensor_shares_when_possible(torch):
    a = np.zeros(3)
    g, t = gradc.as_tensor(a), torch.as_tensor(a)
    _same_meta(g, t)
    g.add_(1)
    assert a.tolist() == [1.0, 1.0, 1.0]                       # shared, as torch.as_tensor
    c = gradc.as_tensor(a, dtype=gradc.float32)                 # another dtype: a copy
    assert c.dtype is gradc.float32 and c.data_ptr() != g.data_ptr()
    s = gradc.as_tensor(np.arange(12.0).reshape(3, 4).T)        # strided: still shared
    assert s.stride() == torch.as_tensor(np.arange(12.0).reshape(3, 4).T).stride()
    r = gradc.as_tensor(np.arange(4.0)[::-1])                   # negative strides: copied
    assert r.tolist() == [3.0, 2.0, 1.0, 0.0]
    x = gradc.zeros(2)
    assert gradc.as_tensor(x) is x and gradc.as_tensor(x, dtype=gradc.float32) is x
    assert gradc.as_tensor(x, dtype=gradc.float64).dtype is gradc.float64
    lst = gradc.as_tensor([1, 2])
    _same_meta(lst, torch.as_tensor([1, 2]))
