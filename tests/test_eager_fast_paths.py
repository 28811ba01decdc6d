"""The eager training step's fast paths: AccumulateGrad taking a gradient the engine alone
holds instead of copying it (never when anything else can reach its memory), where's
bitwise form for a zero branch, and the allocator setting of gradc.storage."""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close

import gradc
from gradc import storage
from gradc.autograd import node as node_module
from gradc.ops import pointwise
from gradc.tensor import Tensor

F = gradc.nn.functional


@pytest.fixture
def clones(monkeypatch):
    """The number of Tensor.clone calls made so far (AccumulateGrad copies with clone)."""
    count = [0]
    original = Tensor.clone

    def counting(self, *args, **kwargs):
        count[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Tensor, "clone", counting)
    return count


def _linear_leaves(seed: int = 0):
    gradc.manual_seed(seed)
    w = gradc.randn(5, 3, requires_grad=True)
    b = gradc.randn(5, requires_grad=True)
    x = gradc.randn(4, 3)
    return w, b, x


def _shares(a: Tensor, b: Tensor) -> bool:
    return np.shares_memory(a.detach().numpy(), b.detach().numpy())


def test_refcounts_are_exact_here():
    # the interpreter the suite runs on must exercise the stealing path
    assert node_module._STEAL


def test_linear_gradients_are_taken_without_a_copy(clones):
    w, b, x = _linear_leaves()
    F.linear(x, w, b).relu().sum().backward()
    assert clones[0] == 0
    expected_w = ((x @ w.T + b > 0).float().T @ x).detach()
    assert_close(w.grad, expected_w)
    assert w.grad.grad_fn is None and not w.grad.requires_grad and w.grad.is_contiguous()
    assert w.grad.shape == w.shape and b.grad.shape == b.shape


def test_mlp_step_matches_torch_over_several_steps(torch):
    gradc.manual_seed(0)
    model = gradc.nn.Sequential(gradc.nn.Linear(6, 8), gradc.nn.ReLU(), gradc.nn.Linear(8, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p, q in zip(model.parameters(), twin.parameters()):
            q.copy_(torch.from_numpy(p.detach().numpy().copy()))
    opt, topt = gradc.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(twin.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((5, 6), dtype=np.float32)
        y = rng.integers(0, 3, 5)
        for m, o, lib in ((model, opt, gradc), (twin, topt, torch)):
            o.zero_grad()
            F_ = lib.nn.functional
            F_.cross_entropy(m(lib.from_numpy(x)), lib.from_numpy(y)).backward()
            o.step()
        for p, q in zip(model.parameters(), twin.parameters()):
            assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
            assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_second_backward_adds_into_the_taken_gradient():
    w, b, x = _linear_leaves()
    loss = F.linear(x, w, b).sum()
    loss.backward(retain_graph=True)
    first = w.grad
    once = first.detach().numpy().copy()
    loss.backward()
    assert w.grad is first  # accumulated in place, as PyTorch without create_graph
    assert_close(w.grad, gradc.from_numpy(2 * once))


def test_hook_keeping_the_intermediate_gradient_sees_no_aliasing():
    w, b, x = _linear_leaves()
    kept = []
    wt = w.mT
    wt.register_hook(kept.append)  # w's gradient is a transposed view of this one
    (x @ wt + b).sum().backward()
    assert not _shares(w.grad, kept[0])
    before = kept[0].detach().numpy().copy()
    w.grad.mul_(3)
    np.testing.assert_array_equal(kept[0].detach().numpy(), before)
    assert_close(w.grad, gradc.from_numpy(3 * before.T.copy()))


def test_hook_keeping_only_a_numpy_array_sees_no_aliasing():
    w, b, x = _linear_leaves()
    arrays = []
    wt = w.mT
    wt.register_hook(lambda g: arrays.append(g.numpy()))
    (x @ wt + b).sum().backward()
    assert not np.shares_memory(w.grad.numpy(), arrays[0])


def test_hook_keeping_the_array_of_a_fresh_gradient_sees_no_aliasing():
    w = gradc.randn(3, 5, requires_grad=True)
    c = gradc.randn(15)
    arrays = []
    flat = w.reshape(15)  # w's gradient: a view of flat's, whose array the hook keeps
    flat.register_hook(lambda g: arrays.append(g.numpy()))
    (flat * c).sum().backward()
    assert not np.shares_memory(w.grad.numpy(), arrays[0])
    assert_close(w.grad, c.reshape(3, 5))


def test_leaf_hook_keeping_its_gradient_gets_a_copy_in_grad():
    w, b, x = _linear_leaves()
    seen = []
    w.register_hook(seen.append)
    F.linear(x, w, b).sum().backward()
    assert not _shares(w.grad, seen[0])
    assert_close(w.grad, seen[0])


def test_leaf_hook_replacement_kept_by_the_user_is_not_taken():
    w, b, x = _linear_leaves()
    replaced = []

    def hook(g):
        replaced.append(g * 2)
        return replaced[-1]

    w.register_hook(hook)
    F.linear(x, w, b).sum().backward()
    assert not _shares(w.grad, replaced[0])
    assert_close(w.grad, replaced[0])


def test_unkept_leaf_hook_replacement_is_the_gradient():
    w, b, x = _linear_leaves()
    w.register_hook(lambda g: g * 2)
    F.linear(x, w, b).sum().backward()
    assert_close(w.grad, (2 * gradc.ones(4, 5).T @ x).detach())


def test_node_post_hook_sees_a_gradient_grad_does_not_alias():
    w, b, x = _linear_leaves()
    seen = []
    out = F.linear(x, w, b)
    acc = node_module.accumulator(w)  # the graph's own: alive while `out` refers to it
    acc.register_hook(lambda grad_inputs, grad_outputs: seen.append(grad_outputs[0]))
    out.sum().backward()
    assert seen and not _shares(w.grad, seen[0])


def test_backward_on_a_leaf_with_the_users_gradient_copies_it():
    x = gradc.randn(3, 4, requires_grad=True)
    g = gradc.randn(3, 4)
    x.backward(g)
    assert not _shares(x.grad, g)
    assert_close(x.grad, g)


def test_one_gradient_reaching_two_leaves_is_not_shared():
    a = gradc.randn(3, 4, requires_grad=True)
    b = gradc.randn(3, 4, requires_grad=True)
    (a + b).sum().backward()  # add's backward hands the same tensor to both leaves
    assert not _shares(a.grad, b.grad)
    a.grad.add_(1)
    assert_close(b.grad, gradc.ones(3, 4))


def test_custom_function_keeping_its_gradient_is_not_aliased():
    kept = []

    class Keep(gradc.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            out = g * 2
            kept.append(out)
            return out

    x = gradc.randn(3, requires_grad=True)
    Keep.apply(x).sum().backward()
    assert not _shares(x.grad, kept[0])
    assert_close(x.grad, gradc.full((3,), 2.0))


def test_pass_through_function_with_the_users_gradient_copies_it():
    class Identity(gradc.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g

    x = gradc.randn(3, requires_grad=True)
    g = gradc.randn(3)
    Identity.apply(x).backward(g)
    assert not _shares(x.grad, g)


def test_gradient_saved_by_a_later_forward_is_not_taken():
    x = gradc.randn(4, requires_grad=True)
    y = gradc.randn(4, requires_grad=True)
    gy = None

    def hook(g):
        nonlocal gy
        gy = g.exp()  # a tensor this hook's caller keeps alive
        return gy

    y.register_hook(hook)
    (x * y).sum().backward()
    assert not _shares(y.grad, gy)


def test_create_graph_gradient_keeps_its_history():
    x = gradc.randn(3, requires_grad=True)
    (x * x).sum().backward(create_graph=True)
    assert x.grad.requires_grad and x.grad.grad_fn is not None
    x.grad.sum().backward()
    assert_close(x.grad, 2 * x.detach() + 2)


def test_gradient_of_a_view_of_a_leaf_and_retain_grad():
    base = gradc.randn(4, 6, requires_grad=True)
    v = base[:, 1:4]
    mid = v * 3
    mid.retain_grad()
    mid.sum().backward()
    expected = np.zeros((4, 6), np.float32)
    expected[:, 1:4] = 3
    assert_close(base.grad, gradc.from_numpy(expected))
    assert not _shares(mid.grad, base.grad)


def test_gradient_with_a_larger_buffer_is_copied(clones):
    x = gradc.randn(3, requires_grad=True)

    class Slice(gradc.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t * 1

        @staticmethod
        def backward(ctx, g):
            return (g.expand(2, 3) * 1)[0]  # a row of a fresh buffer twice the gradient's size

    Slice.apply(x).sum().backward()
    assert clones[0] == 1
    assert x.grad.untyped_storage().size() == 3


# ---------------------------------------------------------------- where with a zero branch
SPECIALS = np.array([1.5, -2.0, np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-40], dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("zero_first", [False, True])
def test_where_with_a_zero_branch_is_bit_exact(dtype, zero_first):
    x = np.tile(SPECIALS.astype(dtype), 5).reshape(5, -1)
    cond = np.random.default_rng(0).random(x.shape) > 0.5
    args = (0.0, x) if zero_first else (x, 0.0)
    got = gradc.where(gradc.from_numpy(cond), *(gradc.from_numpy(a) if isinstance(a, np.ndarray) else a
                                                 for a in args)).numpy()
    expected = np.where(cond, *args)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.view(f"i{x.itemsize}"), expected.view(f"i{x.itemsize}"))


def test_where_fast_path_only_for_plus_zero_and_matching_shapes():
    x = np.ones((2, 3), np.float32)
    cond = np.array([[True, False, True], [False, True, False]])
    assert pointwise._where_zero(cond, x, 0.0) is not None
    assert pointwise._where_zero(cond, x, 0) is not None
    assert pointwise._where_zero(cond, x, -0.0) is None  # the sign of the written zero matters
    assert pointwise._where_zero(cond, x, 1.0) is None
    assert pointwise._where_zero(cond[:1], x, 0.0) is None  # a broadcast condition
    assert pointwise._where_zero(cond, x.astype(np.float16), 0.0) is None
    assert pointwise._where_zero(cond.astype(np.float32), x, 0.0) is None
    assert pointwise._where_zero(np.array(True), np.float32(2.0), 0.0) is None
    signed = gradc.where(gradc.from_numpy(cond), gradc.from_numpy(x), -0.0).numpy()
    assert math.copysign(1, signed[0, 1]) == -1


def test_where_condition_reaches_the_kernel_as_bool(monkeypatch):
    seen = []
    kernel = pointwise.WHERE.kernel
    monkeypatch.setattr(pointwise.WHERE, "kernel", lambda xp, c, a, b: seen.append(c.dtype) or kernel(xp, c, a, b))
    x = gradc.arange(6).reshape(2, 3)
    out = gradc.where(x > 2, x, 0.5)
    assert seen == [np.bool_] and out.dtype is gradc.float32
    assert_close(out, gradc.tensor([[0.5, 0.5, 0.5], [3.0, 4.0, 5.0]]))


def test_relu_backward_matches_torch_on_special_values(torch):
    values = np.tile(SPECIALS, 3)
    grads = np.random.default_rng(1).standard_normal(values.size).astype(np.float32)
    x = gradc.from_numpy(values.copy()).requires_grad_()
    tx = torch.from_numpy(values.copy()).requires_grad_()
    x.relu().backward(gradc.from_numpy(grads))
    tx.relu().backward(torch.from_numpy(grads))
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


# ---------------------------------------------------------------- the allocator setting
def test_retain_freed_heap_applies_on_glibc_and_can_be_switched_off(monkeypatch):
    import os
    import sys

    glibc = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    assert storage.retain_freed_heap() is glibc
    monkeypatch.setenv("GRADC_RETAIN_HEAP", "0")
    assert storage.retain_freed_heap() is False


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5)])
def test_matmul_of_a_broadcast_operand_multiplies_one_row(shape):
    """Every row of `a` the same memory (the gradient of a mean): one vector-matrix product,
    copied to every row, gives what the full GEMM gives; compiled and eager agree."""
    row = gradc.randn(5)
    a = row.expand(*shape)
    b = gradc.randn(5, 7)
    want = np.broadcast_to(row.numpy(), shape) @ b.numpy()
    got = gradc.matmul(a, b)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous()
    compiled = gradc.compile(lambda r, w: (r.expand(*shape) @ w).sum(-1))
    np.testing.assert_allclose(compiled(row, b).numpy(), want.sum(-1), rtol=1e-5, atol=1e-5)
    w = gradc.randn(5, 7, requires_grad=True)
    (gradc.randn(*shape[:-1], 5).mean() * 0 + (a @ w).mean()).backward()
    np.testing.assert_allclose(w.grad.numpy(), np.broadcast_to(row.numpy(), shape).reshape(-1, 5).T
                               @ np.full((int(np.prod(shape[:-1])), 7), 1 / (np.prod(shape[:-1]) * 7)),
                               rtol=1e-5, atol=1e-6)
