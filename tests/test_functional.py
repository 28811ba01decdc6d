"""gradc.nn.functional vs torch.nn.functional: values, gradients (vs torch and by finite
differences in float64), errors; and the padding/unfold/fold primitives behind them."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc
import gradc.nn.functional as F
from gradc.autograd import gradcheck, gradgradcheck

pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")]  # torch's


def _rand(*shape, dtype=np.float64):
    return np.random.randn(*shape).astype(dtype)


def compare(torch, ours, theirs, arrays, *, rtol=1e-6, atol=1e-8, grad=True):
    """Run `ours` on gradc tensors and `theirs` on torch tensors made from the same arrays
    (float arrays require grad), then compare outputs and, for a random cotangent, the
    gradient of every float input. Returns the gradc inputs and output."""
    g_in = [gradc.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    t_in = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    out, ref = ours(*g_in), theirs(*t_in)
    assert_close(out, ref, rtol=rtol, atol=atol)
    if grad and ref.requires_grad:
        cot = np.random.randn(*ref.shape).astype(ref.detach().numpy().dtype)
        out.backward(gradc.tensor(cot))
        ref.backward(torch.tensor(cot))
        for g, t in zip(g_in, t_in):
            if t.requires_grad:
                assert_close(g.grad, t.grad, rtol=rtol, atol=atol)
    return g_in, out


def _double(*shape):
    return gradc.tensor(_rand(*shape), requires_grad=True)


# ---------------------------------------------------------------- pad
@pytest.mark.parametrize("value", [0.0, -1.5])
@pytest.mark.parametrize("pad", [(1, 2), (0, 1, 2, 0), (-1, 2, 1, -2), (1, 1, 1, 1, 1, 1), (-2, -1)])
def test_constant_pad_matches_torch(torch, pad, value):
    compare(torch, lambda x: F.pad(x, pad, value=value), lambda x: torch.nn.functional.pad(x, pad, value=value),
            [_rand(2, 3, 5)])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad,shape", [((1, 2), (3, 5)), ((2, 0, 1, 3), (2, 3, 4, 5)),
                                       ((0, 1, 2, 1, 1, 0), (3, 4, 3, 5))])
def test_non_constant_pad_matches_torch(torch, mode, pad, shape):
    compare(torch, lambda x: F.pad(x, pad, mode=mode), lambda x: torch.nn.functional.pad(x, pad, mode=mode),
            [_rand(*shape)])


def test_pad_gradcheck_and_errors():
    x = _double(2, 3)
    assert gradcheck(lambda t: F.pad(t, (1, -1, 2, 0), value=3.0), [x])
    assert gradgradcheck(lambda t: F.pad(t, (1, 2)) ** 2, [x])
    assert gradcheck(lambda t: F.pad(t, (2, 1), mode="reflect"), [x])
    with pytest.raises(RuntimeError, match="divisible by 2"):
        F.pad(x, (1,))
    with pytest.raises(RuntimeError, match="less than or equal to two times"):
        F.pad(x, (1,) * 6)
    with pytest.raises(RuntimeError, match="negative output size"):
        F.pad(x, (-2, -2))
    with pytest.raises(RuntimeError, match="reflect padding"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(NotImplementedError):
        F.pad(x, (1, 1), mode="wrap")
    with pytest.raises(NotImplementedError, match="Padding size 2 is not supported for 4D input"):
        F.pad(gradc.zeros(1, 1, 2, 2), (1, 1), mode="replicate")


# ---------------------------------------------------------------- unfold / fold
UNFOLD_CONFIGS = [  # kernel_size, dilation, padding, stride
    (3, 1, 0, 1), (2, 1, 1, 2), ((2, 3), (2, 1), (1, 2), (1, 2)), (3, 2, 2, 3), (1, 1, 0, 1),
]


@pytest.mark.parametrize("k,d,p,s", UNFOLD_CONFIGS)
def test_unfold_and_fold_match_torch(torch, k, d, p, s):
    x = _rand(2, 3, 7, 8)
    tf = torch.nn.functional
    _, cols = compare(torch, lambda t: F.unfold(t, k, d, p, s), lambda t: tf.unfold(t, k, d, p, s), [x])
    compare(torch, lambda t: F.fold(t, (7, 8), k, d, p, s), lambda t: tf.fold(t, (7, 8), k, d, p, s),
            [_rand(*cols.shape)])


def test_unfold_fold_unbatched_and_non_contiguous(torch):
    x = _rand(3, 6, 5)
    tf = torch.nn.functional
    compare(torch, lambda t: F.unfold(t, 2, padding=1), lambda t: tf.unfold(t, 2, padding=1), [x])
    compare(torch, lambda t: F.fold(t, (4, 4), 2), lambda t: tf.fold(t, (4, 4), 2), [_rand(12, 9)])
    compare(torch, lambda t: F.unfold(t.transpose(2, 3), 3, stride=2),
            lambda t: tf.unfold(t.transpose(2, 3), 3, stride=2), [_rand(2, 2, 7, 6)])


def test_unfold_fold_gradcheck_and_double_backward():
    x = _double(1, 2, 4, 5)
    assert gradcheck(lambda t: F.unfold(t, (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), [x])
    cols = _double(1, 8, 12)
    assert gradcheck(lambda t: F.fold(t, (4, 5), 2, stride=(2, 1), padding=(1, 0)), [cols])
    assert gradgradcheck(lambda t: F.unfold(t, 2) ** 2, [x])


def test_unfold_fold_errors():
    with pytest.raises(RuntimeError, match="sliding blocks as"):
        F.unfold(gradc.zeros(1, 1, 3, 3), 4)
    with pytest.raises(RuntimeError, match="divisible by the product of kernel_size"):
        F.fold(gradc.zeros(1, 5, 9), (4, 4), 2)
    with pytest.raises(RuntimeError, match="3 \\* 3 = 9, but got input.size\\(2\\)=8"):
        F.fold(gradc.zeros(1, 8, 8), (4, 4), 2)


# ---------------------------------------------------------------- convolution
CONV2D_CONFIGS = [  # stride, padding, dilation, groups, bias
    (1, 0, 1, 1, True), (2, 1, 1, 1, False), ((1, 2), (2, 1), (2, 1), 1, True), (1, "same", 1, 1, True),
    (1, "same", (2, 1), 1, False), (2, "valid", 1, 2, True), (1, 1, 1, 4, True), (3, 2, 2, 2, True),
]


@pytest.mark.parametrize("stride,padding,dilation,groups,bias", CONV2D_CONFIGS)
def test_conv2d_matches_torch(torch, stride, padding, dilation, groups, bias):
    x, w, b = _rand(2, 4, 9, 8), _rand(6 if groups != 4 else 8, 4 // groups, 3, 2), _rand(6 if groups != 4 else 8)
    args = [x, w, b] if bias else [x, w]
    compare(torch, lambda *a: F.conv2d(*a[:2], a[2] if bias else None, stride, padding, dilation, groups),
            lambda *a: torch.nn.functional.conv2d(*a[:2], a[2] if bias else None, stride, padding, dilation, groups),
            args)


def test_conv2d_same_with_even_kernel_and_unbatched_input(torch):
    tf = torch.nn.functional
    compare(torch, lambda x, w: F.conv2d(x, w, padding="same"), lambda x, w: tf.conv2d(x, w, padding="same"),
            [_rand(2, 3, 6, 5), _rand(4, 3, 4, 2)])
    compare(torch, lambda x, w: F.conv2d(x, w, padding=1), lambda x, w: tf.conv2d(x, w, padding=1),
            [_rand(3, 5, 5), _rand(2, 3, 3, 3)])


def test_conv2d_float32_matches_torch(torch):
    compare(torch, lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda x, w, b: torch.nn.functional.conv2d(
        x, w, b, padding=1), [_rand(4, 8, 10, 10, dtype=np.float32), _rand(16, 8, 3, 3, dtype=np.float32),
                              _rand(16, dtype=np.float32)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 2, 1, 2), (1, "same", 3, 1),
                                                            (1, "valid", 2, 1)])
def test_conv1d_matches_torch(torch, stride, padding, dilation, groups):
    compare(torch, lambda x, w, b: F.conv1d(x, w, b, stride, padding, dilation, groups),
            lambda x, w, b: torch.nn.functional.conv1d(x, w, b, stride, padding, dilation, groups),
            [_rand(2, 4, 11), _rand(6, 4 // groups, 3), _rand(6)])
    compare(torch, lambda x, w: F.conv1d(x, w, padding=1), lambda x, w: torch.nn.functional.conv1d(x, w, padding=1),
            [_rand(4, 7), _rand(3, 4, 2)])


def test_conv2d_gradcheck_and_double_backward():
    x, w, b = _double(2, 2, 5, 4), _double(4, 1, 3, 2), _double(4)
    assert gradcheck(lambda *a: F.conv2d(*a, stride=(2, 1), padding=1, dilation=(1, 2), groups=2), [x, w, b])
    assert gradgradcheck(lambda *a: F.conv2d(*a, padding="same"),
                         [_double(1, 1, 4, 3), _double(2, 1, 2, 2), _double(2)])
    assert gradcheck(lambda *a: F.conv1d(*a, stride=2, padding=1), [_double(1, 2, 6), _double(3, 2, 3)])


def test_conv2d_errors():
    x = gradc.zeros(1, 3, 6, 6)
    with pytest.raises(RuntimeError, match="expected input\\[1, 3, 6, 6\\] to have 2 channels, but got 3"):
        F.conv2d(x, gradc.zeros(4, 2, 3, 3))
    with pytest.raises(RuntimeError, match="expected weight to be divisible by 2"):
        F.conv2d(gradc.zeros(1, 4, 6, 6), gradc.zeros(3, 2, 3, 3), groups=2)
    with pytest.raises(RuntimeError, match="not supported for strided convolutions"):
        F.conv2d(x, gradc.zeros(2, 3, 3, 3), stride=2, padding="same")
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        F.conv2d(x, gradc.zeros(2, 3, 7, 7))
    with pytest.raises(RuntimeError, match="Invalid padding string"):
        F.conv2d(x, gradc.zeros(2, 3, 3, 3), padding="full")


# ---------------------------------------------------------------- pooling
POOL_CONFIGS = [  # kernel_size, stride, padding, dilation, ceil_mode
    (2, None, 0, 1, False), (3, 2, 1, 1, False), ((2, 3), (1, 2), (1, 1), 1, False), (3, 1, 1, 2, False),
    (3, 2, 0, 1, True), (2, 3, 1, 1, True), ((3, 2), 2, (1, 0), (1, 2), True),
]


@pytest.mark.parametrize("k,s,p,d,ceil", POOL_CONFIGS)
def test_max_pool2d_matches_torch(torch, k, s, p, d, ceil):
    x = _rand(2, 3, 9, 10)
    compare(torch, lambda t: F.max_pool2d(t, k, s, p, d, ceil), lambda t: torch.nn.functional.max_pool2d(
        t, k, s, p, d, ceil), [x])
    out, idx = F.max_pool2d(gradc.tensor(x), k, s, p, d, ceil, return_indices=True)
    ref, ref_idx = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, ceil, return_indices=True)
    assert_close(idx, ref_idx)


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("k,s,p,_,ceil", POOL_CONFIGS)
def test_avg_pool2d_matches_torch(torch, k, s, p, _, ceil, include_pad):
    compare(torch, lambda t: F.avg_pool2d(t, k, s, p, ceil, include_pad),
            lambda t: torch.nn.functional.avg_pool2d(t, k, s, p, ceil, include_pad), [_rand(2, 3, 9, 10)])
    compare(torch, lambda t: F.avg_pool2d(t, k, s, p, ceil, divisor_override=5),
            lambda t: torch.nn.functional.avg_pool2d(t, k, s, p, ceil, divisor_override=5), [_rand(1, 2, 7, 7)])


def test_max_pool2d_ties_send_the_gradient_to_the_first_maximum(torch):
    x = np.random.randint(0, 2, size=(2, 2, 6, 6)).astype(np.float64)  # many ties (as after a ReLU)
    compare(torch, lambda t: F.max_pool2d(t, 3, 1, 1), lambda t: torch.nn.functional.max_pool2d(t, 3, 1, 1), [x])
    compare(torch, lambda t: F.max_pool2d(t, 2), lambda t: torch.nn.functional.max_pool2d(t, 2),
            [np.zeros((1, 1, 4, 4))])


def test_max_pool2d_integer_and_unbatched_inputs(torch):
    x = np.random.randint(-50, 50, size=(3, 7, 7))
    out = F.max_pool2d(gradc.tensor(x), 3, 2, 1)
    assert_close(out, torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1))


@pytest.mark.parametrize("size,out", [((7, 9), (3, 4)), ((6, 6), 1), ((5, 8), (None, 3)), ((3, 4), (5, 7)),
                                      ((6, 9), (2, 3))])
def test_adaptive_avg_pool2d_matches_torch(torch, size, out):
    compare(torch, lambda t: F.adaptive_avg_pool2d(t, out), lambda t: torch.nn.functional.adaptive_avg_pool2d(
        t, out), [_rand(2, 3, *size)])
    compare(torch, lambda t: F.adaptive_avg_pool2d(t, out), lambda t: torch.nn.functional.adaptive_avg_pool2d(
        t, out), [_rand(3, *size)])


def test_pool1d_matches_torch(torch):
    tf = torch.nn.functional
    x = _rand(2, 3, 11)
    compare(torch, lambda t: F.max_pool1d(t, 3, 2, 1), lambda t: tf.max_pool1d(t, 3, 2, 1), [x])
    compare(torch, lambda t: F.max_pool1d(t, 2, ceil_mode=True, dilation=2),
            lambda t: tf.max_pool1d(t, 2, ceil_mode=True, dilation=2), [x])
    compare(torch, lambda t: F.avg_pool1d(t, 4, 3, 2, count_include_pad=False),
            lambda t: tf.avg_pool1d(t, 4, 3, 2, count_include_pad=False), [x])
    compare(torch, lambda t: F.adaptive_avg_pool1d(t, 4), lambda t: tf.adaptive_avg_pool1d(t, 4), [x])
    compare(torch, lambda t: F.max_pool1d(t, 2), lambda t: tf.max_pool1d(t, 2), [x[0]])
    out, idx = F.max_pool1d(gradc.tensor(x), 3, 2, 1, return_indices=True)
    assert_close(idx, tf.max_pool1d(torch.tensor(x), 3, 2, 1, return_indices=True)[1])


def test_pool_gradcheck():
    x = _double(1, 2, 5, 6)
    assert gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True), [x])
    assert gradcheck(lambda t: F.avg_pool2d(t, (2, 3), 2, 1, ceil_mode=True, count_include_pad=False), [x])
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, (3, 4)), [x])
    assert gradgradcheck(lambda t: F.max_pool2d(t, 2) ** 2, [x])


def test_pool_errors():
    x = gradc.zeros(1, 1, 6, 6)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(RuntimeError, match="too small"):
        F.max_pool2d(x, 7)
    with pytest.raises(RuntimeError, match="expected a 3-D or 4-D input"):
        F.max_pool2d(gradc.zeros(6, 6), 2)


# ---------------------------------------------------------------- normalisation
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (2, 3, 4, 5)])
def test_batch_norm_training_matches_torch_and_updates_running_stats(torch, shape):
    c = shape[1]
    rm, rv = _rand(c), np.abs(_rand(c)) + 0.5
    g_rm, g_rv, t_rm, t_rv = gradc.tensor(rm), gradc.tensor(rv), torch.tensor(rm), torch.tensor(rv)
    compare(torch, lambda x, w, b: F.batch_norm(x, g_rm, g_rv, w, b, True, 0.3, 1e-3),
            lambda x, w, b: torch.nn.functional.batch_norm(x, t_rm, t_rv, w, b, True, 0.3, 1e-3),
            [_rand(*shape), _rand(c), _rand(c)])
    assert_close(g_rm, t_rm)
    assert_close(g_rv, t_rv)
    compare(torch, lambda x, w, b: F.batch_norm(x, g_rm, g_rv, w, b, False),
            lambda x, w, b: torch.nn.functional.batch_norm(x, t_rm, t_rv, w, b, False),
            [_rand(*shape), _rand(c), _rand(c)])
    compare(torch, lambda x: F.batch_norm(x, None, None, training=True),
            lambda x: torch.nn.functional.batch_norm(x, None, None, training=True), [_rand(*shape)])


def test_batch_norm_gradcheck_and_errors():
    x, w, b = _double(4, 2, 3), _double(2), _double(2)
    assert gradcheck(lambda *a: F.batch_norm(a[0], None, None, a[1], a[2], True), [x, w, b])
    assert gradgradcheck(lambda t: F.batch_norm(t, None, None, training=True), [x])
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(gradc.zeros(1, 3), None, None, training=True)
    with pytest.raises(RuntimeError, match="must be defined in evaluation mode"):
        F.batch_norm(gradc.zeros(2, 3), None, None)


def test_layer_rms_group_norm_match_torch(torch):
    tf = torch.nn.functional
    x = _rand(2, 4, 3, 5)
    compare(torch, lambda t, w, b: F.layer_norm(t, (3, 5), w, b, 1e-4),
            lambda t, w, b: tf.layer_norm(t, (3, 5), w, b, 1e-4), [x, _rand(3, 5), _rand(3, 5)])
    compare(torch, lambda t: F.layer_norm(t, [5]), lambda t: tf.layer_norm(t, [5]), [x])
    compare(torch, lambda t, w: F.rms_norm(t, [3, 5], w), lambda t, w: tf.rms_norm(t, [3, 5], w), [x, _rand(3, 5)])
    compare(torch, lambda t: F.rms_norm(t, (5,), eps=0.1), lambda t: tf.rms_norm(t, (5,), eps=0.1), [x])
    compare(torch, lambda t: F.rms_norm(t, (5,)), lambda t: tf.rms_norm(t, (5,)), [x.astype(np.float32)],
            rtol=1e-5, atol=1e-5)
    compare(torch, lambda t, w, b: F.group_norm(t, 2, w, b), lambda t, w, b: tf.group_norm(t, 2, w, b),
            [x, _rand(4), _rand(4)])
    compare(torch, lambda t: F.group_norm(t, 4, eps=0.1), lambda t: tf.group_norm(t, 4, eps=0.1), [x[..., 0]])


def test_norms_gradcheck_and_errors():
    x = _double(2, 4, 3)
    assert gradcheck(lambda t, w, b: F.layer_norm(t, (4, 3), w, b), [x, _double(4, 3), _double(4, 3)])
    assert gradcheck(lambda t, w: F.rms_norm(t, (3,), w), [x, _double(3)])
    assert gradcheck(lambda t, w, b: F.group_norm(t, 2, w, b), [x, _double(4), _double(4)])
    assert gradgradcheck(lambda t: F.layer_norm(t, (3,)), [x])
    with pytest.raises(RuntimeError, match="normalized_shape"):
        F.layer_norm(gradc.zeros(2, 3), (4,))
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        F.group_norm(gradc.zeros(2, 5, 3), 2)


def test_normalize_matches_torch_even_at_zero(torch):
    x = _rand(3, 4, 2)
    x[1, :, 0] = 0  # a zero vector along dim 1: finite gradient, as torch
    tf = torch.nn.functional
    compare(torch, lambda t: F.normalize(t), lambda t: tf.normalize(t), [x])
    compare(torch, lambda t: F.normalize(t, p=1.0, dim=-1), lambda t: tf.normalize(t, p=1.0, dim=-1), [x])
    compare(torch, lambda t: F.normalize(t, p=3.0, dim=0, eps=0.5), lambda t: tf.normalize(t, p=3.0, dim=0, eps=0.5),
            [x])


# ---------------------------------------------------------------- linear, embedding, one_hot
def test_linear_and_bilinear_match_torch(torch):
    tf = torch.nn.functional
    compare(torch, F.linear, tf.linear, [_rand(5, 3), _rand(4, 3), _rand(4)])
    compare(torch, F.linear, tf.linear, [_rand(2, 5, 3), _rand(4, 3)])
    compare(torch, F.linear, tf.linear, [_rand(3), _rand(4, 3), _rand(4)])
    compare(torch, F.bilinear, tf.bilinear, [_rand(5, 3), _rand(5, 2), _rand(4, 3, 2), _rand(4)])
    compare(torch, F.bilinear, tf.bilinear, [_rand(2, 5, 3), _rand(2, 5, 2), _rand(4, 3, 2)])
    with pytest.raises(RuntimeError, match="bilinear"):
        F.bilinear(gradc.zeros(5, 3), gradc.zeros(5, 2), gradc.zeros(4, 2, 2))


@pytest.mark.parametrize("pad", [1, -4])
def test_embedding_padding_idx_row_gets_no_gradient(torch, pad):
    idx = np.array([[0, 2, 1, 2], [4, 1, 1, 0]])
    (gw,), _ = compare(torch, lambda t: F.embedding(gradc.tensor(idx), t, padding_idx=pad),
                       lambda t: torch.nn.functional.embedding(torch.tensor(idx), t, padding_idx=pad), [_rand(5, 3)])
    assert not gw.grad.numpy()[1].any()


def test_embedding_matches_torch(torch):
    idx = np.array([[0, 2, 1, 2], [4, 1, 1, 0]])
    w = _rand(5, 3)
    ti = torch.tensor(idx)
    compare(torch, lambda t: F.embedding(gradc.tensor(idx), t), lambda t: torch.nn.functional.embedding(ti, t), [w])
    compare(torch, lambda t: F.embedding(gradc.tensor(idx), t, scale_grad_by_freq=True),
            lambda t: torch.nn.functional.embedding(ti, t, scale_grad_by_freq=True), [w])
    g_w, t_w = gradc.tensor(w * 3), torch.tensor(w * 3)  # max_norm renormalises the used rows in place
    with gradc.no_grad(), torch.no_grad():
        assert_close(F.embedding(gradc.tensor(idx), g_w, max_norm=1.5),
                     torch.nn.functional.embedding(ti, t_w, max_norm=1.5), rtol=1e-6)
    assert_close(g_w, t_w, rtol=1e-6)
    compare(torch, lambda t: F.embedding(gradc.tensor(np.int64(3)), t), lambda t: torch.nn.functional.embedding(
        torch.tensor(3), t), [w])
    with pytest.raises(RuntimeError, match="'indices' to have one of the following scalar types"):
        F.embedding(gradc.zeros(2), gradc.tensor(w))
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        F.embedding(gradc.tensor(idx), gradc.tensor(w), padding_idx=5)


def test_one_hot_matches_torch(torch):
    x = np.array([[0, 3], [2, 1]])
    assert_close(F.one_hot(gradc.tensor(x)), torch.nn.functional.one_hot(torch.tensor(x)))
    assert_close(F.one_hot(gradc.tensor(x), 6), torch.nn.functional.one_hot(torch.tensor(x), 6))
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(gradc.tensor(x), 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        F.one_hot(gradc.tensor([-1, 0]))
    with pytest.raises(RuntimeError, match="LongTensor"):
        F.one_hot(gradc.tensor([1, 0], dtype=gradc.int32))


# ---------------------------------------------------------------- activations
ACTIVATIONS = [
    ("relu", {}), ("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 0.7}), ("gelu", {}),
    ("gelu", {"approximate": "tanh"}), ("silu", {}), ("softplus", {"beta": 2.0, "threshold": 3.0}), ("tanh", {}),
    ("sigmoid", {}), ("softmax", {"dim": 1}), ("log_softmax", {"dim": -1}),
]


@pytest.mark.parametrize("name,kwargs", ACTIVATIONS)
def test_activations_match_torch(torch, name, kwargs):
    x = _rand(3, 4, 5) * 3
    compare(torch, lambda t: getattr(F, name)(t, **kwargs),
            lambda t: getattr(torch.nn.functional, name)(t, **kwargs), [x])


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "silu"])
def test_inplace_activations_write_their_input(torch, name):
    x = _rand(4, 5)
    g, t = gradc.tensor(x), torch.tensor(x)
    out = getattr(F, name)(g, inplace=True)
    getattr(torch.nn.functional, name)(t, inplace=True)
    assert out is g
    assert_close(g, t)


def test_softmax_implicit_dim_warns_as_torch(torch):
    x = _rand(2, 3, 4)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        out = F.softmax(gradc.tensor(x))
    with pytest.warns(UserWarning):
        ref = torch.nn.functional.softmax(torch.tensor(x))
    assert_close(out, ref)


# ---------------------------------------------------------------- dropout
def test_dropout_drops_at_rate_p_and_scales_the_rest():
    x = gradc.ones(200, 100, requires_grad=True)
    out = F.dropout(x, 0.3)
    values = out.detach().numpy()
    assert np.allclose(values[values != 0], 1 / 0.7)
    assert abs((values == 0).mean() - 0.3) < 0.02  # 20000 draws: the std of the rate is 0.003
    out.sum().backward()
    assert_close(x.grad, gradc.tensor(values))  # the gradient is the same mask


def test_dropout_eval_edge_probabilities_and_seed():
    x = gradc.randn(50, 20)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).numpy().any()
    gradc.manual_seed(7)
    a = F.dropout(x, 0.5).numpy()
    gradc.manual_seed(7)
    b = F.dropout(x, 0.5).numpy()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, F.dropout(x, 0.5).numpy())
    y = x.clone()
    assert F.dropout(y, 0.5, inplace=True) is y
    assert ((y.numpy() == 0) | np.isclose(y.numpy(), 2 * x.numpy())).all()
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        F.dropout(x, 1.5)
