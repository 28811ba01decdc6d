"""Loss functions (`F.mse_loss`, `F.cross_entropy`, ...), as in torch.nn.functional.

Every loss is a composite of existing ops (log_softmax, gather, where, log, ...), so its
gradient and double backward come from the ops' own derivatives; no loss adds a
primitive. Each one builds an elementwise loss, then applies torch's reduction:
'none' keeps it, 'sum' adds it up, 'mean' averages it, where a class-weighted mean
(nll_loss, cross_entropy) divides by the total weight of the counted targets, not by
their number. Argument checks raise torch's exception types and messages.
"""
from __future__ import annotations

import warnings

from ... import dtypes
from ...ops import abs, clamp, exp, gather, log, log1p, log_softmax, minimum, where
from ...ops.indexing import class_index
from ...tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")
_TORCH_NAMES = {"bool": "Bool", "uint8": "Byte", "int8": "Char", "int16": "Short", "int32": "Int",
                "int64": "Long", "float16": "Half", "float32": "Float", "float64": "Double"}


def _torch_name(dt: dtypes.dtype) -> str:
    """A dtype as torch's kernels name it in errors ('Long', 'Float', ...)."""
    return _TORCH_NAMES[dt.name]


def legacy_reduction(size_average: bool | None, reduce: bool | None, stacklevel: int = 3) -> str:
    """The reduction that torch's deprecated `size_average`/`reduce` pair stands for.

    Either flag left as None counts as True; `reduce=False` means 'none' whatever
    `size_average` says, else `size_average` picks 'mean' over 'sum'.
    """
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction = ("mean" if size_average else "sum") if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{reduction}' instead.",
                  stacklevel=stacklevel)
    return reduction


def _resolve_reduction(reduction: str, size_average: bool | None, reduce: bool | None) -> str:
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce, stacklevel=4)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _warn_size_mismatch(input: Tensor, target: Tensor) -> None:
    if target.shape != input.shape:
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
                      "This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=3)


def _pointwise_loss(loss: Tensor, input: Tensor, weight: Tensor | None, reduction: str,
                    weighted_mean: bool) -> Tensor:
    """Reduce an elementwise regression loss; with `weight` (input's shape, as torch asks),
    'mean' is sum(w * loss) / sum(w) when `weighted_mean`, else mean(w * loss) (huber)."""
    if weight is None:
        return _reduce(loss, reduction)
    if weight.shape != input.shape:
        raise ValueError("Weights and input must have the same size.")
    loss = loss * weight
    if reduction == "mean" and weighted_mean:
        return loss.sum() / weight.sum()
    return _reduce(loss, reduction)


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Squared error (input - target)**2, broadcast (with torch's warning) and reduced."""
    _warn_size_mismatch(input, target)
    reduction = _resolve_reduction(reduction, size_average, reduce)
    diff = input - target
    return _pointwise_loss(diff * diff, input, weight, reduction, weighted_mean=True)


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Absolute error |input - target|; its gradient at a tie is 0, as torch's."""
    _warn_size_mismatch(input, target)
    reduction = _resolve_reduction(reduction, size_average, reduce)
    return _pointwise_loss(abs(input - target), input, weight, reduction, weighted_mean=True)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d**2 / beta where |d| < beta, else |d| - 0.5 beta; beta = 0 is the L1 loss."""
    _warn_size_mismatch(input, target)
    reduction = _resolve_reduction(reduction, size_average, reduce)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    d = abs(input - target)
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce(where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """0.5 d**2 where |d| < delta, else delta (|d| - 0.5 delta): delta times smooth_l1(beta=delta)."""
    _warn_size_mismatch(input, target)
    reduction = _resolve_reduction(reduction, None, None)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    d = abs(input - target)
    loss = where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return _pointwise_loss(loss, input, weight, reduction, weighted_mean=False)


# ---------------------------------------------------------------- classification
def _check_class_target(input: Tensor, target: Tensor) -> None:
    """torch's checks on a class-index target for input (C), (N, C) or (N, C, d1, ...)."""
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if target.dtype not in (dtypes.int64, dtypes.uint8):
        raise RuntimeError(f"expected target dtype to be Long or Byte, but got {_torch_name(target.dtype)}")
    if input.ndim == 1:
        if target.ndim > 1 or target.numel() != 1:
            raise RuntimeError(f"For 1D input, 1D target must have size 1, but got target size: {target.numel()}")
        return
    if target.ndim == 0 or input.shape[0] != target.shape[0]:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({target.shape[0] if target.ndim else 1}).")
    if input.ndim == 2 and target.ndim != 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise RuntimeError(f"Expected target size {list(expected)}, got {list(target.shape)}")


def _check_weight(weight: Tensor | None, n_classes: int) -> None:
    if weight is not None and weight.numel() != n_classes:
        raise RuntimeError(f"weight tensor should be defined either for all {n_classes} classes or no classes "
                           f"but got weight tensor of shape: {list(weight.shape)}")


def _class_terms(log_probs: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int):
    """Per-target (negative log-likelihood, weight) for class-index targets.

    log_probs is (N, C, d1, ...) and target (N, d1, ...). A target equal to
    `ignore_index` gets loss 0 and weight 0; any other target outside [0, C) is an
    IndexError, raised by the `class_index` op's kernel (so compiled code raises it too).
    """
    n_classes = log_probs.shape[1]
    target = target.long()
    ignored = target == ignore_index
    safe = class_index(target, ignore_index, n_classes).unsqueeze(1)
    # a view of gather's fresh result: its backward is a view too (squeeze's is a scatter)
    picked = gather(log_probs, 1, safe).view(target.shape)
    if weight is None:  # every weight is 1: -picked is the loss where not ignored
        return where(ignored, 0.0, -picked), (~ignored).to(log_probs.dtype)
    per_class = _along_classes(weight, log_probs).expand(log_probs.shape)
    w = where(ignored, 0.0, gather(per_class, 1, safe).squeeze(1))
    return where(ignored, 0.0, -picked * w), w


def _as_batch(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """A 1-D input (C) and its single target as a batch of one: (1, C) and (1,)."""
    if input.ndim == 1:
        return input.unsqueeze(0), target.reshape(1)
    return input, target


def _weighted_reduce(loss: Tensor, w: Tensor, reduction: str, squeeze: bool) -> Tensor:
    if reduction == "mean":
        return loss.sum() / w.sum()
    if reduction == "sum":
        return loss.sum()
    return loss.squeeze(0) if squeeze else loss


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
             ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class-index targets under log-probabilities `input`.

    input (C), (N, C) or (N, C, d1, ...); target (), (N) or (N, d1, ...) of int64 (or
    uint8). 'mean' divides by the summed weight of the non-ignored targets, so it is
    NaN when every target is ignored (as torch).
    """
    _check_class_target(input, target)
    reduction = _resolve_reduction(reduction, size_average, reduce)
    n_classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    _check_weight(weight, n_classes)
    squeeze = input.ndim == 1
    input, target = _as_batch(input, target)
    loss, w = _class_terms(input, target, weight, ignore_index)
    return _weighted_reduce(loss, w, reduction, squeeze)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
                  ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class dim (dim 1, or 0 for a 1-D input), then the likelihood.

    A target of input's shape holds class probabilities (floating point; 'mean' divides
    by the number of distributions, weights or not); any other target holds class
    indices, as for nll_loss. label_smoothing = e > 0 mixes the target with the uniform
    distribution: (1 - e) * loss + e / C * sum_c(-w_c log p_c), the second term
    following the same ignoring and weighted mean as the first.
    """
    if label_smoothing > 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    if input.shape == target.shape:
        return _cross_entropy_probs(input, target, weight, size_average, ignore_index, reduce, reduction,
                                    label_smoothing, class_dim)
    _check_class_target(input, target)
    reduction = _resolve_reduction(reduction, size_average, reduce)
    n_classes = input.shape[class_dim]
    _check_weight(weight, n_classes)
    squeeze = input.ndim == 1
    input, target = _as_batch(input, target)
    log_probs = log_softmax(input, 1)
    loss, w = _class_terms(log_probs, target, weight, ignore_index)
    if label_smoothing > 0:
        per_class = log_probs if weight is None else log_probs * _along_classes(weight, log_probs)
        smooth = where(target == ignore_index, 0.0, -per_class.sum(1))
        loss = (1 - label_smoothing) * loss + (label_smoothing / n_classes) * smooth
    return _weighted_reduce(loss, w, reduction, squeeze)


def _along_classes(weight: Tensor, input: Tensor) -> Tensor:
    """weight (C) shaped to broadcast along dim 1 of input (N, C, d1, ...)."""
    return weight.to(input.dtype).reshape((weight.numel(),) + (1,) * (input.ndim - 2))


def _cross_entropy_probs(input: Tensor, target: Tensor, weight, size_average, ignore_index: int, reduce,
                         reduction: str, label_smoothing: float, class_dim: int) -> Tensor:
    if not target.dtype.is_floating_point:
        raise RuntimeError(f"Expected floating point type for target with class probabilities, "
                           f"got {_torch_name(target.dtype)}")
    if ignore_index >= 0:
        raise RuntimeError("ignore_index is not supported for floating point target")
    reduction = _resolve_reduction(reduction, size_average, reduce)
    n_classes = input.shape[class_dim]
    _check_weight(weight, n_classes)
    log_probs = log_softmax(input, class_dim)
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    terms = log_probs * target
    if weight is not None:
        terms = terms * (weight.to(input.dtype) if class_dim == 0 else _along_classes(weight, input))
    loss = -terms.sum(class_dim)
    if reduction == "mean":
        return loss.sum() / (input.numel() // n_classes if n_classes else 0)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- binary
def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """-w (t log x + (1 - t) log(1 - x)) for probabilities x in [0, 1].

    Each log is clamped at -100, as torch, so x = 0 or 1 gives a finite loss and a zero
    gradient through the clamped term (torch instead bounds x(1 - x) below by 1e-12 in
    its gradient; the two agree wherever x(1 - x) > 1e-12).
    """
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input size "
                         f"({input.shape}) is deprecated. Please ensure they have the same size.")
    reduction = _resolve_reduction(reduction, size_average, reduce)
    if target.dtype is not input.dtype:
        raise RuntimeError(f"Found dtype {_torch_name(target.dtype)} but expected {_torch_name(input.dtype)}")
    if input.numel() and bool(((input < 0) | (input > 1)).sum().item()):
        raise RuntimeError("all elements of input should be between 0 and 1")
    loss = -(target * _clamped_log(input) + (1 - target) * _clamped_log(1 - input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _clamped_log(x: Tensor) -> Tensor:
    """max(log x, -100); log runs on a positive stand-in where x = 0, so that no 0 * inf
    turns the gradient there into NaN."""
    positive = x > 0
    return clamp(where(positive, log(where(positive, x, 1.0)), -100.0), min=-100.0)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """binary_cross_entropy(sigmoid(input), target), computed stably from the logits.

    With p = pos_weight (broadcast along the last dim, the classes), the loss is
    (1 - t) x + (1 + (p - 1) t) softplus(-x), softplus(-x) = log1p(exp(-|x|)) - min(x, 0):
    no exp overflows, and the gradient is exact at x = 0 too.
    """
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    reduction = _resolve_reduction(reduction, size_average, reduce)
    softplus_neg = log1p(exp(-abs(input))) - minimum(input, input.new_zeros(()))
    scale = softplus_neg if pos_weight is None else (1 + (pos_weight - 1) * target) * softplus_neg
    loss = (1 - target) * input + scale
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)
