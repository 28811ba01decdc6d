"""Attention: `scaled_dot_product_attention` and `multi_head_attention_forward`.

Both are composites (matmul, softmax, where, ...) over one private core, `_attention`,
which returns the attention weights as well as the output: nn.MultiheadAttention
reports the weights, SDPA does not. Semantics are torch's: a bool mask keeps where
True (SDPA) while MultiheadAttention's bool masks drop where True; a float mask is
added to the scores; a query row whose every key is masked attends to nothing and
gets 0 (torch's SDPA does the same; torch's MultiheadAttention with need_weights=True
gives NaN there instead).
"""
from __future__ import annotations

import math
import warnings

from ... import dtypes
from ...factories import ones
from ...ops import amax, cat, masked_fill, softmax, tril, where
from ...tensor import Tensor
from .layers import dropout, linear


def _attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, dropout_p: float,
               is_causal: bool, scale: float | None) -> tuple[Tensor, Tensor]:
    """softmax(q k^T * scale + mask) v over the last two dims, batch dims broadcast.

    Returns (output, attention weights after dropout)."""
    n_q, n_k = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)
    if is_causal:
        scores = masked_fill(scores, ~tril(ones(n_q, n_k, dtype=dtypes.bool_, device=query.device)),
                             float("-inf"))
    if mask is not None:
        scores = masked_fill(scores, ~mask, float("-inf")) if mask.dtype is dtypes.bool_ else scores + mask
        dead = amax(scores, -1, keepdim=True) == float("-inf")
        weights = where(dead, 0.0, softmax(where(dead, 0.0, scores), -1))
    else:
        weights = softmax(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    return weights @ value, weights


def _repeat_heads(x: Tensor, groups: int) -> Tensor:
    """Each head of x (..., H, S, D) repeated `groups` times in place: (..., H * groups, S, D)."""
    *batch, heads, n, d = x.shape
    return x.unsqueeze(-3).expand(*batch, heads, groups, n, d).reshape(*batch, heads * groups, n, d)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query key^T * scale + mask) value, as torch.nn.functional's.

    query (..., L, E), key (..., S, E), value (..., S, Ev); batch dims broadcast.
    attn_mask: bool (attend where True) or float (added to the scores), broadcast to
    (..., L, S). is_causal: query i attends to keys j <= i (top-left aligned when L != S);
    it excludes attn_mask. scale defaults to 1/sqrt(E). dropout_p drops attention
    weights with gradc's global generator, always (torch's SDPA has no training flag).
    enable_gqa: key/value may have fewer heads (dim -3) than query, dividing them.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError(f"Expected query, key, and value to all be at least 2 dimensional, but got query.dim: "
                           f"{query.ndim} key.dim: {key.ndim} and value.dim: {value.ndim} instead.")
    if not query.dtype is key.dtype is value.dtype:
        raise RuntimeError(f"Expected query, key, and value to have the same dtype, but got query.dtype: "
                           f"{query.dtype} key.dtype: {key.dtype} and value.dtype: {value.dtype} instead.")
    if not 0.0 <= dropout_p <= 1.0:
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {dropout_p}")
    if attn_mask is not None:
        if is_causal:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                               "is_causal=True")
        if attn_mask.dtype is not dtypes.bool_ and not attn_mask.dtype.is_floating_point:
            raise RuntimeError(f"Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                               f"attn_mask.dtype: {attn_mask.dtype} and query.dtype: {query.dtype} instead.")
    if enable_gqa and query.ndim >= 3 and key.ndim >= 3:
        heads_q, heads_kv = query.shape[-3], key.shape[-3]
        if heads_q % heads_kv or value.shape[-3] != heads_kv:
            raise RuntimeError(f"enable_gqa: the number of query heads ({heads_q}) must be a multiple of the "
                               f"number of key/value heads ({heads_kv}, {value.shape[-3]})")
        key, value = _repeat_heads(key, heads_q // heads_kv), _repeat_heads(value, heads_q // heads_kv)
    return _attention(query, key, value, attn_mask, dropout_p, is_causal, scale)[0]


# ---------------------------------------------------------------- multi-head attention
def _float_mask(mask: Tensor | None, name: str, dtype: dtypes.dtype) -> Tensor | None:
    """A MultiheadAttention mask as an additive float mask (bool True = -inf: not attended)."""
    if mask is None or mask.dtype.is_floating_point:
        return mask
    if mask.dtype is not dtypes.bool_:
        raise AssertionError(f"only bool and floating types of {name} are supported")
    return masked_fill(mask.new_zeros(mask.shape, dtype=dtype), mask, float("-inf"))


def _check_shapes(query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None,
                  attn_mask: Tensor | None, num_heads: int) -> bool:
    """torch's input checks; True when the inputs are batched (3-D), False when 2-D."""
    if query.ndim not in (2, 3):
        raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D "
                             "query tensor")
    batched = query.ndim == 3
    kind = "batched (3-D)" if batched else "unbatched (2-D)"
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise AssertionError(f"For {kind} `query`, expected `key` and `value` to be {query.ndim}-D but found "
                             f"{key.ndim}-D and {value.ndim}-D tensors respectively")
    if key_padding_mask is not None and key_padding_mask.ndim != query.ndim - 1:
        raise AssertionError(f"For {kind} `query`, expected `key_padding_mask` to be `None` or "
                             f"{query.ndim - 1}-D but found {key_padding_mask.ndim}-D tensor instead")
    if attn_mask is not None and attn_mask.ndim not in (2, 3):
        raise AssertionError(f"For {kind} `query`, expected `attn_mask` to be `None`, 2-D or 3-D but found "
                             f"{attn_mask.ndim}-D tensor instead")
    if not batched and attn_mask is not None and attn_mask.ndim == 3:
        expected = (num_heads, query.shape[0], key.shape[0])
        if tuple(attn_mask.shape) != expected:
            raise AssertionError(f"Expected `attn_mask` shape to be {expected} but got {attn_mask.shape}")
    return batched


def _project(query: Tensor, key: Tensor, value: Tensor, in_proj_weight, in_proj_bias, separate: bool,
             q_proj_weight, k_proj_weight, v_proj_weight):
    """The input projections q, k, v; self-attention with a packed weight does one matmul."""
    biases = (None, None, None) if in_proj_bias is None else in_proj_bias.chunk(3)
    if separate:
        weights = (q_proj_weight, k_proj_weight, v_proj_weight)
    elif query is key and key is value:
        return linear(query, in_proj_weight, in_proj_bias).chunk(3, dim=-1)
    else:
        weights = in_proj_weight.chunk(3)
    return tuple(linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))


def _pad_last(mask: Tensor | None) -> Tensor | None:
    """One more (attended) key column at the end of an additive mask."""
    if mask is None:
        return None
    return cat([mask, mask.new_zeros(tuple(mask.shape[:-1]) + (1,))], dim=-1)


def multi_head_attention_forward(
        query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
        in_proj_weight: Tensor | None, in_proj_bias: Tensor | None, bias_k: Tensor | None,
        bias_v: Tensor | None, add_zero_attn: bool, dropout_p: float, out_proj_weight: Tensor,
        out_proj_bias: Tensor | None, training: bool = True, key_padding_mask: Tensor | None = None,
        need_weights: bool = True, attn_mask: Tensor | None = None, use_separate_proj_weight: bool = False,
        q_proj_weight: Tensor | None = None, k_proj_weight: Tensor | None = None,
        v_proj_weight: Tensor | None = None, static_k: Tensor | None = None, static_v: Tensor | None = None,
        average_attn_weights: bool = True, is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
    """The computation of nn.MultiheadAttention, with torch's argument list and layout.

    query (L, N, E) or unbatched (L, E); key/value (S, N, kdim/vdim). key_padding_mask
    (N, S) and attn_mask ((L, S) or (N * num_heads, L, S)): bool True = not attended, or
    float added to the scores. is_causal is only a hint: attn_mask must be given, and is
    replaced by a causal mask only where torch does so (no key_padding_mask and no
    weights wanted). Returns (output (L, N, E), weights (N, L, S) averaged over heads or
    (N, num_heads, L, S), or None when not need_weights).
    """
    batched = _check_shapes(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    src_len = key.shape[0]
    if key_padding_mask is not None and attn_mask is not None and key_padding_mask.dtype is not attn_mask.dtype:
        warnings.warn("Support for mismatched key_padding_mask and attn_mask is deprecated. Use same type for "
                      "both instead.", stacklevel=3)
    key_padding_mask = _float_mask(key_padding_mask, "key_padding_mask", query.dtype)
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None
    else:
        attn_mask = _float_mask(attn_mask, "attn_mask", query.dtype)
        is_causal = False
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if key.shape[:2] != value.shape[:2]:
            raise AssertionError(f"key's sequence and batch dims {key.shape[:2]} do not match value's "
                                 f"{value.shape[:2]}")
    elif key.shape != value.shape:
        raise AssertionError(f"key shape {key.shape} does not match value shape {value.shape}")
    q, k, v = _project(query, key, value, in_proj_weight, in_proj_bias, use_separate_proj_weight,
                       q_proj_weight, k_proj_weight, v_proj_weight)

    if attn_mask is not None:
        expected = (tgt_len, src_len) if attn_mask.ndim == 2 else (bsz * num_heads, tgt_len, src_len)
        if tuple(attn_mask.shape) != expected:
            raise RuntimeError(f"The shape of the {attn_mask.ndim}D attn_mask is {attn_mask.shape}, but should "
                               f"be {expected}.")
        if attn_mask.ndim == 2:
            attn_mask = attn_mask.unsqueeze(0)
    if bias_k is not None and bias_v is not None:
        k = cat([k, bias_k.repeat(1, bsz, 1)])
        v = cat([v, bias_v.repeat(1, bsz, 1)])
        attn_mask, key_padding_mask = _pad_last(attn_mask), _pad_last(key_padding_mask)

    # (length, batch, embed) -> (batch * heads, length, head_dim)
    q = q.reshape(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)
    k = static_k if static_k is not None else k.reshape(k.shape[0], bsz * num_heads, head_dim).transpose(0, 1)
    v = static_v if static_v is not None else v.reshape(v.shape[0], bsz * num_heads, head_dim).transpose(0, 1)
    if add_zero_attn:
        zeros = k.new_zeros((bsz * num_heads, 1, head_dim))
        k, v = cat([k, zeros], dim=1), cat([v, zeros.to(v.dtype)], dim=1)
        attn_mask, key_padding_mask = _pad_last(attn_mask), _pad_last(key_padding_mask)
    src_len = k.shape[1]

    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (bsz, src_len):
            raise AssertionError(f"expecting key_padding_mask shape of {(bsz, src_len)}, but got "
                                 f"{key_padding_mask.shape}")
        per_head = (key_padding_mask.reshape(bsz, 1, 1, src_len).expand(bsz, num_heads, 1, src_len)
                    .reshape(bsz * num_heads, 1, src_len))
        attn_mask = per_head if attn_mask is None else attn_mask + per_head

    out, weights = _attention(q, k, v, attn_mask, dropout_p if training else 0.0, is_causal, None)
    out = out.transpose(0, 1).reshape(tgt_len * bsz, embed_dim)
    out = linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, -1)
    if not batched:
        out = out.squeeze(1)
    if not need_weights:
        return out, None
    weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
    if average_attn_weights:
        weights = weights.mean(dim=1)
    return out, weights.squeeze(0) if not batched else weights
