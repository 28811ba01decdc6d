"""Loss functions and modules against PyTorch: values, input gradients, options, errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import assert_close

import gradc
import gradc.nn as nn
import gradc.nn.functional as F
from gradc.autograd import gradcheck, gradgradcheck

REDUCTIONS = ["mean", "sum", "none"]


def _rand(*shape, dtype=np.float32):
    return np.random.standard_normal(shape).astype(dtype)


def _compare(torch, fn, arrays, *consts, rtol=1e-5, atol=1e-6, **kwargs):
    """fn(*arrays, *consts, **kwargs) in both libraries, `fn` a name in F (and in
    torch.nn.functional) or a (gradc callable, torch callable) pair; numpy constants are
    converted for each. Asserts equal values and equal gradients of a random projection
    of the output w.r.t. every array in `arrays`; returns gradc's output."""
    fg, ft = (getattr(F, fn), getattr(torch.nn.functional, fn)) if isinstance(fn, str) else fn

    def convert(lib, v):
        return lib.tensor(v) if isinstance(v, np.ndarray) else v

    xs = [gradc.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fg(*xs, *[convert(gradc, c) for c in consts], **{k: convert(gradc, v) for k, v in kwargs.items()})
    ref = ft(*ts, *[convert(torch, c) for c in consts], **{k: convert(torch, v) for k, v in kwargs.items()})
    assert_close(out, ref, rtol=rtol, atol=atol)
    cot = np.asarray(np.random.standard_normal(tuple(ref.shape)), dtype=arrays[0].dtype)
    (out * gradc.tensor(cot)).sum().backward()
    (ref * torch.tensor(cot)).sum().backward()
    for x, t in zip(xs, ts):
        assert_close(x.grad, t.grad, rtol=rtol, atol=atol)
    return out


# ---------------------------------------------------------------- regression losses
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
@pytest.mark.parametrize("weighted", [False, True])
def test_regression_losses_match_torch(torch, name, reduction, weighted):
    x, y, w = _rand(4, 3), _rand(4, 3), np.random.rand(4, 3).astype(np.float32)
    y[0, 0] = x[0, 0]  # a tie: l1's gradient there is 0 in both
    _compare(torch, name, [x, y], reduction=reduction, weight=w if weighted else None)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_smooth_l1_and_huber_match_torch(torch, reduction):
    x, y, w = _rand(5, 4), _rand(5, 4), np.random.rand(5, 4).astype(np.float32)
    for beta in (0.0, 0.5, 2.0):
        _compare(torch, "smooth_l1_loss", [x, y], reduction=reduction, beta=beta)
    for weight in (None, w):
        _compare(torch, "huber_loss", [x, y], reduction=reduction, delta=0.7, weight=weight)


def test_regression_broadcast_warns_and_promotes(torch):
    x, y = _rand(3, 4), _rand(4)
    with pytest.warns(UserWarning, match="different to the input size"):
        out = F.mse_loss(gradc.tensor(x), gradc.tensor(y))
    with pytest.warns(UserWarning):
        ref = torch.nn.functional.mse_loss(torch.tensor(x), torch.tensor(y))
    assert_close(out, ref)
    ints = np.array([1, 0, 2])
    assert_close(F.l1_loss(gradc.tensor(x[0, :3]), gradc.tensor(ints)),
                 torch.nn.functional.l1_loss(torch.tensor(x[0, :3]), torch.tensor(ints)))


def test_regression_errors():
    x = gradc.randn(3)
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="Weights and input must have the same size."):
        F.l1_loss(x, x, weight=gradc.ones(1))
    with pytest.raises(RuntimeError, match="negative values for beta"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(RuntimeError, match="non-positive values for delta"):
        F.huber_loss(x, x, delta=0.0)


# ---------------------------------------------------------------- nll / cross entropy
SHAPES = [((5,), ()), ((4, 5), (4,)), ((3, 5, 4), (3, 4)), ((2, 5, 3, 2), (2, 3, 2)), ((2, 5, 2, 1, 2), (2, 2, 1, 2))]


def _targets(shape, n_classes, ignore=True):
    t = np.random.randint(0, n_classes, shape).astype(np.int64)
    if ignore and t.ndim:
        t.reshape(-1)[1] = -100
    return t


@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"{len(s[0])}d")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_matches_torch(torch, shapes, reduction):
    in_shape, t_shape = shapes
    x = _rand(*in_shape)
    t, w = _targets(t_shape, 5), np.random.rand(5).astype(np.float32)
    for weight in (None, w):
        _compare(torch, "nll_loss", [x], t, weight=weight, reduction=reduction)


@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"{len(s[0])}d")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
def test_cross_entropy_class_indices_match_torch(torch, shapes, reduction, label_smoothing):
    in_shape, t_shape = shapes
    x = _rand(*in_shape) * 3
    t, w = _targets(t_shape, 5), np.random.rand(5).astype(np.float32)
    for weight in (None, w):
        _compare(torch, "cross_entropy", [x], t, weight=weight, reduction=reduction,
                 label_smoothing=label_smoothing)


@pytest.mark.parametrize("shapes", SHAPES[:3], ids=lambda s: f"{len(s[0])}d")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_match_torch(torch, shapes, reduction):
    in_shape, _ = shapes
    x, p = _rand(*in_shape), np.random.rand(*in_shape).astype(np.float32)
    w = np.random.rand(5).astype(np.float32)
    for weight in (None, w):
        for ls in (0.0, 0.3):
            _compare(torch, "cross_entropy", [x], p, weight=weight, reduction=reduction, label_smoothing=ls)


def test_cross_entropy_target_gradient_for_probabilities(torch):
    x, p = _rand(3, 4), np.random.rand(3, 4).astype(np.float32)
    _compare(torch, "cross_entropy", [x, p], label_smoothing=0.1)


def test_ignore_index_and_edge_targets(torch):
    x = _rand(4, 5)
    t = np.array([1, 3, 3, 0])
    _compare(torch, "cross_entropy", [x], t, ignore_index=3)
    _compare(torch, "cross_entropy", [x], t, ignore_index=3, label_smoothing=0.2)
    _compare(torch, "cross_entropy", [x], t, ignore_index=3, weight=np.arange(1, 6, dtype=np.float32))
    # every target ignored: the weighted mean is 0/0, as torch
    all_ignored = np.full(4, -100)
    for reduction in REDUCTIONS:
        _compare(torch, "cross_entropy", [x], all_ignored, reduction=reduction, label_smoothing=0.1)
    assert np.isnan(F.nll_loss(gradc.tensor(x), gradc.tensor(all_ignored)).item())
    # uint8 targets; a negative label_smoothing is no smoothing, as torch; 1-D input with a (1,) target
    _compare(torch, "cross_entropy", [x], np.array([1, 4, 2, 0], dtype=np.uint8))
    assert_close(F.cross_entropy(gradc.tensor(x), gradc.tensor(t), label_smoothing=-0.1),
                 torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t)))
    # (values only: torch's own backward rejects this target shape)
    assert_close(F.nll_loss(gradc.tensor(x[0]), gradc.tensor([2]), reduction="none"),
                 torch.nn.functional.nll_loss(torch.tensor(x[0]), torch.tensor([2]), reduction="none"))


def test_cross_entropy_float64_and_extreme_logits(torch):
    x = np.array([[1e4, -1e4, 0.0], [-50.0, 50.0, 49.0]])
    t = np.array([1, 2])
    out = _compare(torch, "cross_entropy", [x], t, reduction="none")
    assert out.dtype is gradc.float64 and np.isfinite(out.detach().numpy()).all()


def _class_errors(fn):
    x = gradc.randn(3, 5)
    t = gradc.tensor([0, 1, 4])
    cases = [
        (lambda: fn(x, t.float()), RuntimeError, "expected target dtype to be Long or Byte, but got Float"),
        (lambda: fn(x, t.int()), RuntimeError, "expected target dtype to be Long or Byte, but got Int"),
        (lambda: fn(x, gradc.tensor([0, 1])), ValueError,
         r"Expected input batch_size \(3\) to match target batch_size \(2\)."),
        (lambda: fn(x, gradc.zeros(3, 1, dtype=gradc.int64)), RuntimeError, "0D or 1D target tensor expected"),
        (lambda: fn(gradc.randn(2, 5, 4), gradc.zeros(2, 3, dtype=gradc.int64)), RuntimeError,
         r"Expected target size \[2, 4\], got \[2, 3\]"),
        (lambda: fn(gradc.randn(5), gradc.tensor([0, 1])), RuntimeError,
         "For 1D input, 1D target must have size 1, but got target size: 2"),
        (lambda: fn(x, gradc.tensor([0, 1, 5])), IndexError, "Target 5 is out of bounds."),
        (lambda: fn(x, gradc.tensor([0, -3, 1])), IndexError, "Target -3 is out of bounds."),
        (lambda: fn(x, t, reduction="avg"), ValueError, "avg is not a valid value for reduction"),
        (lambda: fn(x, t, weight=gradc.ones(4)), RuntimeError,
         r"weight tensor should be defined either for all 5 classes or no classes but got weight tensor of "
         r"shape: \[4\]"),
    ]
    for call, exc, message in cases:
        with pytest.raises(exc, match=message):
            call()


def test_nll_loss_errors():
    _class_errors(F.nll_loss)
    with pytest.raises(ValueError, match=r"Expected 1 or more dimensions \(got 0\)"):
        F.nll_loss(gradc.randn(()), gradc.tensor(0))


def test_cross_entropy_errors():
    _class_errors(F.cross_entropy)
    x = gradc.randn(3, 5)
    with pytest.raises(RuntimeError, match="Expected floating point type for target with class probabilities, "
                                           "got Long"):
        F.cross_entropy(x, gradc.zeros(3, 5, dtype=gradc.int64))
    with pytest.raises(RuntimeError, match="ignore_index is not supported for floating point target"):
        F.cross_entropy(x, x.softmax(1), ignore_index=1)
    with pytest.raises(RuntimeError, match=r"label_smoothing must be between 0.0 and 1.0. Got: 1.5"):
        F.cross_entropy(x, gradc.tensor([0, 1, 2]), label_smoothing=1.5)


# ---------------------------------------------------------------- binary cross entropy
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_matches_torch(torch, reduction):
    x = np.random.uniform(0.02, 0.98, (4, 3)).astype(np.float32)
    t = np.random.rand(4, 3).astype(np.float32)
    for weight in (None, np.random.rand(3).astype(np.float32), np.random.rand(4, 3).astype(np.float32)):
        _compare(torch, "binary_cross_entropy", [x], t, weight=weight, reduction=reduction)


def test_binary_cross_entropy_clamps_log_at_minus_100(torch):
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-3], dtype=np.float32)
    t = np.array([0.3, 0.6, 0.0, 1.0, 0.5], dtype=np.float32)
    xg = gradc.tensor(x, requires_grad=True)
    out = F.binary_cross_entropy(xg, gradc.tensor(t), reduction="none")
    assert_close(out, torch.nn.functional.binary_cross_entropy(torch.tensor(x), torch.tensor(t), reduction="none"))
    assert_close(out, np.array([30.0, 40.0, 0.0, 0.0, -0.5 * (np.log(1e-3) + np.log(1 - 1e-3))], np.float32),
                 rtol=1e-5)
    out.sum().backward()
    assert np.isfinite(xg.grad.numpy()).all()
    assert_close(xg.grad[2:], np.array([1.0, -1.0, (1e-3 - 0.5) / (1e-3 * (1 - 1e-3))], np.float32), rtol=1e-4)


def test_binary_cross_entropy_errors():
    x = gradc.rand(3)
    with pytest.raises(ValueError, match="Using a target size"):
        F.binary_cross_entropy(x, gradc.rand(3, 1))
    with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(x + 1, x)
    with pytest.raises(RuntimeError, match="Found dtype Long but expected Float"):
        F.binary_cross_entropy(x, gradc.ones(3, dtype=gradc.int64))
    with pytest.raises(ValueError, match="x is not a valid value for reduction"):
        F.binary_cross_entropy(x, x, reduction="x")
    with pytest.raises(ValueError, match="must be the same as input size"):
        F.binary_cross_entropy_with_logits(x, gradc.rand(3, 1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_matches_torch(torch, reduction):
    x = _rand(4, 3) * 4
    x[0, 0] = 0.0  # the kinks of |x| and min(x, 0) must not show in the gradient
    t = np.random.rand(4, 3).astype(np.float32)
    for weight, pos_weight in [(None, None), (np.random.rand(4, 3).astype(np.float32), None),
                               (None, np.random.rand(3).astype(np.float32) * 3),
                               (np.random.rand(3).astype(np.float32), np.random.rand(3).astype(np.float32))]:
        _compare(torch, "binary_cross_entropy_with_logits", [x, t], weight=weight, pos_weight=pos_weight,
                 reduction=reduction)


def test_binary_cross_entropy_with_logits_is_stable(torch):
    x = np.array([-200.0, -30.0, 0.0, 30.0, 200.0], dtype=np.float32)
    t = np.array([1.0, 1.0, 0.5, 0.0, 0.0], dtype=np.float32)
    out = _compare(torch, "binary_cross_entropy_with_logits", [x], t, reduction="none")
    assert_close(out[[0, 4]], np.array([200.0, 200.0], np.float32))


# ---------------------------------------------------------------- gradcheck (float64)
def _f64(*shape, low=None, high=None):
    a = np.random.uniform(low, high, shape) if low is not None else np.random.standard_normal(shape)
    return gradc.tensor(a, dtype=gradc.float64, requires_grad=True)


GRADCHECKS = {
    "mse": lambda: (lambda a, b: F.mse_loss(a, b), (_f64(3, 2), _f64(3, 2))),
    "l1": lambda: (lambda a, b, w: F.l1_loss(a, b, weight=w),
                   (_f64(3, 2), _f64(3, 2), gradc.rand(3, 2, dtype=gradc.float64))),
    "smooth_l1": lambda: (lambda a: F.smooth_l1_loss(a, gradc.zeros(6, dtype=gradc.float64), beta=0.8),
                          (_f64(6),)),
    "huber": lambda: (lambda a: F.huber_loss(a, gradc.zeros(6, dtype=gradc.float64), delta=0.8,
                                             reduction="sum"), (_f64(6),)),
    "nll": lambda: (lambda a: F.nll_loss(a, gradc.tensor([[0, 2], [-100, 1]]),
                                         weight=gradc.tensor([1.0, 2.0, 0.5], dtype=gradc.float64)),
                    (_f64(2, 3, 2),)),
    "cross_entropy": lambda: (lambda a: F.cross_entropy(a, gradc.tensor([[0, 2], [-100, 1]]), label_smoothing=0.2,
                                                        weight=gradc.tensor([1.0, 2.0, 0.5], dtype=gradc.float64),
                                                        reduction="none"), (_f64(2, 3, 2),)),
    "cross_entropy_probs": lambda: (lambda a, p: F.cross_entropy(a, p, label_smoothing=0.1),
                                    (_f64(3, 4), _f64(3, 4, low=0.0, high=1.0))),
    "bce": lambda: (lambda a, t, w: F.binary_cross_entropy(a, t, weight=w),
                    (_f64(2, 4, low=0.1, high=0.9), _f64(2, 4, low=0.0, high=1.0), gradc.rand(4, dtype=gradc.float64))),
    "bce_with_logits": lambda: (lambda a, t: F.binary_cross_entropy_with_logits(
        a, t, pos_weight=gradc.tensor([0.5, 2.0, 1.0, 3.0], dtype=gradc.float64), reduction="sum"),
                                (_f64(2, 4), _f64(2, 4, low=0.0, high=1.0))),
}


@pytest.mark.parametrize("name", list(GRADCHECKS))
def test_loss_gradcheck(name):
    fn, inputs = GRADCHECKS[name]()
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("name", ["cross_entropy", "bce_with_logits"])
def test_loss_gradgradcheck(name):
    fn, inputs = GRADCHECKS[name]()
    assert gradgradcheck(fn, inputs)


# ---------------------------------------------------------------- modules
def test_loss_modules_match_functional(torch):
    x, y = _rand(4, 5), _rand(4, 5)
    t = np.array([0, 4, 2, -100])
    w = np.random.rand(5).astype(np.float32)
    probs = np.random.rand(4, 5).astype(np.float32)
    s = 1 / (1 + np.exp(-x))
    cases = [
        ("MSELoss", {"reduction": "sum"}, x, y),
        ("L1Loss", {}, x, y),
        ("SmoothL1Loss", {"beta": 0.5}, x, y),
        ("HuberLoss", {"delta": 0.5, "reduction": "none"}, x, y),
        ("NLLLoss", {"weight": w, "ignore_index": 2}, x, np.abs(t) % 5),
        ("CrossEntropyLoss", {"weight": w, "label_smoothing": 0.1, "reduction": "sum"}, x, t),
        ("BCELoss", {"weight": w}, s, probs),
        ("BCEWithLogitsLoss", {"weight": w, "pos_weight": w * 2}, x, probs),
    ]
    for name, kwargs, inp, target in cases:
        ours = getattr(nn, name)(**{k: gradc.tensor(v) if isinstance(v, np.ndarray) else v
                                    for k, v in kwargs.items()})
        ref = getattr(torch.nn, name)(**{k: torch.tensor(v) if isinstance(v, np.ndarray) else v
                                         for k, v in kwargs.items()})
        _compare(torch, (ours, ref), [inp], target)
        assert repr(ours) == repr(ref)
        assert ours.reduction == ref.reduction


def test_loss_weights_are_buffers():
    w = gradc.rand(5)
    ce = nn.CrossEntropyLoss(weight=w, label_smoothing=0.2, ignore_index=3)
    assert ce.weight is w and ce.ignore_index == 3 and ce.label_smoothing == 0.2
    assert list(ce.state_dict()) == ["weight"] and not list(ce.parameters())
    assert_close(ce.to(gradc.float64).weight, w.numpy().astype(np.float64))
    bce = nn.BCEWithLogitsLoss(pos_weight=gradc.ones(3))
    assert bce.weight is None and list(bce.state_dict()) == ["pos_weight"]
    assert list(nn.NLLLoss().state_dict()) == [] and nn.NLLLoss().weight is None


def test_legacy_size_average_and_reduce(torch):
    expected = {(None, False): "none", (False, None): "sum", (True, True): "mean", (False, False): "none"}
    for (size_average, reduce), reduction in expected.items():
        with pytest.warns(UserWarning, match=f"reduction='{reduction}'"):
            assert nn.MSELoss(size_average=size_average, reduce=reduce).reduction == reduction
        x = gradc.randn(3, 2)
        with pytest.warns(UserWarning):
            out = F.l1_loss(x, x * 2, size_average=size_average, reduce=reduce)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = torch.nn.functional.l1_loss(torch.tensor(x.numpy()), torch.tensor(x.numpy() * 2),
                                              size_average=size_average, reduce=reduce)
        assert_close(out, ref)
