"""gradcheck / gradgradcheck: pass on correct derivatives, fail (as PyTorch's do) on wrong ones."""
from __future__ import annotations

import numpy as np
import pytest

import gradc
from gradc.autograd import Function, GradcheckError, gradcheck, gradgradcheck


def rand(*shape, seed=0, requires_grad=True):
    arr = np.random.default_rng(seed).standard_normal(shape)
    return gradc.tensor(arr, dtype=gradc.float64, requires_grad=requires_grad)


def torch_gradcheck_error():
    import sys

    return sys.modules["torch.autograd.gradcheck"].GradcheckError  # shadowed by the function


def make_bad_square(lib):
    """Forward a*a, backward off by a factor of 3/2 (3a instead of 2a)."""

    class BadSquare(lib.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 3 * a * g

    return BadSquare


def make_detached_square(lib):
    """Right first derivative, but backward detaches: its own derivative is wrong."""

    class DetachedSquare(lib.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 2 * a.detach() * g

    return DetachedSquare


def make_good_square(lib):
    class GoodSquare(lib.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 2 * a * g

    return GoodSquare


class TwoOut(Function):
    """Outputs (2a, a*b); the gradient of the second with respect to a is wrong."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * 2, a * b

    @staticmethod
    def backward(ctx, g1, g2):
        a, b = ctx.saved_tensors
        return g1 * 2, g2 * a


# ---------------------------------------------------------------- gradcheck passes
@pytest.mark.parametrize("fn, shapes", [
    (lambda a: a.sin() * a.exp(), [(3,)]),
    (lambda a: (a * a).sum(), [(2, 3)]),
    (lambda a: a.sum(1).tanh(), [(2, 3)]),
    (lambda a, b: a @ b, [(2, 3), (3, 2)]),
    (lambda a: a.softmax(-1), [(2, 3)]),
    (lambda a, b: (a / (b * b + 1)).log_softmax(0), [(4,), (4,)]),
    (lambda a: (a.sigmoid(), a.relu() + 0.5 * a), [(5,)]),
])
def test_gradcheck_passes_on_builtin_ops(fn, shapes):
    inputs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    assert gradcheck(fn, inputs) is True
    assert gradcheck(fn, inputs, raise_exception=False) is True


def test_gradcheck_passes_on_correct_custom_function():
    assert gradcheck(make_good_square(gradc).apply, (rand(4),))


def test_gradcheck_non_contiguous_input_and_non_tensor_arg():
    a = rand(3, 2).detach().t().requires_grad_()  # a transposed view, a leaf
    assert not a.is_contiguous()
    assert gradcheck(lambda x, k: (x * k).exp(), (a, 0.5))


def test_gradcheck_leaves_inputs_unchanged():
    a = rand(2, 2)
    before = a.detach().numpy().copy()
    gradcheck(lambda x: x.exp(), (a,))
    np.testing.assert_array_equal(a.detach().numpy(), before)
    assert a.grad is None


def test_gradcheck_only_differentiates_inputs_requiring_grad():
    a, c = rand(3), rand(3, seed=1, requires_grad=False)
    assert gradcheck(lambda x, y: x * y.exp(), (a, c))


# ---------------------------------------------------------------- gradcheck fails
def test_gradcheck_fails_on_wrong_backward(torch):
    a = rand(3)
    with pytest.raises(GradcheckError, match="Jacobian mismatch for output 0 with respect to input 0"):
        gradcheck(make_bad_square(gradc).apply, (a,))
    assert gradcheck(make_bad_square(gradc).apply, (a,), raise_exception=False) is False
    assert issubclass(GradcheckError, RuntimeError)
    # PyTorch agrees that this backward is wrong
    ta = torch.tensor(a.detach().numpy().copy(), requires_grad=True)
    with pytest.raises(torch_gradcheck_error(),
                       match="Jacobian mismatch for output 0 with respect to input 0"):
        torch.autograd.gradcheck(make_bad_square(torch).apply, (ta,))


def test_gradcheck_names_the_wrong_output_and_input(torch):
    a, b = rand(2), rand(2, seed=1)
    with pytest.raises(GradcheckError) as exc:
        gradcheck(TwoOut.apply, (a, b))
    ta, tb = (torch.tensor(t.detach().numpy().copy(), requires_grad=True) for t in (a, b))

    class TTwoOut(torch.autograd.Function):
        forward = TwoOut.forward
        backward = TwoOut.backward

    with pytest.raises(torch_gradcheck_error()) as texc:
        torch.autograd.gradcheck(TTwoOut.apply, (ta, tb))
    first = str(exc.value).splitlines()[0]
    assert first == str(texc.value).splitlines()[0] == "Jacobian mismatch for output 1 with respect to input 0,"


def test_gradcheck_catches_small_error():
    class Almost(Function):
        @staticmethod
        def forward(ctx, a):
            return a.exp()

        @staticmethod
        def backward(ctx, g):
            return g * 1.01  # right only at 0

    assert not gradcheck(Almost.apply, (rand(3) + 1,), raise_exception=False)


def test_gradcheck_requires_an_input_requiring_grad(torch):
    msgs = []
    for lib in (gradc, torch):
        x = lib.ones(2, dtype=lib.float64)
        with pytest.raises(ValueError) as exc:
            lib.autograd.gradcheck(lambda t: t * 2, (x,))
        msgs.append(str(exc.value))
    assert msgs[0] == msgs[1]


def test_gradcheck_warns_on_single_precision():
    x = gradc.ones(2, requires_grad=True)
    with pytest.warns(UserWarning, match="not double precision"):
        assert gradcheck(lambda t: t * 2, (x,), eps=1e-2, atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------- gradgradcheck
@pytest.mark.parametrize("fn, shapes", [
    (lambda a: a.tanh() * a, [(3,)]),
    (lambda a, b: (a @ b).exp(), [(2, 3), (3, 2)]),
    (lambda a: (a * a).sum(0).sqrt(), [(3, 2)]),
])
def test_gradgradcheck_passes_on_builtin_ops(fn, shapes):
    inputs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    assert gradgradcheck(fn, inputs)


def test_gradgradcheck_passes_on_differentiable_custom_backward():
    assert gradgradcheck(make_good_square(gradc).apply, (rand(3),))


def test_gradgradcheck_fails_on_non_differentiable_backward(torch):
    a = rand(3)
    bad = make_detached_square(gradc).apply
    assert gradcheck(bad, (a,))  # first derivative right...
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        gradgradcheck(bad, (a,))  # ...its derivative wrong
    assert gradgradcheck(bad, (a,), raise_exception=False) is False
    ta = torch.tensor(a.detach().numpy().copy(), requires_grad=True)
    tbad = make_detached_square(torch).apply
    assert torch.autograd.gradcheck(tbad, (ta,))
    assert torch.autograd.gradgradcheck(tbad, (ta,), raise_exception=False) is False


def test_gradgradcheck_checks_only_second_order(torch):
    # backward 3*a*g is wrong, but differentiable consistently with itself: as in PyTorch,
    # gradgradcheck (unlike gradcheck) accepts it
    a = rand(3)
    ta = torch.tensor(a.detach().numpy().copy(), requires_grad=True)
    assert gradgradcheck(make_bad_square(gradc).apply, (a,)) is True
    assert torch.autograd.gradgradcheck(make_bad_square(torch).apply, (ta,)) is True
