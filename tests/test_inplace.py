"""In-place ops: values, aliasing, version counter, refusals and autograd, against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc

LEAF_MSG = "a leaf Variable that requires grad is being used in an in-place operation."
VIEW_LEAF_MSG = "a view of a leaf Variable that requires grad is being used in an in-place operation."
SAVED_MSG = "one of the variables needed for gradient computation has been modified by an inplace operation"


def _t(lib, a):
    return lib.tensor(np.asarray(a))


# (id, input dtype, fn(lib, x) applying the in-place op to x; positive inputs where needed)
INPLACE_CASES = [
    ("add_tensor", "f", lambda lib, x: x.add_(_t(lib, np.arange(4, dtype=np.float32)))),
    ("add_scalar", "f", lambda lib, x: x.add_(2.5)),
    ("add_broadcast_row", "f", lambda lib, x: x.add_(_t(lib, np.ones(4, np.float32)))),
    ("add_0dim", "f", lambda lib, x: x.add_(_t(lib, np.float32(3)))),
    ("add_float64_into_float32", "f", lambda lib, x: x.add_(_t(lib, np.full((3, 4), 0.1)))),
    ("sub_tensor", "f", lambda lib, x: x.sub_(_t(lib, np.full((3, 1), 2.0, np.float32)))),
    ("sub_scalar", "f", lambda lib, x: x.sub_(1)),
    ("mul_tensor", "f", lambda lib, x: x.mul_(_t(lib, np.arange(12, dtype=np.float32).reshape(3, 4)))),
    ("mul_scalar", "f", lambda lib, x: x.mul_(-3)),
    ("div_tensor", "f", lambda lib, x: x.div_(_t(lib, np.arange(1, 5, dtype=np.float32)))),
    ("div_scalar", "f", lambda lib, x: x.div_(4)),
    ("zero_", "f", lambda lib, x: x.zero_()),
    ("fill_float", "f", lambda lib, x: x.fill_(1.25)),
    ("fill_0dim_tensor", "f", lambda lib, x: x.fill_(_t(lib, np.float32(-2)))),
    ("copy_same", "f", lambda lib, x: x.copy_(_t(lib, np.arange(12, dtype=np.float32).reshape(3, 4)))),
    ("copy_broadcast", "f", lambda lib, x: x.copy_(_t(lib, np.arange(4, dtype=np.float32)))),
    ("copy_int_src", "f", lambda lib, x: x.copy_(_t(lib, np.arange(12).reshape(3, 4)))),
    ("copy_from_transposed", "f", lambda lib, x: x.copy_(_t(lib, np.arange(12, dtype=np.float32).reshape(4, 3)).t())),
    ("clamp_", "f", lambda lib, x: x.clamp_(-0.5, 0.5)),
    ("clamp_min_only", "f", lambda lib, x: x.clamp_(min=0.1)),
    ("clamp_max_only", "f", lambda lib, x: x.clamp_(max=0.1)),
    ("clamp_min_", "f", lambda lib, x: x.clamp_min_(0.2)),
    ("clamp_max_", "f", lambda lib, x: x.clamp_max_(0.2)),
    ("pow_", "p", lambda lib, x: x.pow_(2)),
    ("pow_frac", "p", lambda lib, x: x.pow_(0.5)),
    ("exp_", "f", lambda lib, x: x.exp_()),
    ("log_", "p", lambda lib, x: x.log_()),
    ("neg_", "f", lambda lib, x: x.neg_()),
    ("relu_", "f", lambda lib, x: x.relu_()),
    ("sigmoid_", "f", lambda lib, x: x.sigmoid_()),
    ("tanh_", "f", lambda lib, x: x.tanh_()),
    ("sqrt_", "p", lambda lib, x: x.sqrt_()),
    ("abs_", "f", lambda lib, x: x.abs_()),
    ("masked_fill_", "f", lambda lib, x: x.masked_fill_(x > 0, -1.0)),
    ("masked_fill_bcast_mask", "f", lambda lib, x: x.masked_fill_(_t(lib, np.array([True, False, False, True])), 9.0)),
    ("remainder_", "f", lambda lib, x: x.remainder_(0.3)),
    ("floor_divide_", "f", lambda lib, x: x.floor_divide_(0.3)),
    ("tril_", "f", lambda lib, x: x.tril_()),
    ("triu_", "f", lambda lib, x: x.triu_(1)),
    ("lerp_", "f", lambda lib, x: x.lerp_(_t(lib, np.ones((3, 4), np.float32)), 0.25)),
    ("iadd", "f", lambda lib, x: x.__iadd__(1.5)),
    ("imul_tensor", "f", lambda lib, x: x.__imul__(_t(lib, np.full(4, 2.0, np.float32)))),
    ("itruediv", "f", lambda lib, x: x.__itruediv__(3.0)),
    ("isub", "f", lambda lib, x: x.__isub__(0.5)),
    ("int_add_", "i", lambda lib, x: x.add_(3)),
    ("int_mul_int32", "i", lambda lib, x: x.mul_(_t(lib, np.array([1, 2, 3, 4], np.int32)))),
    ("int_floor_divide_", "i", lambda lib, x: x.floor_divide_(2)),
    ("int_remainder_", "i", lambda lib, x: x.remainder_(3)),
    ("int_fill_", "i", lambda lib, x: x.fill_(7)),
    ("int_copy_float_src", "i", lambda lib, x: x.copy_(_t(lib, np.full((3, 4), 2.7, np.float32)))),
    ("int_bitwise_and_", "i", lambda lib, x: x.bitwise_and_(6)),
    ("int_bitwise_or_", "i", lambda lib, x: x.bitwise_or_(_t(lib, np.array([1, 2, 4, 8])))),
    ("bool_bitwise_not_", "b", lambda lib, x: x.bitwise_not_()),
    ("int_scatter_add_", "i", lambda lib, x: x.scatter_add_(1, _t(lib, np.array([[0, 0], [3, 1], [2, 2]])),
                                                           _t(lib, np.array([[1, 2], [3, 4], [5, 6]])))),
]


def _input(lib, kind):
    rng = np.random.default_rng(7)
    if kind == "f":
        return lib.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    if kind == "p":
        return lib.tensor(rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32))
    if kind == "i":
        return lib.tensor(rng.integers(-5, 10, (3, 4)))
    return lib.tensor(rng.integers(0, 2, (3, 4)).astype(bool))


@pytest.mark.parametrize("name,kind,fn", INPLACE_CASES, ids=[c[0] for c in INPLACE_CASES])
def test_inplace_values_alias_version(torch, name, kind, fn):
    g, t = _input(gradc, kind), _input(torch, kind)
    view = g[1:]
    storage, ptr, v0 = g.untyped_storage(), g.data_ptr(), g._version
    out = fn(gradc, g)
    tout = fn(torch, t)
    assert out is g
    assert tout is t
    assert g.dtype.name == str(t.dtype).replace("torch.", "")
    assert_close(g, t.numpy())
    assert g.untyped_storage() is storage and g.data_ptr() == ptr
    assert g._version > v0
    assert view._version == g._version
    assert_close(view, t[1:].numpy())  # a view taken before sees the new values


@pytest.mark.parametrize("name,kind,fn", INPLACE_CASES, ids=[c[0] for c in INPLACE_CASES])
def test_inplace_on_strided_view(torch, name, kind, fn):
    gb, tb = _input(gradc, kind).repeat(2, 2), _input(torch, kind).repeat(2, 2)
    g, t = gb[::2, 1::2], tb[::2, 1::2]            # a (3, 4) non-contiguous view
    assert not g.is_contiguous()
    out = fn(gradc, g)
    fn(torch, t)
    assert out is g
    assert_close(gb, tb.numpy())
    assert gb._version == g._version > 0


def test_version_counter_shared_and_counted(torch):
    x = gradc.zeros(3)
    tx = torch.zeros(3)
    v = x.view(3, 1)
    tv = tx.view(3, 1)
    assert x._version == tx._version == 0
    for lib_x in (x, tx):
        lib_x.add_(1).mul_(2)
        lib_x[0] = 5.0
    assert x._version == tx._version
    v.zero_()
    tv.zero_()
    assert x._version == tx._version == v._version
    d = x.detach()
    d.fill_(1.0)
    assert x._version == v._version == d._version
    assert x.clone()._version == 0


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("op", [
    lambda x: x.add_(1), lambda x: x.mul_(x.detach()), lambda x: x.zero_(), lambda x: x.fill_(2.0),
    lambda x: x.copy_(gradc.ones(3)), lambda x: x.clamp_(0, 1), lambda x: x.exp_(),
    lambda x: x.__setitem__(gradc.tensor([0]), 1.0), lambda x: x.masked_fill_(x.detach() > 0, 0.0),
    lambda x: x.__setitem__(x.detach() > 0, 1.0),
])
def test_inplace_on_leaf_requiring_grad_raises(op):
    x = gradc.tensor([1.0, -2.0, 3.0], requires_grad=True)
    v0 = x._version
    with pytest.raises(RuntimeError) as info:
        op(x)
    assert str(info.value) == LEAF_MSG
    assert x.tolist() == [1.0, -2.0, 3.0] and x._version == v0


def test_leaf_messages_match_torch(torch):
    tx = torch.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError) as tinfo:
        tx.add_(1)
    assert str(tinfo.value) == LEAF_MSG
    with pytest.raises(RuntimeError) as tinfo:
        tx[:1].add_(1)
    assert str(tinfo.value) == VIEW_LEAF_MSG
    with pytest.raises(RuntimeError) as tinfo:
        tx[0] = 1.0                      # basic-index setitem writes through a view
    assert str(tinfo.value) == VIEW_LEAF_MSG
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        x[0] = 1.0
    assert str(info.value) == VIEW_LEAF_MSG


@pytest.mark.parametrize("make_view", [lambda x: x[:1], lambda x: x.view(3, 1), lambda x: x.t(), lambda x: x[None]])
def test_inplace_on_view_of_leaf_raises(make_view):
    x = gradc.zeros(3, requires_grad=True)
    v = make_view(x)
    with pytest.raises(RuntimeError) as info:
        v.add_(1)
    assert str(info.value) == VIEW_LEAF_MSG
    with pytest.raises(RuntimeError) as info:
        v.zero_()
    assert str(info.value) == VIEW_LEAF_MSG
    assert x.tolist() == [0.0, 0.0, 0.0]


def test_inplace_allowed_under_no_grad(torch):
    x = gradc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    tx = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with gradc.no_grad():
        x.mul_(2).add_(1)
        x[1:].zero_()
        x[0] = 7.0
    with torch.no_grad():
        tx.mul_(2).add_(1)
        tx[1:].zero_()
        tx[0] = 7.0
    assert_close(x, tx.detach().numpy())
    assert x.is_leaf and x.requires_grad and x.grad_fn is None
    (x * x).sum().backward()
    (tx * tx).sum().backward()
    assert_close(x.grad, tx.grad.numpy())


def test_inplace_with_grad_arg_into_plain_tensor(torch):
    """An in-place op whose argument requires grad makes the target part of the graph."""
    w = gradc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    tw = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y, ty = gradc.zeros(3), torch.zeros(3)
    y.add_(w * w)
    ty.add_(tw * tw)
    assert y.requires_grad and y.grad_fn is not None
    (y * 3).sum().backward()
    (ty * 3).sum().backward()
    assert_close(w.grad, tw.grad.numpy())
    z, tz = gradc.zeros(2, 3), torch.zeros(2, 3)
    z[1] = w
    tz[1] = tw
    (z * z).sum().backward()
    (tz * tz).sum().backward()
    assert_close(w.grad, tw.grad.numpy())


# ---------------------------------------------------------------- broadcasting / dtype rules
@pytest.mark.parametrize("shapes", [((3,), (2, 3)), ((3, 1), (3, 4)), ((1,), (2,)), ((), (2,)), ((2, 3), (4, 3))])
def test_inplace_broadcast_to_bigger_shape_raises(torch, shapes):
    a_shape, b_shape = shapes
    with pytest.raises(RuntimeError) as tinfo:
        torch.zeros(a_shape).add_(torch.ones(b_shape))
    ga, gb = gradc.zeros(a_shape), gradc.ones(b_shape)
    with pytest.raises(RuntimeError) as info:
        ga.add_(gb)
    if "doesn't match the broadcast shape" in str(tinfo.value):
        assert str(info.value) == str(tinfo.value)
    assert ga._version == 0 and float(ga.sum().item()) == 0.0
    with pytest.raises(RuntimeError):
        ga.mul_(gb)
    with pytest.raises(RuntimeError):
        ga.copy_(gb)


def _dtype_gist(msg: str) -> tuple:
    """('result type', 'can't be cast to the desired output type') with dtype names removed."""
    return tuple(p.strip() for p in msg.replace("result type", "|").replace(
        "can't be cast to the desired output type", "|").split("|")[0::2])


@pytest.mark.parametrize("case", [
    ("int64", lambda lib, x: x.add_(1.5), "Float", "Long"),
    ("int64", lambda lib, x: x.mul_(lib.tensor([0.5, 2.0])), "Float", "Long"),
    ("int64", lambda lib, x: x.div_(2), "Float", "Long"),
    ("int32", lambda lib, x: x.sub_(lib.tensor(1.0)), "Float", "Int"),
    ("bool", lambda lib, x: x.add_(1), "Long", "Bool"),
    ("bool", lambda lib, x: x.mul_(lib.tensor([2, 3])), "Long", "Bool"),
    ("int64", lambda lib, x: x.sqrt_(), "Float", "Long"),
], ids=["add_float", "mul_float_tensor", "div_int", "sub_0dim", "bool_add", "bool_mul", "sqrt_int"])
def test_inplace_dtype_rule(torch, case):
    dt, fn, res, out = case
    tx = torch.tensor([1, 1]).to(getattr(torch, dt))
    with pytest.raises(RuntimeError) as tinfo:
        fn(torch, tx)
    assert f"result type {res} can't be cast to the desired output type {out}" == str(tinfo.value)
    gx = gradc.tensor([1, 1], dtype=getattr(gradc, dt if dt != "bool" else "bool"))
    with pytest.raises(RuntimeError) as info:
        fn(gradc, gx)
    assert "result type" in str(info.value) and "can't be cast to the desired output type" in str(info.value)
    assert str(info.value).endswith(gx.dtype.name)
    assert gx.tolist() == [1, 1] and gx._version == 0


def test_inplace_dtype_allowed_within_category(torch):
    g, t = gradc.tensor([1, 2], dtype=gradc.int32), torch.tensor([1, 2], dtype=torch.int32)
    g.add_(gradc.tensor([10, 20]))      # int64 into int32: same category
    t.add_(torch.tensor([10, 20]))
    assert_close(g, t.numpy())
    gf, tf = gradc.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])
    gf.mul_(gradc.tensor([3, 4]))       # int into float
    tf.mul_(torch.tensor([3, 4]))
    gf.add_(True)
    tf.add_(True)
    assert_close(gf, tf.numpy())


# ---------------------------------------------------------------- autograd through in-place ops
AUTOGRAD_CASES = [
    "chain", "exp_then_use", "view_of_nonleaf", "transposed_view", "select_view",
    "copy_into_view", "setitem_view", "two_views", "relu_sigmoid", "clamp_", "masked_fill_",
    "view_then_base_inplace", "fill_view", "zero_view", "reshape_copy",
]


def _run_autograd(lib, case, d, wd):
    x = lib.tensor(d, requires_grad=True)
    w = lib.tensor(wd, requires_grad=True)
    y = x * 2
    if case == "chain":
        y.add_(w).mul_(w).sub_(1.0).div_(w + 3)
    elif case == "exp_then_use":
        z = y.exp_()
        y = z * w
    elif case == "view_of_nonleaf":
        y[1].mul_(w)
    elif case == "transposed_view":
        y.t()[2].add_(w[:2] * 3)
    elif case == "select_view":
        y.select(1, 0).mul_(w[0])
    elif case == "copy_into_view":
        y[:, 1:].copy_(w[None, 1:] * w[None, :2])
    elif case == "setitem_view":
        v = y[1:]
        v[0, 0] = w.sum()
    elif case == "two_views":
        a, b = y[0], y[1]
        a.mul_(w)
        b.add_(a)
    elif case == "relu_sigmoid":
        y.relu_()
        y = y.sigmoid()
    elif case == "clamp_":
        y.clamp_(-0.5, 0.5)
    elif case == "masked_fill_":
        y.masked_fill_(y > 0.3, 0.0)
    elif case == "view_then_base_inplace":
        v = y[0]
        y.mul_(w)
        y = y + v
    elif case == "fill_view":
        y[:, 0].fill_(w[0])
    elif case == "zero_view":
        y[1:, 1:].zero_()
        y = y * w
    elif case == "reshape_copy":      # a reshape that copies owns its memory: not a view
        r = y.t().reshape(-1)
        r[1:3] = w[:2]
        r.mul_(w.repeat(2))
        y = r.view(3, 2).t()
    out = (y * lib.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))).sum()
    out.backward()
    return y, x.grad, w.grad


@pytest.mark.parametrize("case", AUTOGRAD_CASES)
def test_inplace_autograd_matches_torch(torch, case):
    d = np.random.randn(2, 3).astype(np.float32)
    wd = np.random.rand(3).astype(np.float32) + 0.5
    gy, gxg, gwg = _run_autograd(gradc, case, d, wd)
    ty, txg, twg = _run_autograd(torch, case, d, wd)
    assert_close(gy, ty.detach().numpy())
    assert_close(gxg, txg.numpy(), rtol=1e-4)
    if twg is None:
        assert gwg is None or float(np.abs(gwg.numpy()).max()) == 0.0
    else:
        assert_close(gwg, twg.numpy(), rtol=1e-4)


def test_inplace_on_view_updates_base_grad_fn(torch):
    x = gradc.randn(2, 3, requires_grad=True)
    y = x * 1
    fn0 = y.grad_fn
    y[0].mul_(2)
    assert y.grad_fn is not fn0 and y.grad_fn is not None  # the base's history was rewritten
    assert not y.is_leaf


def test_inplace_gradcheck():
    def f(x, w):
        y = x * 1
        y[0].mul_(w)
        y.t()[1].add_(w[:2].exp())
        y.sigmoid_()
        return y

    x = gradc.randn(2, 3, dtype=gradc.float64, requires_grad=True)
    w = gradc.randn(3, dtype=gradc.float64, requires_grad=True)
    assert gradc.autograd.gradcheck(f, (x, w))


@pytest.mark.parametrize("case", ["mul_input", "mul_self", "exp_output", "sigmoid_output", "view_of_saved",
                                  "saved_modified_via_view"])
def test_modified_saved_tensor_raises(torch, case):
    def run(lib):
        x = lib.tensor([0.5, 1.0, 2.0], requires_grad=True)
        a = x * 1
        if case == "mul_input":
            out = a * a
            a.add_(1)
        elif case == "mul_self":         # mul_ saves `other`, which is self
            a.mul_(a)
            out = a
        elif case == "exp_output":
            out = a.exp()
            out.add_(1)
        elif case == "sigmoid_output":
            out = a.sigmoid()
            out.mul_(2)
        elif case == "view_of_saved":
            out = a.sin()
            a[0].zero_()
        else:
            b = a.view(3, 1)
            out = (b * b).sum()
            a.sub_(1)
        out.sum().backward()

    with pytest.raises(RuntimeError) as tinfo:
        run(torch)
    assert SAVED_MSG in str(tinfo.value)
    with pytest.raises(RuntimeError) as info:
        run(gradc)
    assert SAVED_MSG in str(info.value)


def test_unmodified_saved_tensor_is_fine():
    x = gradc.tensor([0.5, 1.0, 2.0], requires_grad=True)
    a = x * 1
    out = a + a          # add saves nothing: modifying a is harmless
    a.mul_(3)
    out.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_view_of_modified_base_follows_new_history(torch):
    """A view taken before its base was modified in place sees the base's new history."""
    def run(lib):
        x = lib.tensor([1.0, -2.0, 3.0], requires_grad=True)
        h = x * 1
        a, b = h[:2], h.view(3, 1)
        d = h[0].detach()
        h.mul_(x)
        out = (a * 5).sum() + (b * b).sum()
        out.backward()
        assert not d.requires_grad and d.grad_fn is None
        return x.grad, d

    gg, gd = run(gradc)
    tg, td = run(torch)
    assert_close(gg, tg.numpy())
    assert_close(gd, td.numpy())
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1
    d = h[0].detach()
    h.add_(1)
    y = d * x                    # a detached view never regains history
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("op", [lambda x: x.add_(1), lambda x: x.mul_(2), lambda x: x.copy_(x.new_ones(3, 4)),
                                lambda x: x.__setitem__(0, 1.0), lambda x: x.clamp_(0, 1)])
def test_inplace_on_expanded_raises(torch, op):
    tx = torch.zeros(3, 1).expand(3, 4)
    with pytest.raises(RuntimeError) as tinfo:
        op(tx)
    x = gradc.zeros(3, 1).expand(3, 4)
    with pytest.raises(RuntimeError) as info:
        op(x)
    assert str(info.value) == str(tinfo.value)
    assert x._version == 0


def test_fill_on_expanded_allowed(torch):
    x, tx = gradc.zeros(3, 1), torch.zeros(3, 1)
    x.expand(3, 4).fill_(2.0)
    tx.expand(3, 4).fill_(2.0)
    assert_close(x, tx.numpy())
    x.expand(3, 4).zero_()
    assert x.tolist() == [[0.0]] * 3


def test_inplace_with_overlapping_argument():
    """gradc evaluates the out-of-place result first, so a partially overlapping argument reads the
    old values (PyTorch refuses this case with "unsupported operation")."""
    x = gradc.arange(5.0)
    x[1:].copy_(x[:-1])
    assert x.tolist() == [0.0, 0.0, 1.0, 2.0, 3.0]
    y = gradc.arange(5.0)
    y[1:].add_(y[:-1])
    assert y.tolist() == [0.0, 1.0, 3.0, 5.0, 7.0]


@pytest.mark.parametrize("shapes", [((4,), (1, 4)), ((3, 4), (2, 4)), ((3,), (3, 3))])
def test_copy_shape_errors(torch, shapes):
    dst, src = shapes
    with pytest.raises(RuntimeError) as tinfo:
        torch.zeros(dst).copy_(torch.ones(src))
    with pytest.raises(RuntimeError) as info:
        gradc.zeros(dst).copy_(gradc.ones(src))
    if "output with shape" in str(tinfo.value):
        assert str(info.value) == str(tinfo.value)
