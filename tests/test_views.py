"""View ops: metadata-only results sharing storage, checked against PyTorch's geometry."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc

pytestmark = pytest.mark.filterwarnings("ignore:The use of `x.T` on tensors:UserWarning")

# Each case: (id, source shape, how the source is made from a contiguous arange, the view op).
# The lambdas use only the API that gradc and PyTorch share, so the same code runs on both.
SOURCES = {
    "contig": lambda lib, shape: lib.arange(float(np.prod(shape))).reshape(shape),
    "permuted": lambda lib, shape: lib.arange(float(np.prod(shape))).reshape(shape[::-1]).permute(
        *range(len(shape) - 1, -1, -1)),
    "sliced": lambda lib, shape: lib.arange(float(np.prod(shape) * 2)).reshape(
        (shape[0] * 2,) + tuple(shape[1:]))[1::2],
}

VIEW_OPS = [
    ("view_flat", (2, 3, 4), lambda t: t.view(-1)),
    ("view_6_4", (2, 3, 4), lambda t: t.view(6, 4)),
    ("view_tuple", (2, 3, 4), lambda t: t.view((2, 12))),
    ("view_infer_mid", (2, 3, 4), lambda t: t.view(2, -1, 2)),
    ("view_add_ones", (2, 3, 4), lambda t: t.view(1, 2, 1, 3, 4, 1)),
    ("view_as", (2, 3, 4), lambda t: t.view_as(t.reshape(4, 6).detach())),
    ("reshape_view", (2, 3, 4), lambda t: t.reshape(6, 4)),
    ("reshape_same", (2, 3, 4), lambda t: t.reshape(2, 3, 4)),
    ("transpose", (2, 3, 4), lambda t: t.transpose(0, 2)),
    ("transpose_neg", (2, 3, 4), lambda t: t.transpose(-1, -2)),
    ("swapaxes", (2, 3, 4), lambda t: t.swapaxes(0, 1)),
    ("t", (3, 4), lambda t: t.t()),
    ("t_1d", (5,), lambda t: t.t()),
    ("T", (2, 3, 4), lambda t: t.T),
    ("mT", (2, 3, 4), lambda t: t.mT),
    ("permute", (2, 3, 4), lambda t: t.permute(2, 0, 1)),
    ("permute_tuple", (2, 3, 4), lambda t: t.permute((1, 2, 0))),
    ("movedim", (2, 3, 4), lambda t: t.movedim(0, 2)),
    ("expand", (3, 1), lambda t: t.expand(2, 3, 4)),
    ("expand_minus1", (3, 1), lambda t: t.expand(-1, 5)),
    ("expand_as", (3, 1), lambda t: t.expand_as(t.new_zeros(2, 3, 4))),
    ("unsqueeze0", (2, 3, 4), lambda t: t.unsqueeze(0)),
    ("unsqueeze_last", (2, 3, 4), lambda t: t.unsqueeze(-1)),
    ("unsqueeze_mid", (2, 3, 4), lambda t: t.unsqueeze(2)),
    ("squeeze_all", (1, 3, 1, 4), lambda t: t.squeeze()),
    ("squeeze_dim", (1, 3, 1, 4), lambda t: t.squeeze(2)),
    ("squeeze_noop_dim", (1, 3, 1, 4), lambda t: t.squeeze(1)),
    ("flatten", (2, 3, 4), lambda t: t.flatten()),
    ("flatten_1", (2, 3, 4), lambda t: t.flatten(1)),
    ("flatten_0_1", (2, 3, 4), lambda t: t.flatten(0, 1)),
    ("unflatten", (2, 12), lambda t: t.unflatten(1, (3, 4))),
    ("unflatten_infer", (2, 12), lambda t: t.unflatten(1, (-1, 2))),
    ("narrow", (2, 3, 4), lambda t: t.narrow(2, 1, 2)),
    ("narrow_neg_start", (2, 3, 4), lambda t: t.narrow(1, -2, 2)),
    ("select", (2, 3, 4), lambda t: t.select(1, 2)),
    ("select_neg", (2, 3, 4), lambda t: t.select(-1, -1)),
    ("unbind0", (2, 3, 4), lambda t: t.unbind()[1]),
    ("unbind2", (2, 3, 4), lambda t: t.unbind(2)[3]),
    ("split_int", (5, 4), lambda t: t.split(2)[2]),
    ("split_sizes", (5, 4), lambda t: t.split([1, 3], dim=1)[1]),
    ("chunk", (7, 4), lambda t: t.chunk(3)[1]),
    ("chunk_dim1", (2, 6), lambda t: t.chunk(4, dim=1)[2]),
    ("idx_int", (2, 3, 4), lambda t: t[1]),
    ("idx_neg_int", (2, 3, 4), lambda t: t[-1, -2]),
    ("idx_slice", (2, 3, 4), lambda t: t[:, 1:3]),
    ("idx_step", (6, 4), lambda t: t[1::2, ::3]),
    ("idx_none", (2, 3, 4), lambda t: t[..., None]),
    ("idx_none_mid", (2, 3, 4), lambda t: t[:, None, 1]),
    ("idx_ellipsis", (2, 3, 4), lambda t: t[..., 2]),
    ("idx_ellipsis_mid", (2, 3, 4), lambda t: t[0, ..., 1:]),
    ("idx_empty_slice", (2, 3, 4), lambda t: t[:, 2:1]),
    ("idx_oob_slice", (2, 3, 4), lambda t: t[:, 1:100]),
    ("as_strided", (3, 4), lambda t: t.contiguous().as_strided((2, 2), (1, 2), 1)),
]

VIEW_IDS = [c[0] for c in VIEW_OPS]


def _pair(torch, source, shape):
    g = SOURCES[source](gradc, shape)
    t = SOURCES[source](torch, shape)
    assert tuple(g.stride()) == tuple(t.stride())
    assert g.storage_offset() == t.storage_offset()
    return g, t


GEOMETRY_CASES = [pytest.param(name, shape, op, source, id=f"{name}-{source}")
                  for name, shape, op in VIEW_OPS for source in SOURCES
                  if name != "as_strided" or source == "contig"]  # as_strided: absolute geometry


@pytest.mark.parametrize("name,shape,op,source", GEOMETRY_CASES)
def test_view_geometry_matches_torch(torch, name, shape, op, source):
    g, t = _pair(torch, source, shape)
    try:
        tv = op(t)
    except RuntimeError as e:  # e.g. view() of a permuted tensor: gradc must refuse too
        with pytest.raises(RuntimeError) as info:
            op(g)
        assert str(info.value).split("(")[0] == str(e).split("(")[0]
        return
    gv = op(g)
    assert tuple(gv.shape) == tuple(tv.shape)
    assert gv.is_contiguous() == tv.is_contiguous()
    assert_close(gv, tv.numpy())
    assert gv is not g
    # metadata only: same storage, no copy (reshape/flatten copy exactly when PyTorch's do)
    torch_shares = tv.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
    assert (gv.untyped_storage() is g.untyped_storage()) == torch_shares
    if torch_shares:
        assert gv.stride() == tv.stride()
        assert gv.storage_offset() == tv.storage_offset()
        assert gv.data_ptr() == g.untyped_storage().data_ptr() + gv.storage_offset() * gv.element_size()
    else:
        assert gv.is_contiguous() and gv.storage_offset() == 0


@pytest.mark.parametrize("name,shape,op", VIEW_OPS, ids=VIEW_IDS)
def test_view_base_and_write_through(torch, name, shape, op):
    root = gradc.arange(float(np.prod(shape))).reshape(shape)  # itself a view of the arange
    troot = torch.arange(float(np.prod(shape))).reshape(shape)
    base = root._base
    assert base is not None and base._base is None
    assert troot._base is not None
    v = op(root)
    tv = op(troot)
    # view of a view -> the root owner (as PyTorch: tv._base is troot._base)
    assert tv._base is troot._base
    assert v._base is base
    if v.numel() == 0:
        return
    assert v._version == root._version == base._version
    before = root._version
    if v.stride() and 0 in v.stride():  # expanded: write through a plain view instead
        v = op(root)
        with gradc.no_grad():
            v.select(0, 0).fill_(-7.0) if v.ndim else v.fill_(-7.0)
        with torch.no_grad():
            tv.select(0, 0).fill_(-7.0) if tv.ndim else tv.fill_(-7.0)
    else:
        v.mul_(-1.0).sub_(0.5)
        tv.mul_(-1.0).sub_(0.5)
    assert root._version > before
    assert v._version == root._version == base._version
    assert_close(root, troot.numpy())


def test_view_of_view_base_chain(torch):
    for lib in (gradc, torch):
        x = lib.zeros(4, 6)
        a = x.t()
        b = a[1:]
        c = b.unsqueeze(0).select(2, 1)[..., ::2]
        assert x._base is None
        assert a._base is x and b._base is x and c._base is x
        r = b.reshape(-1)          # not viewable: a copy, with no base
        assert r._base is None
        c.fill_(3.0)
        assert float(x.sum().item()) == 3.0 * c.numel()


def test_detach_shares_storage_and_version():
    x = gradc.randn(3, 4, requires_grad=True)
    d = x.detach()
    assert d.untyped_storage() is x.untyped_storage()
    assert not d.requires_grad and d.grad_fn is None
    v = x._version
    d.add_(1.0)
    assert x._version == v + 1


def test_expand_same_shape_is_a_new_view(torch):
    x = gradc.zeros(2, 3)
    tx = torch.zeros(2, 3)
    y, ty = x.expand(2, 3), tx.expand(2, 3)
    assert (ty is tx) == (y is x)
    assert (ty._base is tx) == (y._base is x)


# ---------------------------------------------------------------- contiguity
@pytest.mark.parametrize("make", [
    lambda lib: lib.zeros(3, 4),
    lambda lib: lib.zeros(3, 4).t(),
    lambda lib: lib.zeros(3, 4)[:, :2],
    lambda lib: lib.zeros(3, 4)[:2],
    lambda lib: lib.zeros(3, 4)[::2],
    lambda lib: lib.zeros(3, 1).expand(3, 4),
    lambda lib: lib.zeros(1, 4).expand(1, 4),
    lambda lib: lib.zeros(3, 1, 4).transpose(0, 1),
    lambda lib: lib.zeros(1, 3).t(),
    lambda lib: lib.zeros(0, 3).t(),
    lambda lib: lib.zeros(()),
    lambda lib: lib.zeros(4, 4)[:, 1],
])
def test_is_contiguous_and_contiguous(torch, make):
    g, t = make(gradc), make(torch)
    assert g.is_contiguous() == t.is_contiguous()
    gc, tc = g.contiguous(), t.contiguous()
    assert gc.is_contiguous()
    assert gc.stride() == tc.stride()
    assert (gc is g) == (tc is t)
    if gc is not g:
        assert gc.untyped_storage() is not g.untyped_storage()


def test_contiguous_copy_values(torch):
    g = gradc.arange(12.0).reshape(3, 4).t()
    t = torch.arange(12.0).reshape(3, 4).t()
    assert_close(g.contiguous(), t.contiguous().numpy())


# ---------------------------------------------------------------- view errors and reshape copies
VIEW_MSG = "view size is not compatible with input tensor's size and stride"


@pytest.mark.parametrize("make,shape", [
    (lambda lib: lib.zeros(3, 4).t(), (-1,)),
    (lambda lib: lib.zeros(3, 4).t(), (12,)),
    (lambda lib: lib.zeros(4, 6)[:, :3], (12,)),
    (lambda lib: lib.zeros(2, 3, 4).permute(1, 0, 2), (6, 4)),
    (lambda lib: lib.zeros(2, 3, 4)[:, ::2], (-1,)),
])
def test_view_incompatible_raises_reshape_copies(torch, make, shape):
    g, t = make(gradc), make(torch)
    with pytest.raises(RuntimeError) as tinfo:
        t.view(*shape)
    assert VIEW_MSG in str(tinfo.value)
    with pytest.raises(RuntimeError, match="view size is not compatible with input tensor's size and stride"):
        g.view(*shape)
    with pytest.raises(RuntimeError, match=r"Use \.reshape\(\.\.\.\) instead"):
        g.view(*shape)
    r, tr = g.reshape(*shape), t.reshape(*shape)
    assert tuple(r.shape) == tuple(tr.shape)
    assert r.untyped_storage() is not g.untyped_storage()  # a copy
    assert r.is_contiguous()
    r.fill_(1.0)
    assert float(g.sum().item()) == 0.0


@pytest.mark.parametrize("make,shape", [
    (lambda lib: lib.zeros(4, 6)[:, :3], (2, 2, 3)),        # outer dim split: still a view
    (lambda lib: lib.zeros(2, 3, 4).permute(1, 0, 2), (3, 2, 2, 2)),
    (lambda lib: lib.zeros(3, 4).t(), (4, 3, 1)),
    (lambda lib: lib.zeros(3, 1, 4).transpose(0, 1), (12,)),  # size-1 dims don't matter
    (lambda lib: lib.zeros(3, 1).expand(3, 4), (3, 2, 2)),
    (lambda lib: lib.zeros(0, 3).t(), (-1,)),
])
def test_view_on_strided_layout_matches_torch(torch, make, shape):
    g, t = make(gradc), make(torch)
    gv, tv = g.view(*shape), t.view(*shape)
    assert tuple(gv.shape) == tuple(tv.shape)
    assert gv.stride() == tv.stride()
    assert gv.untyped_storage() is g.untyped_storage()
    r = g.reshape(*shape)
    assert r.untyped_storage() is g.untyped_storage()


@pytest.mark.parametrize("n,shape", [
    (12, (-1, -1)),
    (12, (5, -1)),
    (12, (5,)),
    (12, (0, -1)),
    (12, (2, 2, 2)),
    (0, (0, -1)),
    (0, (2, -1, 0)),
    (12, (-2, 6)),
])
def test_shape_inference_errors(torch, n, shape):
    tx = torch.zeros(n)
    with pytest.raises(RuntimeError) as tinfo:
        tx.view(*shape)
    x = gradc.zeros(n)
    for fn in (x.view, x.reshape):
        with pytest.raises(RuntimeError) as info:
            fn(*shape)
        assert str(info.value).split(" ")[:2] == str(tinfo.value).split(" ")[:2], (info.value, tinfo.value)


@pytest.mark.parametrize("n,shape", [(12, (3, -1)), (12, (-1,)), (0, (-1,)), (0, (3, -1)), (1, ()), (1, (-1, 1)),
                                     (24, (2, -1, 3))])
def test_shape_inference(torch, n, shape):
    g, t = gradc.zeros(n).view(shape), torch.zeros(n).view(shape)
    assert tuple(g.shape) == tuple(t.shape)
    assert g.stride() == t.stride()


def test_view_op_errors(torch):
    x = gradc.zeros(2, 3, 4)
    with pytest.raises(RuntimeError):
        x.t()
    with pytest.raises(RuntimeError, match="expanded size"):
        x.expand(2, 5, 4)
    with pytest.raises(RuntimeError, match="number of dims don't match"):
        x.permute(0, 1)
    with pytest.raises(RuntimeError, match="duplicate dims"):
        x.permute(0, 1, 1)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.transpose(0, 3)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.unsqueeze(4)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.select(3, 0)
    with pytest.raises(IndexError):
        x.select(1, 3)
    with pytest.raises(RuntimeError):
        x.narrow(1, 2, 2)
    with pytest.raises(RuntimeError):
        x.split([1, 1], 1)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.view(-1, -1)


# ---------------------------------------------------------------- set_
def test_set_storage_geometry(torch):
    a = gradc.arange(12.0)
    ta = torch.arange(12.0)
    b = gradc.zeros(1)
    tb = torch.zeros(1)
    v0 = b._version
    out = b.set_(a.untyped_storage(), 2, (2, 3), (3, 1))
    tb.set_(ta.untyped_storage(), 2, (2, 3), (3, 1))
    assert out is b
    assert tuple(b.shape) == (2, 3) and b.stride() == (3, 1) and b.storage_offset() == 2
    assert_close(b, tb.numpy())
    assert b.untyped_storage() is a.untyped_storage()
    b.fill_(-1.0)
    tb.fill_(-1.0)
    assert_close(a, ta.numpy())
    assert b._version > v0
    # transposed geometry
    c = gradc.zeros(1).set_(a.untyped_storage(), 1, (3, 2), (1, 4))
    tc = torch.zeros(1).set_(ta.untyped_storage(), 1, (3, 2), (1, 4))
    assert_close(c, tc.numpy())
    assert c.is_contiguous() == tc.is_contiguous()


def test_set_from_tensor_and_empty(torch):
    a = gradc.arange(6.0).reshape(2, 3).t()
    b = gradc.zeros(5)
    b.set_(a)
    assert b.untyped_storage() is a.untyped_storage()
    assert tuple(b.shape) == (3, 2) and b.stride() == a.stride()
    assert_close(b, a.numpy())
    e = gradc.ones(3).set_()
    te = torch.ones(3).set_()
    assert tuple(e.shape) == tuple(te.shape) and e.numel() == 0
    # default geometry: the whole storage, 1-D
    s = gradc.zeros(1).set_(a.untyped_storage())
    ts = torch.zeros(1).set_(torch.arange(6.0).untyped_storage())
    assert tuple(s.shape) == tuple(ts.shape)


# ---------------------------------------------------------------- gradients through view ops
GRAD_OPS = [c for c in VIEW_OPS if c[0] not in ("as_strided",)] + [
    ("as_strided_grad", (3, 4), lambda t: t.as_strided((2, 3), (4, 1), 1)),
    ("as_strided_overlap", (3, 4), lambda t: t.as_strided((3, 3), (1, 1), 0)),
    ("view_of_view", (2, 3, 4), lambda t: t.transpose(0, 1)[1:].reshape(-1)[::3]),
    ("unbind_all", (2, 3), lambda t: t.unbind(1)[0] * 2 + t.unbind(1)[2]),
    ("split_all", (5, 2), lambda t: t.split(2)[0].sum(0) + t.split(2)[2].sum(0)),
]


@pytest.mark.parametrize("name,shape,op", GRAD_OPS, ids=[c[0] for c in GRAD_OPS])
def test_view_grad_matches_torch(torch, name, shape, op):
    data = np.random.randn(*shape).astype(np.float32)
    g = gradc.tensor(data, requires_grad=True)
    t = torch.tensor(data, requires_grad=True)
    gy, ty = op(g), op(t)
    w = np.random.randn(*tuple(ty.shape)).astype(np.float32)
    (gy * gradc.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    assert gy.grad_fn is not None
    assert_close(g.grad, t.grad.numpy())


GRADCHECK_OPS = [
    lambda t: t.view(4, 6).t(),
    lambda t: t.permute(2, 0, 1).reshape(4, -1),
    lambda t: t.expand(3, 2, 3, 4) * t.unsqueeze(0),
    lambda t: t[1, ..., None, ::2],
    lambda t: t.narrow(2, 1, 2).select(0, 1),
    lambda t: t.flatten(1).unflatten(1, (4, 3)),
    lambda t: t.squeeze().unsqueeze(1).mT,
    lambda t: t.chunk(2, 2)[1] * t.split(1)[0].chunk(2, 2)[0],
    lambda t: t.transpose(0, 2).contiguous().view(-1),
]


@pytest.mark.parametrize("i", range(len(GRADCHECK_OPS)))
def test_view_gradcheck(i):
    x = gradc.randn(2, 3, 4, dtype=gradc.float64, requires_grad=True)
    assert gradc.autograd.gradcheck(GRADCHECK_OPS[i], (x,))


@pytest.mark.parametrize("op", [
    lambda t: t.movedim((0, 1), (2, 0)),
    lambda t: t.movedim([2], [0]),
    lambda t: t.movedim(-1, 0),
    lambda t: t.movedim((0, 2), (-1, 0)),
])
def test_movedim_sequences(torch, op):
    g, t = gradc.arange(24.0).reshape(2, 3, 4), torch.arange(24.0).reshape(2, 3, 4)
    gv, tv = op(g), op(t)
    assert tuple(gv.shape) == tuple(tv.shape) and gv.stride() == tv.stride()
    assert_close(gv, tv.numpy())


@pytest.mark.parametrize("op", [
    lambda lib: lib.arange(3.0).mT,
    lambda lib: lib.zeros(4, 3).split(0),
    lambda lib: lib.zeros(4, 3).chunk(0),
    lambda lib: lib.tensor(1.0).unbind(),
    lambda lib: lib.arange(5.0).narrow(0, 1, -1),
    lambda lib: lib.zeros(2, 3, 4).select(1, -4),
    lambda lib: lib.zeros(2, 3, 4).select(0, 2),
    lambda lib: lib.tensor(1.0)[0],
    lambda lib: lib.zeros(2, 3).expand(3),
    lambda lib: lib.zeros(2, 3).view(-1, 4),
], ids=["mT_1d", "split_0", "chunk_0", "unbind_0d", "narrow_neg", "select_neg_oob", "select_oob", "index_0d",
        "expand_fewer", "view_bad"])
def test_view_op_error_messages_match_torch(torch, op):
    with pytest.raises((RuntimeError, IndexError)) as tinfo:
        op(torch)
    with pytest.raises(tinfo.type) as info:
        op(gradc)
    if "expand" not in str(tinfo.value):  # PyTorch prefixes the call: expand(torch.FloatTensor{[2, 3]}, ...)
        assert str(info.value) == str(tinfo.value)
    else:
        assert str(tinfo.value).endswith(str(info.value).split(": ", 1)[1])


def test_t_inplace_geometry_and_grad(torch):
    def run(lib):
        x = lib.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
        y = x * 1
        v0 = y._version
        out = y.t_()
        assert out is y and y._version == v0 + 1
        (y * lib.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).sum().backward()
        return x.grad, y
    gg, gy = run(gradc)
    tg, ty = run(torch)
    assert tuple(gy.shape) == tuple(ty.shape) and gy.stride() == ty.stride()
    assert_close(gy, ty.detach().numpy())
    assert_close(gg, tg.numpy())
    z = gradc.arange(6.0).reshape(2, 3)
    z.t_()
    assert z.tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]


def test_set_and_t_refused_on_leaf_requiring_grad(torch):
    for lib in (torch, gradc):
        x = lib.ones(2, 3, requires_grad=True)
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
            x.t_()
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
            x.set_(lib.ones(4))
        with lib.no_grad():
            x.set_(lib.zeros(4))
        assert tuple(x.shape) == (4,) and x.requires_grad
