"""Custom `autograd.Function`s against PyTorch's: ctx, saved tensors, marks, materialized
grads, gradient-count/shape validation, double backward and hooks."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc
from gradc.autograd import Function, gradcheck, gradgradcheck

FREED_START = "Trying to backward through the graph a second time"


def make_linear(lib):
    """PyTorch's documentation example, written once per library."""

    class LinearFunction(lib.autograd.Function):
        @staticmethod
        def forward(ctx, input, weight, bias=None):
            ctx.save_for_backward(input, weight, bias)
            output = input @ weight.t()
            if bias is not None:
                output = output + bias
            return output

        @staticmethod
        def backward(ctx, grad_output):
            input, weight, bias = ctx.saved_tensors
            grad_input = grad_weight = grad_bias = None
            if ctx.needs_input_grad[0]:
                grad_input = grad_output.mm(weight)
            if ctx.needs_input_grad[1]:
                grad_weight = grad_output.t().mm(input)
            if bias is not None and ctx.needs_input_grad[2]:
                grad_bias = grad_output.sum(0)
            return grad_input, grad_weight, grad_bias

    return LinearFunction


LinearFunction = make_linear(gradc)


def make_square(lib):
    class Square(lib.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 2 * a * g

    return Square


def pairs(torch, *shapes, requires_grad=True):
    rng = np.random.default_rng(0)
    out = []
    for shape in shapes:
        arr = rng.standard_normal(shape)
        out.append((gradc.tensor(arr.copy(), requires_grad=requires_grad),
                    torch.tensor(arr.copy(), requires_grad=requires_grad)))
    return out


def run_both(torch, fn):
    """fn(lib) for gradc and torch; returns both results (exceptions as (type, message))."""
    res = []
    for lib in (gradc, torch):
        try:
            res.append(fn(lib))
        except Exception as e:  # noqa: BLE001 - compared below
            res.append((type(e).__name__, str(e)))
    return res


# ---------------------------------------------------------------- the documentation example
def test_linear_function_gradcheck():
    x = gradc.randn(4, 3, dtype=gradc.float64, requires_grad=True)
    w = gradc.randn(2, 3, dtype=gradc.float64, requires_grad=True)
    b = gradc.randn(2, dtype=gradc.float64, requires_grad=True)
    assert gradcheck(LinearFunction.apply, (x, w, b))
    assert gradcheck(LinearFunction.apply, (x, w))


def test_linear_function_gradgradcheck():
    x = gradc.randn(3, 3, dtype=gradc.float64, requires_grad=True)
    w = gradc.randn(2, 3, dtype=gradc.float64, requires_grad=True)
    b = gradc.randn(2, dtype=gradc.float64, requires_grad=True)
    assert gradgradcheck(LinearFunction.apply, (x, w, b))


def test_linear_function_matches_torch(torch):
    (x, tx), (w, tw), (b, tb), (g, tg) = pairs(torch, (4, 3), (2, 3), (2,), (4, 2))
    g.requires_grad_(False)
    tg.requires_grad_(False)
    y = LinearFunction.apply(x, w, b)
    ty = make_linear(torch).apply(tx, tw, tb)
    ref = torch.nn.functional.linear(tx.detach(), tw.detach(), tb.detach())
    assert_close(y, ty)
    assert_close(y, ref)
    y.backward(g)
    ty.backward(tg)
    for a, t in ((x, tx), (w, tw), (b, tb)):
        assert_close(a.grad, t.grad)
    # and against torch's own linear
    tx2, tw2, tb2 = (t.detach().clone().requires_grad_() for t in (tx, tw, tb))
    torch.nn.functional.linear(tx2, tw2, tb2).backward(tg)
    for a, t in ((x, tx2), (w, tw2), (b, tb2)):
        assert_close(a.grad, t.grad)


def test_linear_function_needs_input_grad(torch):
    def f(lib):
        seen = []
        Lin = make_linear(lib)
        orig = Lin.backward

        def backward(ctx, g):
            seen.append(ctx.needs_input_grad)
            return orig(ctx, g)

        Lin.backward = staticmethod(backward)
        x = lib.ones(2, 3, dtype=lib.float64)
        w = lib.ones(4, 3, dtype=lib.float64, requires_grad=True)
        b = lib.ones(4, dtype=lib.float64)
        Lin.apply(x, w, b).sum().backward()
        return seen, w.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t
    assert g[0] == [(False, True, False)]


def test_function_node_class_names(torch):
    Square = make_square(gradc)

    class Cube(Square):
        pass

    x = gradc.tensor([1.0], requires_grad=True)
    y = LinearFunction.apply(x.reshape(1, 1), x.reshape(1, 1))
    assert type(y.grad_fn).__name__ == "LinearFunctionBackward"
    assert y.grad_fn.name() == "LinearFunctionBackward"
    assert repr(y).endswith("grad_fn=<LinearFunctionBackward>)")
    a, b, c = Square.apply(x), Square.apply(x), Cube.apply(x)
    assert type(a.grad_fn) is type(b.grad_fn)
    assert a.grad_fn is not b.grad_fn
    assert type(c.grad_fn).__name__ == "CubeBackward"
    assert type(c.grad_fn) is not type(a.grad_fn)
    tS = make_square(torch)
    assert type(tS.apply(torch.ones(1, requires_grad=True)).grad_fn).__name__ == "SquareBackward"


def test_function_next_functions_skip_non_tensor_args(torch):
    def f(lib):
        class Scale(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, k, b):
                ctx.k = k
                return a * k + b

            @staticmethod
            def backward(ctx, g):
                return g * ctx.k, None, g

        x = lib.tensor([1.0, 2.0], requires_grad=True)
        c = lib.tensor([1.0, 1.0])
        y = Scale.apply(x, 3.0, c)
        nf = [(None if n is None else type(n).__name__, nr) for n, nr in y.grad_fn.next_functions]
        y.sum().backward()
        return nf, x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t == ([("AccumulateGrad", 0), (None, 0)], [3.0, 3.0])


# ---------------------------------------------------------------- ctx
def test_ctx_attributes_and_saved_tensors(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                ctx.scale = 7
                ctx.info = {"k": "v"}
                ctx.save_for_backward(a, None, b)
                return a * b * 7

            @staticmethod
            def backward(ctx, g):
                a, none, b = ctx.saved_tensors
                seen.append((ctx.scale, ctx.info, none, ctx.needs_input_grad))
                return g * b * ctx.scale, g * a * ctx.scale

        seen = []
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        w = lib.tensor([3.0, 4.0], requires_grad=True)
        y = F.apply(x, w)
        assert y.grad_fn.scale == 7
        y.sum().backward()
        return seen, x.grad.tolist(), w.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t


def test_saved_tensors_after_backward_raises(torch):
    def f(lib):
        y = make_square(lib).apply(lib.tensor([1.0], requires_grad=True))
        y.sum().backward()
        return y.grad_fn.saved_tensors

    g, t = run_both(torch, f)
    assert g == t
    assert g[0] == "RuntimeError" and g[1].startswith(FREED_START)


def test_saved_tensors_after_retained_backward_ok(torch):
    x = gradc.tensor([1.0, 3.0], requires_grad=True)
    y = make_square(gradc).apply(x)
    y.sum().backward(retain_graph=True)
    (a,) = y.grad_fn.saved_tensors
    assert a.tolist() == [1.0, 3.0]
    y.sum().backward()
    assert x.grad.tolist() == [4.0, 12.0]
    with pytest.raises(RuntimeError, match=FREED_START):
        y.sum().backward()


def test_saved_input_modified_in_place_raises(torch):
    def f(lib):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x * 1
        y = make_square(lib).apply(h)
        h.add_(1)
        y.sum().backward()

    g, t = run_both(torch, f)
    assert g[0] == t[0] == "RuntimeError"
    assert g[1].startswith("one of the variables needed for gradient computation has been modified by "
                           "an inplace operation")


def test_saved_output_and_double_backward(torch):
    def f(lib):
        class Exp(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                out = a.exp()
                ctx.save_for_backward(out)
                return out

            @staticmethod
            def backward(ctx, g):
                (out,) = ctx.saved_tensors
                return g * out

        x = lib.tensor([0.3, -1.2], dtype=lib.float64, requires_grad=True)
        y = Exp.apply(x)
        (g1,) = lib.autograd.grad((y * y).sum(), x, create_graph=True)
        (g2,) = lib.autograd.grad(g1.sum(), x)
        return g1.tolist(), g2.tolist()

    g, t = run_both(torch, f)
    np.testing.assert_allclose(g, t)


def test_double_backward_through_function_using_ops(torch):
    def f(lib):
        class Cube(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                ctx.save_for_backward(a)
                return a ** 3

            @staticmethod
            def backward(ctx, g):
                (a,) = ctx.saved_tensors
                return 3 * a * a * g

        x = lib.tensor([0.5, -2.0], dtype=lib.float64, requires_grad=True)
        (d1,) = lib.autograd.grad(Cube.apply(x).sum(), x, create_graph=True)
        (d2,) = lib.autograd.grad(d1.sum(), x, create_graph=True)
        (d3,) = lib.autograd.grad(d2.sum(), x)
        return d1.tolist(), d2.tolist(), d3.tolist()

    g, t = run_both(torch, f)
    np.testing.assert_allclose(g, t)
    np.testing.assert_allclose(g[2], [6.0, 6.0])


def test_once_differentiable_backward_runs_without_grad():
    modes = []

    class F(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        @gradc.autograd.once_differentiable
        def backward(ctx, g):
            modes.append(gradc.is_grad_enabled())
            return g * 2

    x = gradc.tensor([1.0], requires_grad=True)
    (g,) = gradc.autograd.grad(F.apply(x).sum(), x, create_graph=True)
    assert modes == [False]
    assert not g.requires_grad


# ---------------------------------------------------------------- marks
def test_mark_non_differentiable(torch):
    def f(lib):
        class SortLike(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                idx = a.argmax()
                doubled = a * 2
                ctx.mark_non_differentiable(doubled)
                return a * 3, doubled, idx

            @staticmethod
            def backward(ctx, g1, g2, g3):
                seen.append((g2.tolist(), None if g3 is None else (g3.tolist(), str(g3.dtype).split(".")[-1])))
                return g1 * 3

        seen = []
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y, d, i = SortLike.apply(x)
        flags = (y.requires_grad, d.requires_grad, i.requires_grad, d.grad_fn, i.grad_fn, d.is_leaf)
        (y.sum() + d.sum()).backward()
        return flags, seen, x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t
    assert g[0] == (True, False, False, None, None, True)


def test_mark_dirty_in_place_function(torch):
    def f(lib):
        class MulTwo_(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                a.mul_(2)
                ctx.mark_dirty(a)
                return a

            @staticmethod
            def backward(ctx, g):
                return g * 2

        x = lib.tensor([1.0, 2.0], requires_grad=True)
        h = x * 1
        v0 = h._version
        y = MulTwo_.apply(h)
        info = (y is h, type(h.grad_fn).__name__, h._version - v0, h.tolist())
        (y * y).sum().backward()
        return info, x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t
    assert g[0][:2] == (True, "MulTwo_Backward")


def test_mark_dirty_on_leaf_raises(torch):
    def f(lib):
        class Neg_(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                a.neg_()
                ctx.mark_dirty(a)
                return a

            @staticmethod
            def backward(ctx, g):
                return -g

        Neg_.apply(lib.tensor([1.0], requires_grad=True))

    g, t = run_both(torch, f)
    assert g == t == ("RuntimeError", "a leaf Variable that requires grad has been used in an in-place operation.")


def test_set_materialize_grads(torch):
    def f(lib, materialize):
        class Two(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                ctx.set_materialize_grads(materialize)
                return a * 2, a * 3

            @staticmethod
            def backward(ctx, g1, g2):
                seen.append(tuple(None if g is None else g.tolist() for g in (g1, g2)))
                out = g1 * 2 if g1 is not None else 0
                return out + g2 * 3 if g2 is not None else out

        seen = []
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y1, y2 = Two.apply(x)
        y1.sum().backward()
        return seen, x.grad.tolist()

    for materialize in (True, False):
        g, t = run_both(torch, lambda lib, m=materialize: f(lib, m))
        assert g == t
    assert run_both(torch, lambda lib: f(lib, False))[0][0] == [([1.0, 1.0], None)]


def test_multiple_outputs_both_used(torch):
    def f(lib):
        class SinCos(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                ctx.save_for_backward(a)
                return a.sin(), a.cos()

            @staticmethod
            def backward(ctx, gs, gc):
                (a,) = ctx.saved_tensors
                return gs * a.cos() - gc * a.sin()

        x = lib.tensor([0.1, 0.7, 2.0], dtype=lib.float64, requires_grad=True)
        s, c = SinCos.apply(x)
        assert (s.grad_fn is c.grad_fn) and (s.grad_fn is not None)
        (s * 2 + c * c).sum().backward()
        return x.grad.tolist()

    g, t = run_both(torch, f)
    np.testing.assert_allclose(g, t)


def test_single_element_tuple_output_stays_tuple(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return (a * 2,)

            @staticmethod
            def backward(ctx, g):
                return g * 2

        out = F.apply(lib.ones(2, requires_grad=True))
        return type(out).__name__, len(out)

    g, t = run_both(torch, f)
    assert g == t == ("tuple", 1)


def test_returning_input_as_is(torch):
    def f(lib):
        class PassFirst(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                return a, b * 2

            @staticmethod
            def backward(ctx, ga, gb):
                return ga * 5, gb * 2

        x = lib.tensor([1.0, 2.0], requires_grad=True)
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        y, z = PassFirst.apply(x, w)
        info = (y is x, y.is_leaf, type(y.grad_fn).__name__, x.grad_fn, y.tolist())
        (y + z).sum().backward()
        return info, x.grad.tolist(), w.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t
    assert g[0][:2] == (False, False)


def test_non_tensor_args_and_outputs(torch):
    def f(lib):
        class Scale(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, factor, name):
                ctx.factor = factor
                return a * factor, name.upper()

            @staticmethod
            def backward(ctx, g, g_name):
                seen.append(g_name)
                return g * ctx.factor, None, None

        seen = []
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y, label = Scale.apply(x, 4.0, "ok")
        y.sum().backward()
        return label, seen, x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t == ("OK", [None], [4.0, 4.0])


def test_no_input_requires_grad_records_nothing(torch):
    def f(lib):
        y = make_square(lib).apply(lib.ones(2))
        z = make_square(lib).apply(lib.ones(2, requires_grad=True).detach())
        return y.requires_grad, y.grad_fn, z.requires_grad

    g, t = run_both(torch, f)
    assert g == t == (False, None, False)


def test_function_under_no_grad(torch):
    def f(lib):
        seen = []

        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                seen.append((ctx.needs_input_grad, lib.is_grad_enabled()))
                return a * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2

        x = lib.ones(2, requires_grad=True)
        with lib.no_grad():
            y = F.apply(x)
        z = F.apply(x)
        return seen, y.requires_grad, z.requires_grad

    g, t = run_both(torch, f)
    assert g == t


def test_backward_grad_mode_follows_create_graph(torch):
    def f(lib):
        seen = []

        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return a * 2

            @staticmethod
            def backward(ctx, g):
                seen.append(lib.is_grad_enabled())
                return g * 2

        x = lib.ones(2, requires_grad=True)
        F.apply(x).sum().backward()
        lib.autograd.grad(F.apply(x).sum(), x, create_graph=True)
        return seen

    g, t = run_both(torch, f)
    assert g == t == [False, True]


def test_kwargs_to_forward(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, scale=2.0):
                ctx.scale = scale
                return a * scale

            @staticmethod
            def backward(ctx, g):
                return g * ctx.scale, None  # (torch counts keyword arguments as inputs)

        x = lib.ones(2, requires_grad=True)
        F.apply(x, scale=3.0).sum().backward()
        return x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t == [3.0, 3.0]


def test_gradient_dtype_cast_to_input_dtype(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return a * 2

            @staticmethod
            def backward(ctx, g):
                return (g * 2).float()

        x = lib.ones(2, dtype=lib.float64, requires_grad=True)
        F.apply(x).sum().backward()
        return str(x.grad.dtype).split(".")[-1], x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t == ("float64", [2.0, 2.0])


def test_broadcastable_gradient_is_reduced(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return a * 2

            @staticmethod
            def backward(ctx, g):
                return lib.ones(3, 2)

        x = lib.ones(2, requires_grad=True)
        F.apply(x).sum().backward()
        return x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t == [3.0, 3.0]


# ---------------------------------------------------------------- errors
def test_missing_forward_raises(torch):
    def f(lib):
        class F(lib.autograd.Function):
            pass

        F.apply(lib.ones(1, requires_grad=True))

    g, t = run_both(torch, f)
    assert g == t
    assert g[0] == "NotImplementedError"


def test_missing_backward_raises(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return a * 2

        y = F.apply(lib.ones(1, requires_grad=True))
        assert y.requires_grad
        y.sum().backward()

    g, t = run_both(torch, f)
    assert g == t
    assert g[0] == "NotImplementedError"


def test_too_few_gradients_raises(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                return a * b

            @staticmethod
            def backward(ctx, g):
                return g

        x = lib.ones(1, requires_grad=True)
        F.apply(x, x).sum().backward()

    g, t = run_both(torch, f)
    assert g == t == ("RuntimeError", "function FBackward returned an incorrect number of gradients "
                                      "(expected 2, got 1)")


def test_surplus_non_none_gradient_raises(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return a * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2, g

        F.apply(lib.ones(1, requires_grad=True)).sum().backward()

    g, t = run_both(torch, f)
    assert g == t == ("RuntimeError", "function FBackward returned an incorrect number of gradients "
                                      "(expected 1, got 2)")


def test_surplus_none_gradients_ok(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return a * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2, None, None

        x = lib.ones(1, requires_grad=True)
        F.apply(x).sum().backward()
        return x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t == [2.0]


def test_gradient_for_non_tensor_input_raises(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, k):
                return a * k

            @staticmethod
            def backward(ctx, g):
                return g * 2, g

        F.apply(lib.ones(1, requires_grad=True), 3.0).sum().backward()

    g, t = run_both(torch, f)
    assert g == t
    assert g[0] == "RuntimeError" and "forward input was not a Variable" in g[1]


def test_wrong_shape_gradient_raises(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return a * 2

            @staticmethod
            def backward(ctx, g):
                return lib.ones(3)

        F.apply(lib.ones(2, requires_grad=True)).sum().backward()

    g, t = run_both(torch, f)
    assert g == t
    assert g == ("RuntimeError", "Function FBackward returned an invalid gradient at index 0 - got [3] but "
                                 "expected shape compatible with [2]")


def test_none_gradient_for_input_requiring_grad(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                return a * b

            @staticmethod
            def backward(ctx, g):
                return g, None

        x = lib.ones(2, requires_grad=True)
        w = lib.ones(2, requires_grad=True)
        F.apply(x, w).sum().backward()
        return x.grad.tolist(), w.grad

    g, t = run_both(torch, f)
    assert g == t == ([1.0, 1.0], None)


# ---------------------------------------------------------------- hooks on a Function node
def test_hooks_on_function_node(torch):
    def f(lib):
        seen = []
        x = lib.ones(2, requires_grad=True)
        y = make_square(lib).apply(x * 3)
        y.grad_fn.register_prehook(lambda go: seen.append(("pre", go[0].tolist())))
        handle = y.grad_fn.register_hook(
            lambda gi, go: seen.append(("post", gi[0].tolist(), go[0].tolist())) or (gi[0] * 10,))
        y.register_hook(lambda g: seen.append(("tensor", g.tolist())) or g * 2)
        y.sum().backward(retain_graph=True)
        handle.remove()
        y.sum().backward()
        return seen, x.grad.tolist()

    g, t = run_both(torch, f)
    assert g == t


def test_save_for_backward_rejects_non_tensors(torch):
    def f(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                ctx.save_for_backward(a, 3)
                return a * 2

            @staticmethod
            def backward(ctx, g):
                return g

        F.apply(lib.ones(1, requires_grad=True))

    g, t = run_both(torch, f)
    assert g == t == ("TypeError", "save_for_backward can only save variables, but argument 1 is of type int")
