"""Basic and advanced indexing, `__setitem__`, and their gradients, against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc

SHAPE = (4, 5, 6)


def _data(shape=SHAPE, dtype=np.float32):
    return np.random.randn(*shape).astype(dtype)


def _key(lib, key):
    """The same key for gradc or torch: numpy int/bool arrays become each library's tensors."""
    if isinstance(key, tuple):
        return tuple(_key(lib, k) for k in key)
    if isinstance(key, np.ndarray):
        return lib.tensor(key)
    return key


BASIC_KEYS = [
    1, -1, -4, (2, 3), (-1, -2, -3), slice(None), slice(1, 3), slice(None, None, 2), slice(-3, None),
    slice(1, -1, 3), (slice(None), 2), (Ellipsis, 1), (Ellipsis, None), (None, 0), (0, None, slice(1, 4)),
    (Ellipsis,), (1, Ellipsis, slice(None, None, 4)), (slice(None), None, slice(2, 4), None),
    (None, Ellipsis, None), slice(3, 1), slice(10, 20), (slice(None), slice(None), -1), None, (),
]

ADV_KEYS = [
    np.array([0, 2, 3]),
    np.array([3, -1, 0, 3]),                                       # repeated and negative
    [0, 2],                                                        # a Python list
    np.array([[0, 1], [3, 2]]),                                    # 2-D index
    (np.array([0, 1]), np.array([2, 4])),                          # two adjacent advanced
    (np.array([[0], [3]]), np.array([1, 2, 4])),                   # broadcast index tensors
    (slice(None), np.array([4, 0])),                               # advanced after a slice
    (Ellipsis, np.array([5, 1, 1])),
    (np.array([1, 2]), slice(1, 4)),                               # mixed basic + advanced
    (np.array([0, 3]), slice(None), np.array([1, 5])),             # non-adjacent: dims go first
    (1, slice(None), np.array([0, 2])),                            # int + slice + advanced
    (np.array([0, 2]), 1),                                         # advanced + int: adjacent
    (np.array([0, 2]), slice(None), 3),                            # advanced, slice, int: split
    (None, np.array([2, 1])),                                      # None + advanced
    (slice(1, 3), None, np.array([0, 4])),
    np.array([True, False, True, True]),                           # bool mask on dim 0
    (slice(None), np.array([True, False, False, True, True])),     # mask on dim 1
    "mask_full",                                                   # full-shape mask
    "mask_2d",                                                     # mask over the first two dims
    (np.array([True, False, True, False]), slice(2, 5), np.array([1, 3])),
    np.array([], dtype=np.int64),
]


def _resolve(key, x):
    if key == "mask_full":
        return x > 0
    if key == "mask_2d":
        return x.sum(-1) > 0
    return key


@pytest.mark.parametrize("key", BASIC_KEYS, ids=repr)
def test_basic_index_matches_torch(torch, key):
    d = _data()
    g, t = gradc.tensor(d), torch.tensor(d)
    gv, tv = g[key], t[key]
    assert tuple(gv.shape) == tuple(tv.shape)
    assert gv.stride() == tv.stride()
    assert gv.storage_offset() == tv.storage_offset()
    assert_close(gv, tv.numpy())
    assert gv.untyped_storage() is g.untyped_storage()  # a view


def _mixed_key(lib, key, x):
    k = _resolve(key, x)
    return k if isinstance(k, str) else _key(lib, k)


@pytest.mark.parametrize("key", ADV_KEYS, ids=lambda k: repr(k).replace("\n", ""))
def test_advanced_index_matches_torch(torch, key):
    d = _data()
    g, t = gradc.tensor(d), torch.tensor(d)
    gk = _resolve(key, g) if isinstance(key, str) else _key(gradc, key)
    tk = _resolve(key, t) if isinstance(key, str) else _key(torch, key)
    gv, tv = g[gk], t[tk]
    assert tuple(gv.shape) == tuple(tv.shape)
    assert_close(gv, tv.numpy())
    assert gv.untyped_storage() is not g.untyped_storage()  # advanced indexing copies
    gv.fill_(123.0) if gv.numel() else None
    assert_close(g, d)


@pytest.mark.parametrize("key", BASIC_KEYS[:12] + ADV_KEYS, ids=lambda k: repr(k).replace("\n", ""))
def test_index_grad_matches_torch(torch, key):
    d = _data()
    g = gradc.tensor(d, requires_grad=True)
    t = torch.tensor(d, requires_grad=True)
    gk = _resolve(key, g.detach()) if isinstance(key, str) else _key(gradc, key)
    tk = _resolve(key, t.detach()) if isinstance(key, str) else _key(torch, key)
    gy, ty = g[gk], t[tk]
    w = np.asarray(np.random.randn(*tuple(ty.shape))).astype(np.float32)
    (gy * gradc.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    assert_close(g.grad, t.grad.numpy())


def test_index_gradcheck():
    x = gradc.randn(4, 5, dtype=gradc.float64, requires_grad=True)
    idx = gradc.tensor([0, 3, 0, 2])
    mask = gradc.tensor([True, False, True, True, False])
    assert gradc.autograd.gradcheck(lambda t: t[idx] * 2, (x,))
    assert gradc.autograd.gradcheck(lambda t: t[:, mask], (x,))
    assert gradc.autograd.gradcheck(lambda t: t[idx, 1:4:2], (x,))
    assert gradc.autograd.gradcheck(lambda t: t[1:, None, -1], (x,))


def test_int_tensor_dtypes_and_scalar_tensor_index(torch):
    d = _data()
    g, t = gradc.tensor(d), torch.tensor(d)
    for np_dt in (np.int64, np.int32):
        idx = np.array([2, 0], dtype=np_dt)
        assert_close(g[gradc.from_numpy(idx)], t[torch.from_numpy(idx)].numpy())
    # a 0-dim integer tensor indexes like an int (a view, dim removed)
    gv, tv = g[gradc.tensor(2)], t[torch.tensor(2)]
    assert tuple(gv.shape) == tuple(tv.shape)
    assert_close(gv, tv.numpy())
    # numpy integer scalars
    assert_close(g[np.int64(1), np.int32(2)], t[np.int64(1), np.int32(2)].numpy())
    # index the result of an index
    assert_close(g[1:][gradc.tensor([0, 2])][..., 3], t[1:][torch.tensor([0, 2])][..., 3].numpy())


def test_bool_scalar_key(torch):
    d = _data((3, 2))
    g, t = gradc.tensor(d), torch.tensor(d)
    for k in (True, False):
        assert tuple(g[k].shape) == tuple(t[k].shape)
        assert_close(g[k], t[k].numpy())


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("key", [
    4, -5, (0, 5), (0, 0, 6), (0, 0, -7), (slice(None), 5), (Ellipsis, 6),
])
def test_basic_index_out_of_range(torch, key):
    with pytest.raises(IndexError) as tinfo:
        torch.zeros(SHAPE)[key]
    with pytest.raises(IndexError) as info:
        gradc.zeros(SHAPE)[key]
    if key != (Ellipsis, 6):  # PyTorch counts the dim of an int after `...` oddly ("dimension 1")
        assert str(info.value) == str(tinfo.value)
    assert str(info.value).split(" dimension")[0] == str(tinfo.value).split(" dimension")[0]


def test_too_many_indices(torch):
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 3"):
        gradc.zeros(SHAPE)[0, 0, 0, 0]
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 3"):
        torch.zeros(SHAPE)[0, 0, 0, 0]


@pytest.mark.parametrize("key", [
    np.array([0, 4]), np.array([-5]), (slice(None), np.array([5])), (0, np.array([1, 2]), np.array([6])),
])
def test_advanced_index_out_of_range(torch, key):
    with pytest.raises(IndexError) as tinfo:
        torch.zeros(SHAPE)[_key(torch, key)]
    with pytest.raises(IndexError) as info:
        gradc.zeros(SHAPE)[_key(gradc, key)]
    # PyTorch: "index 4 is out of bounds for dimension 0 with size 4"; the dimension PyTorch names
    # for an advanced index is its position among the index tensors, gradc names the tensor's dim
    assert str(info.value).split(" dimension")[0] == str(tinfo.value).split(" dimension")[0]


def test_bad_index_types(torch):
    x = gradc.zeros(3, 4)
    with pytest.raises(IndexError):
        x[gradc.tensor([0.0, 1.0])]
    with pytest.raises(IndexError):
        torch.zeros(3, 4)[torch.tensor([0.0, 1.0])]
    with pytest.raises(IndexError):
        x[1.5]
    with pytest.raises(IndexError):
        x["a"]
    with pytest.raises(IndexError) as info:
        x[gradc.tensor([True, False])]
    with pytest.raises(IndexError) as tinfo:
        torch.zeros(3, 4)[torch.tensor([True, False])]
    assert str(info.value) == str(tinfo.value)
    with pytest.raises(IndexError) as info:
        x[:, gradc.tensor([True, False])]
    with pytest.raises(IndexError) as tinfo:
        torch.zeros(3, 4)[:, torch.tensor([True, False])]
    assert str(info.value) == str(tinfo.value)


def test_negative_step_refused(torch):
    with pytest.raises(ValueError, match="step must be greater than zero"):
        gradc.zeros(4)[::-1]
    with pytest.raises(ValueError, match="step must be greater than zero"):
        torch.zeros(4)[::-1]


# ---------------------------------------------------------------- __setitem__
SET_CASES = [
    (1, "scalar"),
    ((slice(None), 2), "scalar"),
    ((Ellipsis, slice(1, 3)), "row"),            # broadcasting a row into a slice
    ((0, slice(None), 0), "tensor"),
    (slice(1, 3), "full"),
    (np.array([0, 2]), "scalar"),
    (np.array([3, 1]), "full"),
    ((np.array([0, 3]), slice(None), np.array([1, 5])), "tensor"),
    ((slice(None), np.array([4, 0])), "row"),
    ("mask_full", "scalar"),
    ("mask_full", "tensor"),
    (np.array([True, False, True, True]), "scalar"),
    (np.array([True, False, True, True]), "full"),
    ((slice(None), np.array([True, False, False, True, True])), "row"),
    (Ellipsis, "scalar"),
    ((None, 1), "row"),
    ((1, slice(None), np.array([0, 2])), "tensor"),   # int + advanced: PyTorch's dim order
    ((np.array([0, 2]), slice(None), 3), "tensor"),
    ((np.array([1, 2]), np.array([0, 4]), 5), "scalar"),
]


def _value(lib, kind, target_shape, rng):
    if kind == "scalar":
        return 7.5
    if kind == "row":
        return lib.tensor(rng.standard_normal(target_shape[-1:]).astype(np.float32))
    if kind == "tensor":
        return lib.tensor(rng.standard_normal(target_shape).astype(np.float32))
    return lib.tensor(rng.standard_normal(target_shape).astype(np.float32))


@pytest.mark.parametrize("key,kind", SET_CASES, ids=lambda k: repr(k).replace("\n", ""))
def test_setitem_matches_torch(torch, key, kind):
    d = _data()
    g, t = gradc.tensor(d), torch.tensor(d)
    gk = _resolve(key, g) if isinstance(key, str) else _key(gradc, key)
    tk = _resolve(key, t) if isinstance(key, str) else _key(torch, key)
    target_shape = tuple(t[tk].shape)
    seed = np.random.randint(1 << 30)
    gval = _value(gradc, kind, target_shape, np.random.default_rng(seed))
    tval = _value(torch, kind, target_shape, np.random.default_rng(seed))
    storage, v0 = g.untyped_storage(), g._version
    g[gk] = gval
    t[tk] = tval
    assert_close(g, t.numpy())
    assert g.untyped_storage() is storage  # written in place
    assert g._version > v0


def test_setitem_through_view_and_dtype_conversion(torch):
    g = gradc.zeros(3, 4)
    t = torch.zeros(3, 4)
    gv, tv = g.t(), t.t()
    gv[1] = gradc.tensor([1, 2, 3])       # int values into a float tensor
    tv[1] = torch.tensor([1, 2, 3])
    gv[gradc.tensor([0, 3]), 2] = 5
    tv[torch.tensor([0, 3]), 2] = 5
    assert_close(g, t.numpy())
    gi, ti = gradc.zeros(4, dtype=gradc.int64), torch.zeros(4, dtype=torch.int64)
    gi[1:3] = 2.7                          # a Python float into an int tensor truncates
    ti[1:3] = 2.7
    gi[gradc.tensor([0])] = gradc.tensor([9.9])  # gradc casts (PyTorch's index_put_ refuses)
    ti[torch.tensor([0])] = torch.tensor([9.9]).long()
    gi[gi == 2] = gradc.tensor(-1.5)
    ti[ti == 2] = torch.tensor(-1.5)
    assert_close(gi, ti.numpy())
    gm, tm = gradc.arange(6.0), torch.arange(6.0)
    gm[gm > 2] = 0
    tm[tm > 2] = 0
    assert_close(gm, tm.numpy())


def test_setitem_shape_mismatch_raises(torch):
    with pytest.raises(RuntimeError):
        torch.zeros(3, 4)[0] = torch.ones(3)
    with pytest.raises(RuntimeError):
        gradc.zeros(3, 4)[0] = gradc.ones(3)
    with pytest.raises(RuntimeError):
        torch.zeros(3, 4)[torch.tensor([0, 1])] = torch.ones(3, 4)
    with pytest.raises(RuntimeError, match=r"shape mismatch: value tensor of shape \[3, 4\] cannot be "
                       r"broadcast to indexing result of shape \[2, 4\]"):
        gradc.zeros(3, 4)[gradc.tensor([0, 1])] = gradc.ones(3, 4)


def test_setitem_on_leaf_requiring_grad_raises():
    x = gradc.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x[0] = 1.0
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x[gradc.tensor([0])] = 1.0
    with gradc.no_grad():
        x[1] = 2.0
        x[gradc.tensor([2])] = 3.0
    assert x.tolist() == [0.0, 2.0, 3.0]


@pytest.mark.parametrize("case", ["basic", "advanced", "mask", "slice_tensor", "view_chain"])
def test_setitem_autograd_matches_torch(torch, case):
    d = _data((4, 3))
    wd = _data((3,))

    def run(lib):
        x = lib.tensor(d, requires_grad=True)
        w = lib.tensor(wd, requires_grad=True)
        y = x * 1
        if case == "basic":
            y[0] = w * 2
        elif case == "advanced":
            y[lib.tensor([2, 0])] = w * w
        elif case == "mask":
            y[y > 0] = 0
            y[1] = w.exp()
        elif case == "slice_tensor":
            y[1:3, ::2] = w[:2] * 3
        else:
            z = y.t()[1:]
            z[0] = w[0] * 10
        out = (y * y * lib.tensor(np.arange(12, dtype=np.float32).reshape(4, 3))).sum()
        out.backward()
        return y, x.grad, w.grad

    gy, gxg, gwg = run(gradc)
    ty, txg, twg = run(torch)
    assert_close(gy, ty.detach().numpy())
    assert_close(gxg, txg.numpy())
    assert_close(gwg, twg.numpy())
    assert gy.grad_fn is not None


def test_setitem_autograd_brief_example(torch):
    x = gradc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = gradc.tensor(4.0, requires_grad=True)
    y = x * 1
    y[0] = w * 2
    y.sum().backward()
    tx = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    tw = torch.tensor(4.0, requires_grad=True)
    ty = tx * 1
    ty[0] = tw * 2
    ty.sum().backward()
    assert_close(x.grad, tx.grad.numpy())
    assert_close(w.grad, tw.grad.numpy())
    assert x.grad.tolist() == [0.0, 1.0, 1.0]
    assert w.grad.item() == 2.0


def test_setitem_gradcheck():
    idx = gradc.tensor([2, 0])

    def f(x, w):
        y = x * 1
        y[idx] = w
        y[1, 1:] = w[0, :2] * w[1, 1:]
        return y * y

    x = gradc.randn(3, 3, dtype=gradc.float64, requires_grad=True)
    w = gradc.randn(2, 3, dtype=gradc.float64, requires_grad=True)
    assert gradc.autograd.gradcheck(f, (x, w))


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence for multidimensional indexing:UserWarning")
@pytest.mark.parametrize("key", [
    [[0, 1], [1, 0]],                  # a list holding sequences is a tuple of indices (as PyTorch)
    [slice(None), 1],
    [None, 0],
    [[0, 1]],
    [0, 1],                            # a flat list of ints stays one index tensor
    [[True, False]],
], ids=repr)
def test_list_key_sequence_as_tuple(torch, key):
    d = _data((2, 3, 4))
    gv, tv = gradc.tensor(d)[key], torch.tensor(d)[key]
    assert tuple(gv.shape) == tuple(tv.shape)
    assert_close(gv, tv.numpy())


def test_uint8_index_is_a_mask(torch):
    d = _data((3, 2))
    mask = np.array([1, 0, 1], dtype=np.uint8)
    gv = gradc.tensor(d)[gradc.tensor(mask)]
    with pytest.warns(UserWarning):
        tv = torch.tensor(d)[torch.tensor(mask)]
    assert_close(gv, tv.numpy())


def test_setitem_value_leading_ones_stripped(torch):
    for key in (0, slice(0, 1), (gradc.tensor([0, 2]),)):
        g, t = gradc.zeros(3, 4), torch.zeros(3, 4)
        tkey = (torch.tensor([0, 2]),) if isinstance(key, tuple) else key
        g[key] = gradc.arange(4.0).view(1, 1, 4)
        t[tkey] = torch.arange(4.0).view(1, 1, 4)
        assert_close(g, t.numpy())
    with pytest.raises(RuntimeError):
        gradc.zeros(3, 4)[0] = gradc.ones(2, 4)
