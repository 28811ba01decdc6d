"""numpy / DLPack / torch interop, conversions, and the small Tensor protocol methods."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc

NUMPY_MSG = "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."


# ---------------------------------------------------------------- numpy zero-copy
def test_numpy_shares_memory_both_ways():
    t = gradc.arange(6.0).reshape(2, 3)
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.shape == (2, 3) and a.dtype == np.float32
    assert np.shares_memory(a, t.numpy())
    a[0, 1] = 100.0                 # numpy -> tensor
    assert t[0, 1].item() == 100.0
    t.mul_(2)                       # tensor -> numpy
    assert a[0, 1] == 200.0 and a[1, 2] == 10.0


def test_numpy_of_view_is_a_view():
    t = gradc.arange(12.0).reshape(3, 4)
    v = t.t()[1:, ::2]
    a = v.numpy()
    assert a.shape == (3, 2)
    np.testing.assert_array_equal(a, np.arange(12.0, dtype=np.float32).reshape(3, 4).T[1:, ::2])
    a[...] = -1
    assert t.numpy()[::2, 1:].tolist() == [[-1.0] * 3] * 2


def test_numpy_requires_grad_raises(torch):
    x = gradc.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        x.numpy()
    with pytest.raises(RuntimeError) as tinfo:
        torch.ones(2, requires_grad=True).numpy()
    assert str(info.value) == str(tinfo.value) == NUMPY_MSG
    with pytest.raises(RuntimeError, match="requires grad"):
        (x * 2).numpy()
    a = x.detach().numpy()
    a[0] = 5.0
    assert x[0].item() == 5.0   # detach().numpy() still shares memory
    np.testing.assert_array_equal(x.numpy(force=True), [5.0, 1.0])


def test_array_protocol(torch):
    x = gradc.tensor([[1.0, 2.0]], requires_grad=True)
    with pytest.raises(RuntimeError) as tinfo:
        np.asarray(torch.ones(2, requires_grad=True))
    with pytest.raises(RuntimeError) as info:
        np.asarray(x)
    assert str(info.value) == str(tinfo.value) == NUMPY_MSG
    x = x.detach()
    a = np.asarray(x)
    assert a.shape == (1, 2) and a.dtype == np.float32 and np.shares_memory(a, x.numpy())
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(np.array(gradc.arange(3)), [0, 1, 2])
    assert np.add(gradc.tensor([1, 2]), 1).tolist() == [2, 3]


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8,
                                np.uint8, np.bool_])
def test_from_numpy_dtype_and_sharing(torch, dt):
    a = (np.arange(6) % 2 if dt is np.bool_ else np.arange(6)).astype(dt).reshape(2, 3)
    g, t = gradc.from_numpy(a), torch.from_numpy(a.copy())
    assert g.dtype.name == str(t.dtype).replace("torch.", "")
    assert tuple(g.shape) == (2, 3) and g.stride() == t.stride() == (3, 1)
    assert g.data_ptr() == a.__array_interface__["data"][0]
    assert not g.requires_grad
    a[1, 2] = 1
    assert g[1, 2].item() == 1
    g[0, 0] = 1
    assert a[0, 0] == 1


@pytest.mark.parametrize("make", [
    lambda: np.arange(12.0).reshape(3, 4).T,
    lambda: np.arange(24.0).reshape(4, 6)[::2, 1::3],
    lambda: np.arange(24, dtype=np.int32).reshape(2, 3, 4).transpose(2, 0, 1),
    lambda: np.broadcast_to(np.arange(3.0), (4, 3)),
    lambda: np.arange(10.0)[3:],
    lambda: np.zeros((0, 3)),
    lambda: np.array(2.5, dtype=np.float32),
], ids=["transposed", "strided", "permuted", "broadcast", "offset", "empty", "0-dim"])
@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable:UserWarning")
def test_from_numpy_strided(torch, make):
    a = make()
    g, t = gradc.from_numpy(a), torch.from_numpy(a)
    assert tuple(g.shape) == tuple(t.shape)
    assert g.stride() == t.stride()
    assert g.is_contiguous() == t.is_contiguous()
    assert_close(g, t.numpy())
    if a.size and a.flags.writeable:
        assert g.data_ptr() == a.__array_interface__["data"][0]
    # ops on a strided import are right (the layout is honoured by every kernel)
    assert_close(g * 2, (t * 2).numpy())
    assert_close(g.contiguous(), t.contiguous().numpy())


def test_from_numpy_writes_through_strided():
    a = np.zeros((4, 6), dtype=np.float32)
    g = gradc.from_numpy(a[1::2, ::3])
    g.add_(1)
    expected = np.zeros((4, 6), dtype=np.float32)
    expected[1::2, ::3] = 1
    np.testing.assert_array_equal(a, expected)
    g2 = gradc.from_numpy(a.T)
    g2[0] = 7
    assert (a[:, 0] == 7).all()


def test_from_numpy_negative_strides_raise(torch):
    a = np.arange(6.0)[::-1]
    with pytest.raises(ValueError) as tinfo:
        torch.from_numpy(a)
    with pytest.raises(ValueError) as info:
        gradc.from_numpy(a)
    assert str(info.value) == str(tinfo.value)
    with pytest.raises(ValueError, match="negative"):
        gradc.from_numpy(np.arange(12.0).reshape(3, 4)[:, ::-2])


def test_from_numpy_rejects_non_arrays():
    with pytest.raises(TypeError):
        gradc.from_numpy([1, 2, 3])
    with pytest.raises(TypeError):
        gradc.from_numpy(np.array(["a"]))


# ---------------------------------------------------------------- DLPack
def test_dlpack_numpy_round_trip():
    t = gradc.arange(6.0).reshape(2, 3)
    a = np.from_dlpack(t)
    assert a.shape == (2, 3) and np.shares_memory(a, t.numpy())
    t.add_(1)
    assert a[0, 0] == 1.0
    back = gradc.from_dlpack(a)
    assert back.data_ptr() == t.data_ptr()
    back.fill_(9.0)
    assert t.tolist() == [[9.0] * 3] * 2
    n = np.arange(4, dtype=np.int32)
    g = gradc.from_dlpack(n)
    assert g.dtype is gradc.int32 and g.data_ptr() == n.__array_interface__["data"][0]


def test_dlpack_of_strided_view():
    t = gradc.arange(12.0).reshape(3, 4).t()[1:]
    a = np.from_dlpack(t)
    np.testing.assert_array_equal(a, np.arange(12.0, dtype=np.float32).reshape(3, 4).T[1:])
    a[0, 0] = -5
    assert t[0, 0].item() == -5


def test_dlpack_requires_grad_refused():
    x = gradc.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError):
        np.from_dlpack(x)
    np.from_dlpack(x.detach())


@pytest.mark.parametrize("dt", ["float32", "float64", "int64", "int32", "uint8", "bool", "float16"])
def test_dlpack_with_torch_both_ways(torch, dt):
    g = (gradc.arange(6) % 2).to(getattr(gradc, dt)).reshape(2, 3)
    t = torch.from_dlpack(g)
    assert str(t.dtype) == f"torch.{dt}" and tuple(t.shape) == (2, 3)
    assert t.data_ptr() == g.data_ptr()
    with gradc.no_grad():
        g[0, 0] = 1
    assert t[0, 0].item() == 1
    t[1, 2] = 0
    assert g[1, 2].item() == 0
    src = torch.ones(3, 4, dtype=getattr(torch, dt))[:, 1:3]
    g2 = gradc.from_dlpack(src)
    assert g2.data_ptr() == src.data_ptr()
    assert tuple(g2.shape) == (3, 2) and g2.stride() == src.stride()
    src.zero_()
    assert not g2.numpy().any()
    g2.fill_(1)                     # the import is writable, and torch sees the write
    assert src.to(torch.int64).sum().item() == 6


def test_dlpack_torch_transposed_and_ops(torch):
    src = torch.arange(12.0).reshape(3, 4).t()
    g = gradc.from_dlpack(src)
    assert g.stride() == src.stride()
    assert_close(g @ g.t(), (src @ src.t()).numpy())
    back = torch.from_dlpack(g.t())
    assert back.data_ptr() == src.data_ptr() and back.stride() == (4, 1)


# ---------------------------------------------------------------- item / tolist / repr
def test_item_and_tolist(torch):
    assert gradc.tensor(3.5).item() == 3.5 and isinstance(gradc.tensor(3.5).item(), float)
    assert gradc.tensor([7]).item() == 7 and isinstance(gradc.tensor([7]).item(), int)
    assert gradc.tensor([[True]]).item() is True
    with pytest.raises(RuntimeError) as info:
        gradc.tensor([1, 2]).item()
    with pytest.raises(RuntimeError) as tinfo:
        torch.tensor([1, 2]).item()
    assert str(info.value) == str(tinfo.value)
    for data in ([[1, 2], [3, 4]], [1.5, -2.0], 3, [[True, False]], [[]]):
        g, t = gradc.tensor(data), torch.tensor(data)
        assert g.tolist() == t.tolist()
    g = gradc.arange(6).reshape(2, 3).t()
    assert g.tolist() == torch.arange(6).reshape(2, 3).t().tolist()
    x = gradc.ones(2, requires_grad=True)
    assert x.tolist() == [1.0, 1.0]
    assert float(gradc.tensor([2.5])) == 2.5 and int(gradc.tensor(3)) == 3
    assert [1, 2, 3][gradc.tensor(1)] == 2


def test_repr():
    r = repr(gradc.tensor([1.0, 2.5]))
    assert r.startswith("tensor(") and "1." in r and "2.5" in r and "dtype" not in r
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    assert "requires_grad=True" in repr(x)
    y = x * 2
    assert "grad_fn=<MulBackward0>" in repr(y) and "4." in repr(y)
    assert "grad_fn=<SumBackward0>" in repr(y.sum()) or "grad_fn=<Sum" in repr(y.sum())
    assert "dtype=gradc.float64" in repr(gradc.zeros(2, dtype=gradc.float64))
    assert "dtype=gradc.int32" in repr(gradc.zeros(2, dtype=gradc.int32))
    assert "dtype" not in repr(gradc.zeros(2, dtype=gradc.int64))
    assert "True" in repr(gradc.tensor([True]))
    assert "7" in repr(gradc.tensor(7))
    big = repr(gradc.arange(5000))
    assert "..." in big and len(big) < 400


def test_size(torch):
    s = gradc.zeros(2, 3, 4).shape
    assert isinstance(s, gradc.Size) and isinstance(s, tuple)
    assert repr(s) == repr(torch.zeros(2, 3, 4).shape).replace("torch.", "gradc.") == "gradc.Size([2, 3, 4])"
    assert repr(gradc.zeros(()).shape) == "gradc.Size([])"
    assert s.numel() == 24 and gradc.zeros(0, 5).shape.numel() == 0 and gradc.zeros(()).shape.numel() == 1
    assert s == (2, 3, 4) and s[1] == 3 and isinstance(s[1:], gradc.Size) and s[1:] == (3, 4)
    assert gradc.zeros(2, 3).size() == s[:2] and gradc.zeros(2, 3).size(-1) == 3
    assert isinstance(s + (5,), gradc.Size) and s + (5,) == (2, 3, 4, 5)
    assert gradc.zeros(2, 3).numel() == 6 and gradc.numel(gradc.zeros(4)) == 4
    assert gradc.zeros(2, 3).dim() == gradc.zeros(2, 3).ndim == 2
    assert len(gradc.zeros(5, 2)) == 5
    with pytest.raises(TypeError):
        len(gradc.zeros(()))


# ---------------------------------------------------------------- conversions
CONVERSIONS = [
    ("float", lambda t: t.float()), ("double", lambda t: t.double()), ("long", lambda t: t.long()),
    ("int", lambda t: t.int()), ("bool", lambda t: t.bool()), ("half", lambda t: t.half()),
    ("to_float64", lambda t: t.to(t.new_zeros(1).double().dtype)),
]


@pytest.mark.parametrize("src", ["float32", "float64", "int64", "int32", "bool", "uint8"])
@pytest.mark.parametrize("name,fn", CONVERSIONS, ids=[c[0] for c in CONVERSIONS])
def test_dtype_conversions_match_torch(torch, src, name, fn):
    data = np.array([[-1.7, 0.0, 2.5], [3.9, -0.2, 1.0]])
    g = gradc.tensor(data).to(getattr(gradc, src))
    t = torch.tensor(data).to(getattr(torch, src))
    gc, tc = fn(g), fn(t)
    assert gc.dtype.name == str(tc.dtype).replace("torch.", "")
    assert_close(gc, tc.numpy())
    if gc.dtype is g.dtype:
        assert gc is g          # no copy when nothing changes (as torch)
    else:
        assert gc.untyped_storage() is not g.untyped_storage()


def test_to_variants(torch):
    g = gradc.tensor([1.5, -2.5])
    assert g.to(gradc.int64).tolist() == torch.tensor([1.5, -2.5]).to(torch.int64).tolist()
    assert g.to(dtype=gradc.float64).dtype is gradc.float64
    assert g.to("cpu") is g and g.to(gradc.device("cpu")) is g and g.cpu() is g
    assert g.to(float) is g and g.to(int).dtype is gradc.int64 and g.to(bool).dtype is gradc.bool
    assert g.to(gradc.zeros(1, dtype=gradc.int32)).dtype is gradc.int32
    c = g.to(gradc.float32, copy=True)
    assert c is not g and c.untyped_storage() is not g.untyped_storage()
    assert g.type_as(gradc.zeros(1, dtype=gradc.int32)).dtype is gradc.int32
    assert g.type_as(gradc.zeros(1)) is g
    with pytest.raises(TypeError):
        g.to(object())


def test_to_is_differentiable(torch):
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    tx = torch.tensor([1.0, 2.0], requires_grad=True)
    y, ty = x.double() * 3, tx.double() * 3
    assert y.dtype is gradc.float64
    y.sum().backward()
    ty.sum().backward()
    assert x.grad.dtype is gradc.float32
    assert_close(x.grad, tx.grad.numpy())
    assert x.long().grad_fn is None and not x.long().requires_grad


def test_detach_and_requires_grad_(torch):
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert d.untyped_storage() is y.untyped_storage() and d.data_ptr() == y.data_ptr()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    assert y.requires_grad  # the original is untouched
    z = gradc.zeros(2)
    assert z.requires_grad_() is z and z.requires_grad and z.is_leaf
    z.requires_grad_(False)
    assert not z.requires_grad
    z.requires_grad = True
    assert z.requires_grad
    with pytest.raises(RuntimeError) as info:
        y.requires_grad_(False)
    with pytest.raises(RuntimeError) as tinfo:
        (torch.ones(1, requires_grad=True) * 2).requires_grad_(False)
    assert str(info.value).split(".")[0] == str(tinfo.value).split(".")[0]
    with pytest.raises(RuntimeError) as info:
        gradc.zeros(2, dtype=gradc.int64).requires_grad_()
    with pytest.raises(RuntimeError) as tinfo:
        torch.zeros(2, dtype=torch.int64).requires_grad_()
    assert "Tensors of floating point" in str(info.value) and "Tensors of floating point" in str(tinfo.value)
    y.detach_()
    assert not y.requires_grad and y.grad_fn is None


def test_clone_copies(torch):
    x = gradc.arange(6.0).reshape(2, 3).t()
    c = x.clone()
    assert c.untyped_storage() is not x.untyped_storage()
    assert_close(c, x.numpy())
    c.fill_(0)
    assert x.sum().item() == 15.0
    assert x._version == 0 and c._version == 1  # a clone has its own version counter


def test_new_factories_follow_source(torch):
    g = gradc.zeros(2, dtype=gradc.float64)
    t = torch.zeros(2, dtype=torch.float64)
    for name, args in (("new_zeros", (3,)), ("new_ones", ((2, 2),)), ("new_empty", (4,)),
                       ("new_full", ((2,), 3)), ("new_tensor", ([1, 2],))):
        gn, tn = getattr(g, name)(*args), getattr(t, name)(*args)
        assert gn.dtype.name == str(tn.dtype).replace("torch.", "")
        assert tuple(gn.shape) == tuple(tn.shape)
