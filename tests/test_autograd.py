"""The autograd engine against PyTorch: graph structure, backward/grad, hooks, grad modes,
saved-tensor versioning, and double backward."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from helpers import assert_close

import gradc
from gradc.autograd import grad as agrad

# torch warns that backward(create_graph=True) makes a parameter/grad reference cycle
pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")

FREED_START = "Trying to backward through the graph a second time"
INPLACE_SAVED = "one of the variables needed for gradient computation has been modified by an inplace operation"
LEAF_INPLACE = "a leaf Variable that requires grad is being used in an in-place operation."
NO_GRAD_FN = "element 0 of tensors does not require grad and does not have a grad_fn"
SCALAR_ONLY = "grad can be implicitly created only for scalar outputs"


def pair(torch, data, requires_grad=True, dtype="float64"):
    """The same data as a gradc tensor and a torch tensor."""
    arr = np.asarray(data, dtype=dtype)
    g = gradc.tensor(arr.copy(), requires_grad=requires_grad)
    t = torch.tensor(arr.copy(), requires_grad=requires_grad)
    return g, t


def rand_pair(torch, *shape, requires_grad=True, seed=0):
    return pair(torch, np.random.default_rng(seed).standard_normal(shape), requires_grad)


def structure(node, depth=6):
    """(name, [children structures]) of a graph, with AccumulateGrad / None as leaves."""
    if node is None:
        return None
    name = type(node).__name__  # torch's AccumulateGrad.name() is "torch::autograd::AccumulateGrad"
    if depth == 0:
        return name
    return (name, tuple((structure(n, depth - 1), nr) for n, nr in node.next_functions))


# ---------------------------------------------------------------- graph structure
def test_grad_fn_names_and_next_functions_match_torch(torch):
    def build(lib, x, w):
        h = lib.exp(x * w + x)
        return (h.sum() - (x / w).sum().tanh()).neg()

    x, tx = rand_pair(torch, 3)
    w, tw = rand_pair(torch, 3, seed=1)
    y, ty = build(gradc, x, w), build(torch, tx, tw)
    assert structure(y.grad_fn) == structure(ty.grad_fn)
    assert y.grad_fn.name() == "NegBackward0"


def test_more_grad_fn_names_match_torch(torch):
    # (ops gradc builds from other primitives, e.g. mean, mm, t, are named after those)
    a, ta = rand_pair(torch, 2, 3)
    b, tb = rand_pair(torch, 3, 4, seed=1)
    cases = [
        lambda lib, a, b: a.sum(),
        lambda lib, a, b: a.softmax(1),
        lambda lib, a, b: a.permute(1, 0),
        lambda lib, a, b: a.view(6),
        lambda lib, a, b: lib.cat([a, a]),
        lambda lib, a, b: a.tanh(),
        lambda lib, a, b: a.sigmoid(),
        lambda lib, a, b: a.relu(),
        lambda lib, a, b: a.pow(2),
        lambda lib, a, b: a - 1,
        lambda lib, a, b: a.sqrt(),
        lambda lib, a, b: a.log(),
    ]
    for fn in cases:
        assert fn(gradc, a, b).grad_fn.name() == fn(torch, ta, tb).grad_fn.name()


def test_leaf_used_twice_shares_one_accumulate_grad():
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    (n0, i0), (n1, i1) = y.grad_fn.next_functions
    assert n0 is n1 and (i0, i1) == (0, 0)
    assert n0.name() == "AccumulateGrad"
    assert n0.variable is x
    z = x + 1
    assert z.grad_fn.next_functions[0][0] is n0
    y.sum().backward()
    assert_close(x.grad, gradc.tensor([2.0, 4.0]))


def test_constant_input_has_none_edge(torch):
    x, tx = pair(torch, [1.0, 2.0])
    c, tc = pair(torch, [3.0, 4.0], requires_grad=False)
    y, ty = x * c, tx * tc
    assert y.grad_fn.next_functions[1] == (None, 0)
    assert ty.grad_fn.next_functions[1] == (None, 0)
    assert type(y.grad_fn.next_functions[0][0]).__name__ == type(ty.grad_fn.next_functions[0][0]).__name__


# ---------------------------------------------------------------- backward basics
def test_accumulates_across_backward_calls(torch):
    x, tx = pair(torch, [1.0, -2.0, 3.0])
    for t in (x, tx):
        (t * t).sum().backward()
        (t * 3).sum().backward()
    assert_close(x.grad, tx.grad)
    assert_close(x.grad, np.array([5.0, -1.0, 9.0]))


def test_backward_with_gradient_for_non_scalar(torch):
    x, tx = rand_pair(torch, 2, 3)
    g, tg = rand_pair(torch, 2, 3, requires_grad=False, seed=5)
    (x.exp() * 2).backward(g)
    (tx.exp() * 2).backward(tg)
    assert_close(x.grad, tx.grad)


def test_non_scalar_backward_without_gradient_raises(torch):
    x, tx = rand_pair(torch, 2, 3)
    with pytest.raises(RuntimeError) as exp:
        (tx * 2).backward()
    assert SCALAR_ONLY in str(exp.value)
    with pytest.raises(RuntimeError, match=SCALAR_ONLY):
        (x * 2).backward()


def test_one_element_non_scalar_output_backward(torch):
    x, tx = pair(torch, [[2.0]])
    (x * x).backward()
    (tx * tx).backward()
    assert_close(x.grad, tx.grad)


def test_backward_gradient_shape_mismatch_raises(torch):
    x, tx = rand_pair(torch, 2, 3)
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (tx * 2).backward(torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 2).backward(gradc.ones(3, 2, dtype=gradc.float64))


def test_long_chain_no_recursion_error():
    x = gradc.tensor([0.5], dtype=gradc.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    assert_close(x.grad, np.array([1.0001 ** 10_000]), rtol=1e-9)
    # freeing a long graph must not recurse either
    del y
    gc.collect()


def test_long_chain_of_adds_gradient():
    x = gradc.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y + x
    y.backward()
    assert x.grad.item() == 10_001.0


def test_diamond_gradients_summed(torch):
    def f(lib, x):
        a = x.exp()
        b = a * 2
        c = a.sin()
        d = b * c + a
        return d.sum()

    x, tx = rand_pair(torch, 4)
    f(gradc, x).backward()
    f(torch, tx).backward()
    assert_close(x.grad, tx.grad)


def test_wide_fan_in_and_reuse(torch):
    def f(lib, x, w):
        parts = [x * w[i] for i in range(5)]
        s = parts[0]
        for p in parts[1:]:
            s = s + p * x
        return (s * s).sum()

    x, tx = rand_pair(torch, 3)
    w, tw = rand_pair(torch, 5, seed=3)
    f(gradc, x, w).backward()
    f(torch, tx, tw).backward()
    assert_close(x.grad, tx.grad)
    assert_close(w.grad, tw.grad)


def test_backward_on_tensor_without_grad_raises(torch):
    with pytest.raises(RuntimeError, match=NO_GRAD_FN):
        torch.ones(2).sum().backward()
    with pytest.raises(RuntimeError, match=NO_GRAD_FN):
        gradc.ones(2).sum().backward()
    x = gradc.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=NO_GRAD_FN):
        with gradc.no_grad():
            y = x.sum()
        y.backward()


def test_backward_on_leaf_itself(torch):
    x, tx = pair(torch, 3.0)
    x.backward()
    tx.backward()
    assert_close(x.grad, tx.grad)


# ---------------------------------------------------------------- retain_graph
def test_second_backward_raises_torch_message(torch):
    tx = torch.tensor([1.0, 2.0], requires_grad=True)
    ty = (tx.exp() * tx).sum()
    ty.backward()
    with pytest.raises(RuntimeError) as texc:
        ty.backward()
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError) as exc:
        y.backward()
    assert str(exc.value).startswith(FREED_START)
    assert str(texc.value).startswith(FREED_START)
    assert str(exc.value) == str(texc.value)


def test_retain_graph_allows_second_backward(torch):
    x, tx = pair(torch, [1.0, 2.0])
    for t in (x, tx):
        y = (t.exp() * t).sum()
        y.backward(retain_graph=True)
        y.backward()
    assert_close(x.grad, tx.grad)


def test_graph_without_saved_tensors_backward_twice(torch):
    x, tx = pair(torch, [1.0, 2.0])
    for t in (x, tx):
        y = (t + 2).sum()
        y.backward()
        y.backward()
    assert_close(x.grad, tx.grad)
    assert_close(x.grad, np.array([2.0, 2.0]))


def test_grad_second_call_raises_too():
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    agrad(y, x)
    with pytest.raises(RuntimeError, match=FREED_START):
        agrad(y, x)


def test_shared_subgraph_freed_by_first_backward(torch):
    msgs = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        a = x * x
        b = a.sum()
        c = (a * 3).sum()
        b.backward()
        with pytest.raises(RuntimeError) as exc:
            c.backward()  # a's node (shared with b) was freed
        msgs.append(str(exc.value))
        assert x.grad.tolist() == [2.0, 4.0]
    assert msgs[0].startswith(FREED_START) and msgs[1].startswith(FREED_START)


def test_shared_subgraph_with_retain_graph(torch):
    x, tx = pair(torch, [1.0, 2.0])
    for t in (x, tx):
        a = t * t
        a.sum().backward(retain_graph=True)
        (a * 3).sum().backward()
    assert_close(x.grad, tx.grad)
    assert_close(x.grad, np.array([2.0, 4.0]) * 4)


# ---------------------------------------------------------------- create_graph / double backward
def test_double_backward_elementwise(torch):
    def f(lib, x):
        return (x.sin() * x.exp() + x.tanh() * x * x).sum()

    x, tx = rand_pair(torch, 5)
    (g,) = agrad(f(gradc, x), x, create_graph=True)
    (tg,) = torch.autograd.grad(f(torch, tx), tx, create_graph=True)
    assert_close(g, tg)
    assert g.requires_grad and g.grad_fn is not None
    (gg,) = agrad(g.sum(), x)
    (tgg,) = torch.autograd.grad(tg.sum(), tx)
    assert_close(gg, tgg)


def test_hessian_vector_product_reduction_and_matmul(torch):
    def f(lib, x, A):
        y = (A @ x).tanh()
        return (y * y).sum() + x.softmax(0).mul(x).sum() + (x ** 3).mean()

    x, tx = rand_pair(torch, 4)
    A, tA = rand_pair(torch, 3, 4, seed=2)
    v, tv = rand_pair(torch, 4, requires_grad=False, seed=4)
    (g,) = agrad(f(gradc, x, A), x, create_graph=True)
    (tg,) = torch.autograd.grad(f(torch, tx, tA), tx, create_graph=True)
    assert_close(g, tg)
    hv = agrad((g * v).sum(), [x, A])
    thv = torch.autograd.grad((tg * tv).sum(), [tx, tA])
    assert_close(hv[0], thv[0])
    assert_close(hv[1], thv[1])


def test_double_backward_matmul_both_sides(torch):
    a, ta = rand_pair(torch, 2, 3)
    b, tb = rand_pair(torch, 3, 2, seed=1)
    ga = agrad(((a @ b) ** 2).sum(), [a, b], create_graph=True)
    tga = torch.autograd.grad(((ta @ tb) ** 2).sum(), [ta, tb], create_graph=True)
    for g, t in zip(ga, tga):
        assert_close(g, t)
    (ga[0].sum() + (ga[1] * ga[1]).sum()).backward()
    (tga[0].sum() + (tga[1] * tga[1]).sum()).backward()
    assert_close(a.grad, ta.grad)
    assert_close(b.grad, tb.grad)


def test_matmul_weight_gradients_in_the_weights_layout_match_torch(torch):
    """A batched input times a shared weight (one GEMM over the rows), and the weight read
    transposed as linear layers do (its gradient computed in its own layout): values,
    .grad layout and double backward as torch."""
    x, tx = rand_pair(torch, 2, 5, 3)
    w, tw = rand_pair(torch, 4, 3, seed=1)
    v, tv = rand_pair(torch, 3, 4, seed=2)
    grads = agrad(((x @ w.mT).tanh() @ v.mT.mT.mT).sum() + (x @ v).pow(2).sum(), [x, w, v], create_graph=True)
    tgrads = torch.autograd.grad(((tx @ tw.mT).tanh() @ tv.mT.mT.mT).sum() + (tx @ tv).pow(2).sum(),
                                 [tx, tw, tv], create_graph=True)
    for g, t in zip(grads, tgrads):
        assert_close(g, t)
    sum(g.pow(2).sum() for g in grads).backward()
    sum(t.pow(2).sum() for t in tgrads).backward()
    for p, t in ((x, tx), (w, tw), (v, tv)):
        assert_close(p.grad, t.grad)
    assert w.grad.is_contiguous()


def test_backward_create_graph_accumulates_differentiable_grad(torch):
    x, tx = pair(torch, [1.0, 2.0, 3.0])
    for t in (x, tx):
        (t ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad and tx.grad.requires_grad
    assert_close(x.grad, tx.grad)
    (gx,) = agrad(x.grad.sum(), x)
    (tgx,) = torch.autograd.grad(tx.grad.sum(), tx)
    assert_close(gx, tgx)


def test_third_derivative(torch):
    x, tx = pair(torch, 0.7)
    res = []
    for lib, t in ((gradc, x), (torch, tx)):
        y = t.sin() * t.exp()
        d1 = (agrad if lib is gradc else torch.autograd.grad)(y, t, create_graph=True)[0]
        d2 = (agrad if lib is gradc else torch.autograd.grad)(d1, t, create_graph=True)[0]
        d3 = (agrad if lib is gradc else torch.autograd.grad)(d2, t)[0]
        res.append((d1, d2, d3))
    for g, t in zip(*res):
        assert_close(g, t)


def test_grad_without_create_graph_is_not_differentiable():
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    (g,) = agrad((x * x).sum(), x)
    assert not g.requires_grad and g.grad_fn is None


# ---------------------------------------------------------------- inputs=
def test_backward_inputs_only_accumulates_those(torch):
    x, tx = pair(torch, [1.0, 2.0])
    w, tw = pair(torch, [3.0, 4.0])
    for a, b in ((x, w), (tx, tw)):
        (a * b).sum().backward(inputs=[a])
    assert w.grad is None and tw.grad is None
    assert_close(x.grad, tx.grad)
    for a, b in ((x, w), (tx, tw)):
        (a * b).sum().backward(inputs=b)
    assert_close(x.grad, tx.grad)
    assert_close(w.grad, tw.grad)


def test_backward_inputs_non_leaf_gets_grad(torch):
    x, tx = pair(torch, [1.0, 2.0])
    res = []
    for t in (x, tx):
        h = t * 3
        (h * h).sum().backward(inputs=[h])
        res.append(h)
    assert x.grad is None and tx.grad is None
    assert_close(res[0].grad, res[1].grad)


def test_backward_inputs_empty_raises(torch):
    x = gradc.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="cannot be empty"):
        (x * 2).sum().backward(inputs=[])
    tx = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="cannot be empty"):
        (tx * 2).sum().backward(inputs=[])


# ---------------------------------------------------------------- autograd.grad
def test_grad_returns_without_touching_dot_grad(torch):
    x, tx = rand_pair(torch, 3)
    w, tw = rand_pair(torch, 3, seed=1)
    gs = agrad((x * w).exp().sum(), [x, w])
    tgs = torch.autograd.grad((tx * tw).exp().sum(), [tx, tw])
    assert isinstance(gs, tuple) and len(gs) == 2
    for g, t in zip(gs, tgs):
        assert_close(g, t)
    assert x.grad is None and w.grad is None


def test_grad_single_tensor_input_returns_tuple():
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    out = agrad((x * x).sum(), x)
    assert isinstance(out, tuple) and len(out) == 1
    assert_close(out[0], np.array([2.0, 4.0], dtype=np.float32))


def test_grad_allow_unused(torch):
    x = gradc.tensor([1.0], requires_grad=True)
    z = gradc.tensor([2.0], requires_grad=True)
    tx = torch.tensor([1.0], requires_grad=True)
    tz = torch.tensor([2.0], requires_grad=True)
    with pytest.raises(RuntimeError) as texc:
        torch.autograd.grad((tx * 2).sum(), [tx, tz], retain_graph=True)
    with pytest.raises(RuntimeError) as exc:
        agrad((x * 2).sum(), [x, z], retain_graph=True)
    assert str(exc.value) == str(texc.value)
    gx, gz = agrad((x * 2).sum(), [x, z], allow_unused=True)
    assert gz is None
    assert gx.tolist() == [2.0]
    gx, gz = agrad((x * 2).sum(), [x, z], materialize_grads=True)
    tgx, tgz = torch.autograd.grad((tx * 2).sum(), [tx, tz], materialize_grads=True)
    assert_close(gz, tgz)
    assert_close(gx, tgx)


def test_grad_input_not_requiring_grad_raises(torch):
    x = gradc.tensor([1.0], requires_grad=True)
    c = gradc.tensor([1.0])
    tx = torch.tensor([1.0], requires_grad=True)
    tc = torch.tensor([1.0])
    with pytest.raises(RuntimeError) as texc:
        torch.autograd.grad((tx * tc).sum(), [tc])
    with pytest.raises(RuntimeError) as exc:
        agrad((x * c).sum(), [c])
    assert str(exc.value) == str(texc.value)


def test_grad_outputs_and_multiple_outputs(torch):
    x, tx = rand_pair(torch, 3)
    w, tw = rand_pair(torch, 3, seed=1)
    go1, tgo1 = rand_pair(torch, 3, requires_grad=False, seed=7)
    res = agrad([x * w, (x.exp()).sum()], [x, w], grad_outputs=[go1, gradc.tensor(2.0, dtype=gradc.float64)])
    tres = torch.autograd.grad([tx * tw, tx.exp().sum()], [tx, tw],
                               grad_outputs=[tgo1, torch.tensor(2.0, dtype=torch.float64)])
    for g, t in zip(res, tres):
        assert_close(g, t)


def test_grad_output_none_for_scalar_output(torch):
    x, tx = pair(torch, [1.0, 2.0])
    (g,) = agrad([(x * x).sum()], [x], grad_outputs=[None])
    (tg,) = torch.autograd.grad([(tx * tx).sum()], [tx], grad_outputs=[None])
    assert_close(g, tg)


def test_grad_wrt_non_leaf(torch):
    x, tx = pair(torch, [1.0, 2.0])
    h, th = x * 2, tx * 2
    (g,) = agrad((h ** 3).sum(), h)
    (tg,) = torch.autograd.grad((th ** 3).sum(), th)
    assert_close(g, tg)
    assert x.grad is None and h.grad is None


def test_grad_same_input_twice(torch):
    x, tx = pair(torch, [1.0, 2.0])
    g = agrad((x * x).sum(), [x, x])
    tg = torch.autograd.grad((tx * tx).sum(), [tx, tx])
    assert len(g) == 2
    assert_close(g[0], tg[0])
    assert_close(g[1], tg[1])


def test_grad_does_not_run_leaf_hooks_accumulation_but_runs_tensor_hook(torch):
    seen, tseen = [], []
    x, tx = pair(torch, [1.0, 2.0])
    x.register_hook(lambda g: seen.append(g.tolist()))
    tx.register_hook(lambda g: tseen.append(g.tolist()))
    agrad((x * 3).sum(), x)
    torch.autograd.grad((tx * 3).sum(), tx)
    assert seen == tseen == [[3.0, 3.0]]
    assert x.grad is None


def test_grad_only_runs_needed_branches():
    calls = []
    x = gradc.tensor([1.0], requires_grad=True)
    w = gradc.tensor([2.0], requires_grad=True)
    a = x * 2
    b = w * 3
    b.register_hook(lambda g: calls.append("b"))
    a.register_hook(lambda g: calls.append("a"))
    agrad((a + b).sum(), x)
    assert calls == ["a"]


# ---------------------------------------------------------------- tensor hooks
def test_leaf_hook_modifies_grad(torch):
    x, tx = pair(torch, [1.0, 2.0])
    for t in (x, tx):
        t.register_hook(lambda g: g * 10)
        (t * t).sum().backward()
    assert_close(x.grad, tx.grad)
    assert_close(x.grad, np.array([20.0, 40.0]))


def test_non_leaf_hook_modifies_grad_flowing_back(torch):
    x, tx = pair(torch, [1.0, 2.0])
    for t in (x, tx):
        h = t * t
        h.register_hook(lambda g: g + 1)
        (h * 3).sum().backward()
    assert_close(x.grad, tx.grad)


def test_hook_order_and_chaining(torch):
    logs = []
    for t in (gradc.tensor([1.0], requires_grad=True), torch.tensor([1.0], requires_grad=True)):
        order = []
        h = t * 2
        h.register_hook(lambda g, order=order: order.append(("first", g.item())) or g * 2)
        h.register_hook(lambda g, order=order: order.append(("second", g.item())) or g * 5)
        t.register_hook(lambda g, order=order: order.append(("leaf", g.item())))
        h.sum().backward()
        logs.append((order, t.grad.item()))
    assert logs[0] == logs[1]


def test_hook_handle_remove(torch):
    for t in (gradc.tensor([1.0], requires_grad=True), torch.tensor([1.0], requires_grad=True)):
        handle = t.register_hook(lambda g: g * 100)
        (t * 2).sum().backward()
        assert t.grad.item() == 200.0
        handle.remove()
        t.grad = None
        (t * 2).sum().backward()
        assert t.grad.item() == 2.0
        handle.remove()  # removing twice is harmless


def test_non_leaf_hook_handle_remove():
    x = gradc.tensor([1.0], requires_grad=True)
    h = x * 2
    handle = h.register_hook(lambda g: g * 100)
    handle.remove()
    (h * 1).sum().backward()
    assert x.grad.item() == 2.0


def test_leaf_hook_registered_before_graph_built(torch):
    # hook registered on a leaf, then the graph is built afterwards
    for t in (gradc.tensor([1.0, 1.0], requires_grad=True), torch.tensor([1.0, 1.0], requires_grad=True)):
        t.register_hook(lambda g: g * 3)
        gc.collect()
        (t * 2).sum().backward()
        assert t.grad.tolist() == [6.0, 6.0]


def test_hook_on_tensor_without_grad_raises(torch):
    with pytest.raises(RuntimeError) as texc:
        torch.ones(1).register_hook(lambda g: g)
    with pytest.raises(RuntimeError) as exc:
        gradc.ones(1).register_hook(lambda g: g)
    assert str(exc.value) == str(texc.value)


def test_hook_sees_summed_grad_of_diamond(torch):
    res = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        seen = []
        h = x * 2
        h.register_hook(lambda g, seen=seen: seen.append(g.tolist()))
        (h * 3 + h.exp()).sum().backward()
        res.append(seen)
    assert len(res[0]) == 1
    np.testing.assert_allclose(res[0], res[1])


# ---------------------------------------------------------------- node hooks
def test_node_hook_and_prehook_args_and_replacement(torch):
    results = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        w = lib.tensor([3.0, 4.0], dtype=lib.float64, requires_grad=True)
        y = x * w
        seen = {}

        def pre(grad_outputs, seen=seen):
            seen["pre"] = [g.tolist() for g in grad_outputs]
            return (grad_outputs[0] * 2,)

        def post(grad_inputs, grad_outputs, seen=seen):
            seen["post_in"] = [None if g is None else g.tolist() for g in grad_inputs]
            seen["post_out"] = [g.tolist() for g in grad_outputs]
            return (grad_inputs[0] + 1, grad_inputs[1])

        y.grad_fn.register_prehook(pre)
        y.grad_fn.register_hook(post)
        y.sum().backward()
        results.append((seen, x.grad.tolist(), w.grad.tolist()))
    assert results[0] == results[1]


def test_node_hook_handle_remove(torch):
    x = gradc.tensor([1.0], requires_grad=True)
    y = x * 2
    h = y.grad_fn.register_hook(lambda gi, go: (gi[0] * 10,))
    h.remove()
    y.sum().backward()
    assert x.grad.item() == 2.0


def test_node_hook_none_grad_input(torch):
    results = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0], requires_grad=True)
        c = lib.tensor([2.0])
        y = x * c
        seen = []
        y.grad_fn.register_hook(lambda gi, go, seen=seen: seen.append([g is None for g in gi]))
        y.sum().backward()
        results.append(seen)
    assert results[0] == results[1]


def test_accumulate_grad_node_hooks(torch):
    results = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        acc = y.grad_fn.next_functions[0][0]
        seen = []
        acc.register_prehook(lambda go, seen=seen: seen.append(("pre", [g.tolist() for g in go])))
        y.sum().backward()
        results.append((seen, x.grad.tolist()))
    assert results[0] == results[1]


# ---------------------------------------------------------------- retain_grad, leaves
def test_retain_grad_non_leaf(torch):
    x, tx = pair(torch, [1.0, 2.0])
    out = []
    for t in (x, tx):
        h = t * t
        if t is x:
            assert h.grad is None
        h.retain_grad()
        assert h.retains_grad
        (h * 3).sum().backward()
        out.append(h)
    assert_close(out[0].grad, out[1].grad)
    assert not x.retains_grad and not tx.retains_grad


def test_retain_grad_accumulates_across_backwards(torch):
    x, tx = pair(torch, [1.0, 2.0])
    out = []
    for t in (x, tx):
        h = t * t
        h.retain_grad()
        y = (h * 3).sum()
        y.backward(retain_graph=True)
        y.backward()
        out.append(h)
    assert_close(out[0].grad, out[1].grad)


def test_retain_grad_sees_hook_modified_grad(torch):
    out = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x * 2
        h.retain_grad()
        h.register_hook(lambda g: g * 10)
        h.sum().backward()
        out.append((h.grad.tolist(), x.grad.tolist()))
    assert out[0] == out[1]


def test_retain_grad_leaf_noop(torch):
    x = gradc.tensor([1.0], requires_grad=True)
    x.retain_grad()
    (x * 2).sum().backward()
    assert x.grad.item() == 2.0


def test_requires_grad_propagation_and_is_leaf(torch):
    for lib in (gradc, torch):
        a = lib.tensor([1.0, 2.0], requires_grad=True)
        b = lib.tensor([1.0, 2.0])
        assert a.is_leaf and b.is_leaf
        assert a.grad_fn is None
        c = a + b
        assert c.requires_grad and not c.is_leaf
        d = b * 2
        assert not d.requires_grad and d.is_leaf and d.grad_fn is None
        with lib.no_grad():
            e = a * 2
        assert not e.requires_grad and e.is_leaf
        f = a.detach()
        assert not f.requires_grad and f.is_leaf


def test_integer_outputs_do_not_require_grad(torch):
    x, tx = rand_pair(torch, 3, 4)
    for t in (x, tx):
        for out in (t.argmax(), t.argmax(1), t > 0, t == t, t.argsort(1)):
            assert not out.requires_grad and out.grad_fn is None and out.is_leaf
        m = t.max(1)
        vals, idx = m[0], m[1]
        assert vals.requires_grad and not idx.requires_grad


def test_int_tensor_cannot_require_grad(torch):
    with pytest.raises(RuntimeError) as texc:
        torch.tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError) as exc:
        gradc.tensor([1, 2]).requires_grad_()
    assert str(exc.value) == str(texc.value)


def test_set_requires_grad_on_non_leaf_raises(torch):
    x = gradc.tensor([1.0], requires_grad=True)
    tx = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError) as texc:
        (tx * 2).requires_grad = False
    with pytest.raises(RuntimeError) as exc:
        (x * 2).requires_grad = False
    assert str(exc.value) == str(texc.value)
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
        (x * 2).requires_grad_(False)
    # setting True on a non-leaf that already requires grad is allowed
    y, ty = x * 2, tx * 2
    ty.requires_grad_(True)
    y.requires_grad_(True)
    assert y.requires_grad


def test_detach_shares_memory_and_cuts_graph(torch):
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    d = h.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    d.add_(1)  # writes h's storage
    assert h.tolist() == [3.0, 5.0]
    (h.detach() * x).sum().backward()
    assert x.grad.tolist() == [3.0, 5.0]


def test_detach_modification_detected_by_saved_tensor(torch):
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x.exp()
        h.detach().zero_()
        with pytest.raises(RuntimeError, match=INPLACE_SAVED):
            h.sum().backward()


def test_detach_in_place(torch):
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x * 2
        assert h.detach_() is h
        assert not h.requires_grad and h.grad_fn is None and h.is_leaf
        y = (h * x).sum()
        y.backward()
        assert x.grad.tolist() == [2.0, 4.0]


# ---------------------------------------------------------------- grad modes
def test_no_grad_context_and_decorator():
    x = gradc.tensor([1.0], requires_grad=True)
    with gradc.no_grad():
        assert not gradc.is_grad_enabled()
        assert not (x * 2).requires_grad
    assert gradc.is_grad_enabled()

    @gradc.no_grad()
    def f(t):
        assert not gradc.is_grad_enabled()
        return t * 2

    assert not f(x).requires_grad
    assert gradc.is_grad_enabled()
    assert f.__name__ == "f"


def test_no_grad_decorator_without_parentheses(torch):
    @torch.no_grad
    def tf(t):
        return t * 2

    @gradc.no_grad
    def f(t):
        return t * 2

    assert not tf(torch.ones(1, requires_grad=True)).requires_grad
    assert not f(gradc.ones(1, requires_grad=True)).requires_grad
    assert gradc.is_grad_enabled()


def test_nested_grad_modes():
    x = gradc.tensor([1.0], requires_grad=True)
    with gradc.no_grad():
        with gradc.enable_grad():
            assert gradc.is_grad_enabled()
            assert (x * 2).requires_grad
        assert not gradc.is_grad_enabled()
        with gradc.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not gradc.is_grad_enabled()
    assert gradc.is_grad_enabled()


def test_enable_grad_decorator_inside_no_grad():
    @gradc.enable_grad()
    def f(t):
        return t * 2

    x = gradc.tensor([1.0], requires_grad=True)
    with gradc.no_grad():
        assert f(x).requires_grad
        assert not gradc.is_grad_enabled()


def test_set_grad_enabled_plain_call_and_context():
    try:
        gradc.set_grad_enabled(False)
        assert not gradc.is_grad_enabled()
        x = gradc.tensor([1.0], requires_grad=True)
        assert not (x * 2).requires_grad
        gradc.set_grad_enabled(True)
        assert gradc.is_grad_enabled()
        with gradc.set_grad_enabled(False):
            assert not gradc.is_grad_enabled()
        assert gradc.is_grad_enabled()
        with gradc.no_grad():
            with gradc.set_grad_enabled(True):
                assert gradc.is_grad_enabled()
            assert not gradc.is_grad_enabled()
    finally:
        gradc.set_grad_enabled(True)


def test_set_grad_enabled_decorator(torch):
    @gradc.set_grad_enabled(False)
    def f(t):
        return t * 2

    assert gradc.is_grad_enabled()
    x = gradc.tensor([1.0], requires_grad=True)
    assert not f(x).requires_grad
    assert gradc.is_grad_enabled()


def test_grad_mode_restored_on_exception():
    with pytest.raises(ValueError):
        with gradc.no_grad():
            raise ValueError
    assert gradc.is_grad_enabled()

    @gradc.no_grad()
    def f():
        raise ValueError

    with pytest.raises(ValueError):
        f()
    assert gradc.is_grad_enabled()


def test_no_grad_instance_reusable():
    ng = gradc.no_grad()
    for _ in range(2):
        with ng:
            assert not gradc.is_grad_enabled()
        assert gradc.is_grad_enabled()


def test_inference_mode(torch):
    x = gradc.tensor([1.0], requires_grad=True)
    with gradc.inference_mode():
        assert gradc.is_inference_mode_enabled()
        assert not gradc.is_grad_enabled()
        y = x * 2
        assert not y.requires_grad
        with gradc.inference_mode(False):
            assert not gradc.is_inference_mode_enabled()
    assert not gradc.is_inference_mode_enabled()
    assert gradc.is_grad_enabled()

    @gradc.inference_mode()
    def f(t):
        assert gradc.is_inference_mode_enabled()
        return t * 2

    assert not f(x).requires_grad
    assert not gradc.is_inference_mode_enabled()


def test_inference_mode_decorator_without_parentheses(torch):
    @torch.inference_mode
    def tf(t):
        return t * 2

    @gradc.inference_mode
    def f(t):
        return t * 2

    assert not tf(torch.ones(1, requires_grad=True)).requires_grad
    assert not f(gradc.ones(1, requires_grad=True)).requires_grad


def test_backward_runs_with_grad_mode_of_create_graph():
    x = gradc.tensor([1.0], requires_grad=True)
    modes = []
    h = x * 2
    h.register_hook(lambda g: modes.append(gradc.is_grad_enabled()))
    h.sum().backward(retain_graph=True)
    h.sum().backward(create_graph=True)
    assert modes == [False, True]
    assert gradc.is_grad_enabled()


def test_backward_inside_no_grad_works(torch):
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = (x * x).sum()
        with lib.no_grad():
            y.backward()
        assert x.grad.tolist() == [2.0, 4.0]


# ---------------------------------------------------------------- version counter / in-place
def test_modify_saved_input_in_place_raises(torch):
    msgs = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        a = x * 1
        b = a * a  # saves a
        a.add_(1)
        with pytest.raises(RuntimeError) as exc:
            b.sum().backward()
        msgs.append(str(exc.value))
    assert msgs[0].startswith(INPLACE_SAVED)
    assert msgs[1].startswith(INPLACE_SAVED)


def test_modify_saved_output_in_place_raises(torch):
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x.exp()  # saves its output
        y.mul_(2)
        with pytest.raises(RuntimeError, match=INPLACE_SAVED):
            y.sum().backward()


def test_in_place_on_unsaved_tensor_ok(torch):
    x, tx = pair(torch, [1.0, 2.0])
    for t in (x, tx):
        a = t * 2
        b = a + 1  # add saves nothing
        a.mul_(3)
        (b * 1).sum().backward()
    assert_close(x.grad, tx.grad)


def test_in_place_on_non_leaf_gradient(torch):
    x, tx = pair(torch, [1.0, 2.0])
    for t in (x, tx):
        a = t * 2
        a.mul_(3)
        a.exp_()
        a.sum().backward()
    assert_close(x.grad, tx.grad)


def test_in_place_with_own_detached_value_raises_like_torch(torch):
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        a = x * 2
        a.mul_(a.detach())  # saves `other`, which shares a's version counter
        with pytest.raises(RuntimeError, match=INPLACE_SAVED):
            a.sum().backward()


def test_in_place_on_leaf_requiring_grad_raises(torch):
    x = gradc.tensor([1.0], requires_grad=True)
    tx = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError) as texc:
        tx.add_(1)
    with pytest.raises(RuntimeError) as exc:
        x.add_(1)
    assert str(exc.value) == str(texc.value) == LEAF_INPLACE
    with gradc.no_grad():
        x.add_(1)
    assert x.item() == 2.0


def test_version_counter_increments(torch):
    for lib in (gradc, torch):
        x = lib.zeros(3)
        v0 = x._version
        x.add_(1)
        x.mul_(2)
        assert x._version == v0 + 2
        v = x[1:]
        v.add_(1)
        assert x._version == v0 + 3 == v._version


# ---------------------------------------------------------------- memory
def test_graph_freed_when_output_dropped():
    """No reference cycles (saved outputs do not point back at their node): the graph goes
    as soon as its output does, without the cycle collector."""

    class Double(gradc.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            out = a * 2
            ctx.save_for_backward(a, out)
            return out

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    gc.disable()
    try:
        y = (x * x).exp()  # ExpBackward0 saves its output
        z = Double.apply(y)
        refs = [weakref.ref(y.grad_fn), weakref.ref(z.grad_fn)]
        del y, z
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()


def test_grad_values_are_independent_copies():
    x = gradc.tensor([1.0, 2.0], requires_grad=True)
    g = gradc.tensor([1.0, 1.0])
    x.backward(g)
    x.grad.add_(5)
    assert g.tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- further PyTorch parity
def test_retain_grad_under_create_graph_is_differentiable(torch):
    out = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        h = x * x
        h.retain_grad()
        (h * h).sum().backward(create_graph=True)
        assert h.grad.requires_grad
        (g,) = lib.autograd.grad(h.grad.sum(), x)
        out.append(g)
    assert_close(out[0], out[1])


def test_saved_leaf_modified_under_no_grad_raises(torch):
    msgs = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * x
        with lib.no_grad():
            x.add_(1)
        with pytest.raises(RuntimeError) as exc:
            y.sum().backward()
        msgs.append(str(exc.value))
    # a leaf has no producing node: both name none ("[...] is at version 1; expected version 0")
    tail = "is at version 1; expected version 0 instead."
    assert msgs[0].startswith(INPLACE_SAVED) and msgs[0].endswith(tail)
    assert msgs[0].split("]", 1)[1] == msgs[1].split("]", 1)[1].split(" Hint")[0]


def test_grad_mode_is_thread_local(torch):
    import threading

    res = []
    for lib in (gradc, torch):
        seen = []
        with lib.no_grad():
            th = threading.Thread(target=lambda seen=seen, lib=lib: seen.append(lib.is_grad_enabled()))
            th.start()
            th.join()
            seen.append(lib.is_grad_enabled())
        res.append(seen)
    assert res[0] == res[1] == [True, False]


def test_detach_in_place_on_view_raises(torch):
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        v = (x * 2)[0:1]
        with pytest.raises(RuntimeError, match="Can't detach views in-place. Use detach"):
            v.detach_()


def test_gradient_count_mismatch_message(torch):
    msgs = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0], requires_grad=True)
        with pytest.raises(RuntimeError) as e1:
            lib.autograd.backward([x * 2, x * 3], [lib.ones(1)])
        with pytest.raises(RuntimeError) as e2:
            lib.autograd.grad([x * 2, x * 3], [x], [lib.ones(1)])
        msgs.append((str(e1.value), str(e2.value)))
    assert msgs[0] == msgs[1]


def test_hook_changing_size_raises(torch):
    msgs = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x * 2
        h.register_hook(lambda g: g.sum())
        with pytest.raises(RuntimeError) as exc:
            h.sum().backward()
        msgs.append(str(exc.value))
    assert msgs[0] == msgs[1] == "hook '<lambda>' has changed the size of value"


def test_materialize_grads_with_allow_unused_false_raises(torch):
    msgs = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0], requires_grad=True)
        w = lib.tensor([1.0], requires_grad=True)
        with pytest.raises(ValueError) as exc:
            lib.autograd.grad((x * 2).sum(), [x, w], allow_unused=False, materialize_grads=True)
        msgs.append(str(exc.value))
    assert msgs[0] == msgs[1]


def test_grad_created_by_create_graph_is_not_the_callers_tensor(torch):
    out = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0], requires_grad=True)
        g = lib.ones(1)
        x.backward(g, create_graph=True)
        assert x.grad is not g
        x.backward(g)
        out.append((g.tolist(), x.grad.tolist()))
    assert out[0] == out[1] == ([1.0], [2.0])


def test_two_leaves_receiving_one_grad_object_get_separate_grads(torch):
    out = []
    for lib in (gradc, torch):
        a = lib.tensor([1.0], requires_grad=True)
        b = lib.tensor([1.0], requires_grad=True)
        (a + b).sum().backward(create_graph=True)  # AddBackward0 passes the same grad to both
        assert a.grad is not b.grad
        (a * 5).sum().backward()
        out.append((a.grad.tolist(), b.grad.tolist()))
    assert out[0] == out[1] == ([6.0], [1.0])


def test_grad_wrt_non_leaf_does_not_run_or_free_its_node(torch):
    out = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        h = x.exp()
        (g,) = lib.autograd.grad((h * 2).sum(), h)
        (h * 3).sum().backward()  # h's ExpBackward0 still has its saved output
        y = x.exp()
        (gy,) = lib.autograd.grad(y, y, lib.ones(2, dtype=lib.float64))
        y.sum().backward()
        out.append((g.tolist(), gy.tolist(), x.grad.tolist()))
    np.testing.assert_allclose(out[0][2], out[1][2])
    assert out[0][:2] == out[1][:2] == ([2.0, 2.0], [1.0, 1.0])


def test_backward_inputs_non_leaf_runs_its_node_like_torch(torch):
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x.exp()
        (h * 2).sum().backward(inputs=[h])
        assert h.grad.tolist() == [2.0, 2.0]
        with pytest.raises(RuntimeError, match=FREED_START):
            (h * 3).sum().backward()


def test_accumulate_grad_post_hook(torch):
    out = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        seen = []
        y.grad_fn.next_functions[0][0].register_hook(
            lambda gi, go, seen=seen: seen.append((gi, [g.tolist() for g in go])))
        y.sum().backward()
        out.append(seen)
    assert out[0] == out[1] == [((), [[3.0, 3.0]])]


def test_retain_grad_follows_in_place_op(torch):
    out = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x * 2
        h.retain_grad()
        h.mul_(3)
        assert h.retains_grad
        h.sum().backward()
        out.append((h.grad.tolist(), x.grad.tolist()))
    assert out[0] == out[1] == ([1.0, 1.0], [6.0, 6.0])


def test_root_gradient_takes_output_dtype(torch):
    out = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0], requires_grad=True)
        x.backward(lib.tensor([1.0], dtype=lib.float64))
        y = lib.tensor([1.0], requires_grad=True)
        (y * 2).backward(lib.tensor([1], dtype=lib.int64))
        out.append((str(x.grad.dtype).split(".")[-1], str(y.grad.dtype).split(".")[-1], y.grad.tolist()))
    assert out[0] == out[1] == ("float32", "float32", [2.0])


def test_hook_changing_dtype_raises(torch):
    for lib in (gradc, torch):
        x = lib.tensor([1.0], requires_grad=True)
        h = x * 2
        h.register_hook(lambda g: g.double())
        with pytest.raises(RuntimeError, match="hook '<lambda>' has changed the type of value"):
            h.sum().backward()


def test_grad_mode_decorators_on_generators(torch):
    out = []
    for lib in (gradc, torch):
        x = lib.tensor([1.0], requires_grad=True)

        @lib.no_grad()
        def gen(n, x=x, lib=lib):
            for _ in range(n):
                received = yield (lib.is_grad_enabled(), (x * 2).requires_grad)
                assert received is None
            return "done"

        @lib.set_grad_enabled(False)
        def gen2(x=x, lib=lib):
            yield (x * 2).requires_grad

        seen = []
        g = gen(2)
        seen.append(next(g))
        seen.append(lib.is_grad_enabled())  # restored between steps
        seen.append(next(g))
        with pytest.raises(StopIteration) as stop:
            next(g)
        seen.append(stop.value.value)
        seen.append(list(gen2()))
        seen.append(lib.is_grad_enabled())
        out.append(seen)
    assert out[0] == out[1] == [(False, False), True, (False, False), "done", [False], True]


def test_requires_grad_attribute_on_non_leaf_raises_but_method_is_no_op(torch):
    for lib in (gradc, torch):
        y = lib.ones(2, requires_grad=True) * 2
        with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
            y.requires_grad = True
        assert y.requires_grad_(True) is y and y.requires_grad


def test_deepcopy_and_pickle_keep_views_sharing_and_refuse_non_leaves():
    import copy
    import pickle

    x = gradc.arange(6.0).reshape(2, 3)
    row = x[1]
    for cx, crow in (copy.deepcopy([x, row]), pickle.loads(pickle.dumps([x, row]))):
        cx[1, 0] = 100.0
        assert crow.tolist() == [100.0, 4.0, 5.0]
        assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    leaf = gradc.ones(3, requires_grad=True)
    leaf.grad = gradc.full((3,), 2.0)
    twin = copy.deepcopy(leaf)
    assert twin.requires_grad and twin.is_leaf and twin.grad.tolist() == [2.0, 2.0, 2.0]
    assert twin.grad.untyped_storage() is not leaf.grad.untyped_storage()
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(leaf * 2)
