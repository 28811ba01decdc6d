"""Stateless layer ops (torch.nn.functional): linear, conv and pooling, normalisation,
embedding, dropout and activations.

All of them are composites of gradc ops, so autograd (and double backward) comes from
the op table; the sliding-window primitives behind conv and pooling live in
`gradc.ops.conv`. Stateful pieces (batch norm's running statistics, embedding's
max_norm) are updated in place under no_grad, as PyTorch does.
"""
from __future__ import annotations

import warnings

import numpy as np

from ... import counter_rng, dtypes
from ...autograd.grad_mode import no_grad
from ...factories import arange, tensor
from ...ops.conv import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    avg_pool1d,
    avg_pool2d,
    conv1d,
    conv2d,
    fold,
    max_pool1d,
    max_pool2d,
    unfold,
)
from ...ops.inplace import inplace as _in_place
from ...ops.linalg import einsum, matmul
from ...ops.padding import pad
from ...ops.pointwise import exp, gelu, log1p, rsqrt, sigmoid, tanh, where
from ...ops.pointwise import relu as _relu
from ...ops.reduction import log_softmax as _log_softmax
from ...ops.reduction import softmax as _softmax
from ...ops.shapes import fmt
from ...tensor import Tensor

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool1d", "avg_pool2d", "batch_norm", "bilinear",
    "conv1d", "conv2d", "dropout", "elu", "embedding", "fold", "gelu", "group_norm", "layer_norm",
    "leaky_relu", "linear", "log_softmax", "max_pool1d", "max_pool2d", "normalize", "one_hot", "pad",
    "relu", "rms_norm", "sigmoid", "silu", "softmax", "softplus", "tanh", "unfold",
]


# ---------------------------------------------------------------- linear maps
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b over the last dim of `input`."""
    out = matmul(input, weight.mT if weight.ndim == 2 else weight)
    return out if bias is None else out + bias


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y_o = x1^T W_o x2 + b_o, for (..., in1) and (..., in2) inputs and an (out, in1, in2) weight."""
    if weight.ndim != 3 or input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2]:
        raise RuntimeError(f"bilinear: weight of shape {fmt(weight.shape)} does not fit inputs of shapes "
                           f"{fmt(input1.shape)} and {fmt(input2.shape)}")
    out = einsum("...i,oij,...j->...o", input1, weight, input2)
    return out if bias is None else out + bias


# ---------------------------------------------------------------- activations
def _maybe_in_place(input: Tensor, fn, inplace: bool) -> Tensor:
    return _in_place(input, fn) if inplace else fn(input)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_in_place(input, _relu, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return _maybe_in_place(input, lambda x: where(x > 0, x, x * negative_slope), inplace)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return _maybe_in_place(input, lambda x: where(x > 0, x, (exp(where(x > 0, 0.0, x)) - 1) * alpha), inplace)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_in_place(input, lambda x: x * sigmoid(x), inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold (as PyTorch)."""
    scaled = input * beta
    linear_part = scaled > threshold
    return where(linear_part, input, log1p(exp(where(linear_part, 0.0, scaled))) / beta)


def _implicit_dim(ndim: int, stacklevel: int) -> int:
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Change the call to include "
                  "dim=X as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return _softmax(input, _implicit_dim(input.ndim, _stacklevel) if dim is None else dim, dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    return _log_softmax(input, _implicit_dim(input.ndim, _stacklevel) if dim is None else dim, dtype)


# ---------------------------------------------------------------- normalisation
def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) over the batch and spatial dims.

    Training uses the batch's biased variance and, when given, moves the running stats
    toward the batch's mean and unbiased variance by `momentum` (in place, no grad);
    evaluation uses the running stats.
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected an input with at least 2 dims, got shape {fmt(input.shape)}")
    c = input.shape[1]
    per_channel = (c,) + (1,) * (input.ndim - 2)
    if training:
        n = input.numel() // max(c, 1)
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.shape}")
        dims = (0,) + tuple(range(2, input.ndim))
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        with no_grad():
            if running_mean is not None:
                running_mean.mul_(1 - momentum).add_((mean.reshape(c) * momentum).to(running_mean.dtype))
            if running_var is not None:
                unbiased = var.reshape(c) * n / (n - 1) * momentum  # n stays an int: symbolic in a dynamic compile
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype))
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var must be defined in evaluation mode")
        centered = input - running_mean.reshape(per_channel)
        var = running_var.reshape(per_channel)
    out = centered * rsqrt(var + eps)
    if weight is not None:
        out = out * weight.reshape(per_channel)
    return out if bias is None else out + bias.reshape(per_channel)


def _trailing_dims(input: Tensor, normalized_shape, name: str) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or tuple(input.shape[input.ndim - k:]) != shape or input.ndim < k:
        raise RuntimeError(f"{name}: given normalized_shape={list(shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, shape))}], but got input of size{fmt(input.shape)}")
    return tuple(range(input.ndim - k, input.ndim))


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing `normalized_shape` dims (biased variance)."""
    dims = _trailing_dims(input, normalized_shape, "layer_norm")
    centered = input - input.mean(dims, keepdim=True)
    out = centered * rsqrt((centered * centered).mean(dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the trailing dims; eps defaults to the dtype's machine epsilon."""
    dims = _trailing_dims(input, normalized_shape, "rms_norm")
    if eps is None:
        eps = float(np.finfo(input.dtype.np).eps)
    out = input * rsqrt((input * input).mean(dims, keepdim=True) + eps)
    return out if weight is None else out * weight


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise each group of num_channels / num_groups channels over them and the spatial dims."""
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got "
                           f"input of shape {fmt(input.shape)} and num_groups={num_groups}")
    n, c = input.shape[:2]
    grouped = input.reshape(n, num_groups, -1)
    centered = grouped - grouped.mean(-1, keepdim=True)
    out = (centered * rsqrt((centered * centered).mean(-1, keepdim=True) + eps)).reshape(input.shape)
    per_channel = (c,) + (1,) * (input.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(per_channel)
    return out if bias is None else out + bias.reshape(per_channel)


def _vector_norm(input: Tensor, p: float, dim, keepdim: bool) -> Tensor:
    """The p-norm along `dim`; where it is 0 its gradient is 0 (not 0 * inf), as PyTorch."""
    total = (input.abs() ** p).sum(dim, keepdim=keepdim)
    zero = total == 0
    return where(zero, 0.0, where(zero, 1.0, total) ** (1 / p))


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_p, eps) along `dim`."""
    return input / _vector_norm(input, p, dim, True).clamp_min(eps)


# ---------------------------------------------------------------- embedding and one-hot
def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of `weight` at the indices `input`. The `padding_idx` row gets no gradient;
    `max_norm` renormalises the looked-up rows of `weight` in place first."""
    if input.dtype not in (dtypes.int64, dtypes.int32):
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following scalar "
                           f"types: Long, Int; but got {input.dtype} instead (while checking arguments for "
                           "embedding)")
    if sparse:
        raise RuntimeError("embedding: sparse gradients are not supported by gradc")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise AssertionError("Padding_idx must be within num_embeddings")
        padding_idx %= num
    flat = input.reshape(-1)
    if max_norm is not None:
        _renorm_rows(weight, flat, max_norm, norm_type)
    out = weight.index_select(0, flat)
    if padding_idx is not None:
        out = where((flat == padding_idx).unsqueeze(-1), out.detach(), out)
    if scale_grad_by_freq:
        _, inverse, counts = np.unique(flat.cpu().numpy(), return_inverse=True, return_counts=True)
        scale = tensor((1 / counts)[inverse], dtype=weight.dtype, device=weight.device).unsqueeze(-1)
        out = out.detach() + (out - out.detach()) * scale  # same value; gradient divided by the count
    return out.reshape(tuple(input.shape) + (weight.shape[1],))


def _renorm_rows(weight: Tensor, indices: Tensor, max_norm: float, norm_type: float) -> None:
    with no_grad():
        rows = tensor(np.unique(indices.cpu().numpy()), device=weight.device)
        picked = weight[rows]
        norms = _vector_norm(picked, norm_type, 1, True)
        scale = where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        weight[rows] = picked * scale


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot vectors along a new last dim."""
    if tensor.dtype is not dtypes.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if tensor.numel():
        if int(tensor.min()) < 0:
            raise RuntimeError("Class values must be non-negative.")
        top = int(tensor.max())
        if num_classes == -1:
            num_classes = top + 1
        elif top >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    elif num_classes == -1:
        raise RuntimeError("Can not infer total number of classes from empty tensor.")
    return (tensor.unsqueeze(-1) == arange(num_classes, device=tensor.device)).long()


# ---------------------------------------------------------------- dropout
def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (gradc's global
    generator draws the mask); the identity when not training."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return input
    dt = input.dtype if input.dtype.is_floating_point else dtypes.get_default_dtype()
    keep = counter_rng.rand(tuple(input.shape), dt, input.device) >= p
    mask = where(keep, 1 / (1 - p), 0.0).to(dt) if p < 1 else keep.to(dt)
    return _maybe_in_place(input, lambda x: x * mask, inplace)

