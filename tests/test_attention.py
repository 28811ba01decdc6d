"""scaled_dot_product_attention and nn.MultiheadAttention against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc
import gradc.nn as nn
import gradc.nn.functional as F
from gradc.autograd import gradcheck


def _rand(*shape, dtype=np.float32):
    return np.random.standard_normal(shape).astype(dtype)


def _sdpa_both(torch, arrays, mask=None, rtol=1e-5, atol=1e-6, **kwargs):
    """SDPA on (query, key, value) in both libraries; equal outputs and q/k/v gradients."""
    xs = [gradc.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = F.scaled_dot_product_attention(*xs, attn_mask=None if mask is None else gradc.tensor(mask), **kwargs)
    ref = torch.nn.functional.scaled_dot_product_attention(
        *ts, attn_mask=None if mask is None else torch.tensor(mask), **kwargs)
    assert_close(out, ref, rtol=rtol, atol=atol)
    cot = _rand(*ref.shape)
    (out * gradc.tensor(cot)).sum().backward()
    (ref * torch.tensor(cot)).sum().backward()
    for x, t in zip(xs, ts):
        assert_close(x.grad, t.grad, rtol=rtol, atol=atol)
    return out


# ---------------------------------------------------------------- scaled_dot_product_attention
MASKS = {
    "none": lambda L, S: None,
    "bool": lambda L, S: np.random.rand(L, S) > 0.3,
    "bool_broadcast": lambda L, S: np.random.rand(2, 1, L, S) > 0.3,
    "float": lambda L, S: _rand(L, S),
    "float_per_head": lambda L, S: _rand(2, 3, L, S),
}


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("lengths", [(4, 6), (5, 5), (6, 3)])
def test_sdpa_masks_match_torch(torch, mask, lengths):
    L, S = lengths
    m = MASKS[mask](L, S)
    if m is not None and m.dtype == bool:
        m[..., 0] = True  # every query keeps a key: the fully masked case has its own test
    _sdpa_both(torch, [_rand(2, 3, L, 8), _rand(2, 3, S, 8), _rand(2, 3, S, 5)], m)


@pytest.mark.parametrize("lengths", [(4, 6), (5, 5), (6, 3)])
def test_sdpa_causal_and_scale_match_torch(torch, lengths):
    L, S = lengths
    q, k, v = _rand(2, 3, L, 8), _rand(2, 3, S, 8), _rand(2, 3, S, 4)
    _sdpa_both(torch, [q, k, v], is_causal=True)
    _sdpa_both(torch, [q, k, v], is_causal=True, scale=0.7)
    _sdpa_both(torch, [q, k, v], MASKS["float"](L, S), scale=2.0)


def test_sdpa_ranks_and_broadcast_batch_match_torch(torch):
    _sdpa_both(torch, [_rand(4, 8), _rand(6, 8), _rand(6, 5)])  # no batch dims
    _sdpa_both(torch, [_rand(3, 4, 8), _rand(3, 6, 8), _rand(3, 6, 5)], is_causal=True)
    _sdpa_both(torch, [_rand(2, 3, 4, 8), _rand(2, 1, 6, 8), _rand(1, 3, 6, 5)])  # batch dims broadcast


def test_sdpa_grouped_query_attention_matches_torch(torch):
    _sdpa_both(torch, [_rand(2, 6, 4, 8), _rand(2, 2, 5, 8), _rand(2, 2, 5, 8)], enable_gqa=True)
    with pytest.raises(RuntimeError, match="multiple of the number of key/value heads"):
        F.scaled_dot_product_attention(gradc.randn(1, 6, 4, 8), gradc.randn(1, 4, 5, 8), gradc.randn(1, 4, 5, 8),
                                       enable_gqa=True)


def test_sdpa_fully_masked_rows_give_zero_as_torch(torch):
    q, k, v = _rand(2, 4, 8), _rand(2, 5, 8), _rand(2, 5, 3)
    bool_mask = np.random.rand(4, 5) > 0.3
    bool_mask[:, 0] = True
    bool_mask[1] = False
    out = _sdpa_both(torch, [q, k, v], bool_mask)
    assert_close(out[:, 1], np.zeros((2, 3), np.float32))
    float_mask = np.where(bool_mask, 0.0, -np.inf).astype(np.float32)
    _sdpa_both(torch, [q, k, v], float_mask)


def test_sdpa_float_mask_gradient_matches_torch(torch):
    q, k, v, m = _rand(2, 4, 8), _rand(2, 5, 8), _rand(2, 5, 3), _rand(4, 5)
    mg, mt = gradc.tensor(m, requires_grad=True), torch.tensor(m, requires_grad=True)
    F.scaled_dot_product_attention(gradc.tensor(q), gradc.tensor(k), gradc.tensor(v), attn_mask=mg).sum().backward()
    torch.nn.functional.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                                     attn_mask=mt).sum().backward()
    assert_close(mg.grad, mt.grad, atol=1e-6)


@pytest.mark.parametrize("kind", ["plain", "bool_mask", "float_mask", "causal"])
def test_sdpa_gradcheck(kind):
    def f64(*shape):
        return gradc.randn(*shape, dtype=gradc.float64, requires_grad=True)

    q, k, v = f64(2, 3, 4), f64(2, 5, 4), f64(2, 5, 2)
    mask = {"bool_mask": gradc.tensor(np.random.rand(3, 5) > 0.4) | (gradc.arange(5) == 0),
            "float_mask": gradc.randn(3, 5, dtype=gradc.float64)}.get(kind)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask,
                                                                     is_causal=kind == "causal", scale=0.8),
                     (q, k, v))


def test_sdpa_dropout_statistics_and_seeding():
    # value = identity: the output is the attention matrix itself, after dropout
    n, p = 64, 0.4
    q, k = gradc.randn(16, n, 8), gradc.randn(16, n, 8)
    eye = gradc.eye(n).expand(16, n, n)
    gradc.manual_seed(1)
    weights = F.scaled_dot_product_attention(q, k, eye, dropout_p=p).numpy()
    zero_fraction = (weights == 0).mean()
    assert abs(zero_fraction - p) < 0.01
    # survivors are scaled by 1/(1-p): each row still sums to 1 on average
    assert abs(weights.sum(-1).mean() - 1.0) < 0.02
    gradc.manual_seed(1)
    assert np.array_equal(F.scaled_dot_product_attention(q, k, eye, dropout_p=p).numpy(), weights)
    assert not np.array_equal(F.scaled_dot_product_attention(q, k, eye, dropout_p=p).numpy(), weights)
    no_drop = F.scaled_dot_product_attention(q, k, eye).numpy()
    kept = weights != 0
    assert_close(weights[kept], no_drop[kept] / (1 - p), rtol=1e-5)


def test_sdpa_errors():
    q = gradc.randn(2, 4, 8)
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set when is_causal=True"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=gradc.ones(4, 4, dtype=gradc.bool), is_causal=True)
    with pytest.raises(RuntimeError, match="Expected query, key, and value to have the same dtype"):
        F.scaled_dot_product_attention(q.double(), q, q)
    with pytest.raises(RuntimeError, match="Expected attn_mask dtype to be bool or float"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=gradc.ones(4, 4, dtype=gradc.int64))
    with pytest.raises(RuntimeError, match="at least 2 dimensional"):
        F.scaled_dot_product_attention(q[0, 0], q[0], q[0])
    with pytest.raises(RuntimeError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=1.5)


# ---------------------------------------------------------------- MultiheadAttention
E, HEADS, L, S, N = 8, 2, 4, 5, 3


def _pair(torch, **kwargs):
    """A torch MultiheadAttention and a gradc one holding the same parameters (copied by name)."""
    ref = torch.nn.MultiheadAttention(E, HEADS, **kwargs)
    ours = nn.MultiheadAttention(E, HEADS, **kwargs)
    state = ref.state_dict()
    assert list(state) == list(ours.state_dict())
    ours.load_state_dict({name: gradc.tensor(t.numpy()) for name, t in state.items()})
    return ours, ref


def _inputs(batch_first, kdim=E, vdim=E, batched=True):
    def shaped(n, d):
        if not batched:
            return _rand(n, d)
        return _rand(N, n, d) if batch_first else _rand(n, N, d)

    return shaped(L, E), shaped(S, kdim), shaped(S, vdim)


def _check_mha(torch, ours, ref, arrays, rtol=1e-5, atol=1e-6, self_attention=False, **kwargs):
    """Forward both modules; compare outputs, weights and the gradients of inputs and parameters."""
    def convert(lib, v):
        return lib.tensor(v) if isinstance(v, np.ndarray) else v

    xs = [gradc.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    if self_attention:
        xs, ts = xs[:1] * 3, ts[:1] * 3
    out, weights = ours(*xs, **{k: convert(gradc, v) for k, v in kwargs.items()})
    ref_out, ref_weights = ref(*ts, **{k: convert(torch, v) for k, v in kwargs.items()})
    assert_close(out, ref_out, rtol=rtol, atol=atol)
    if ref_weights is None:
        assert weights is None
    else:
        assert_close(weights, ref_weights, rtol=rtol, atol=atol)
    cot = _rand(*ref_out.shape)
    (out * gradc.tensor(cot)).sum().backward()
    (ref_out * torch.tensor(cot)).sum().backward()
    for x, t in zip(xs, ts):
        assert_close(x.grad, t.grad, rtol=1e-4, atol=1e-5)
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, ref_params[name].grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("config", ["default", "kdim_vdim", "bias_kv_zero_attn", "no_bias"])
def test_mha_matches_torch(torch, batch_first, config):
    kwargs = {"default": {}, "kdim_vdim": {"kdim": 6, "vdim": 7},
              "bias_kv_zero_attn": {"add_bias_kv": True, "add_zero_attn": True}, "no_bias": {"bias": False}}[config]
    ours, ref = _pair(torch, batch_first=batch_first, **kwargs)
    arrays = _inputs(batch_first, kwargs.get("kdim", E), kwargs.get("vdim", E))
    kpm = np.zeros((N, S), bool)
    kpm[0, -2:] = True
    dropped = np.random.rand(L, S) > 0.7
    dropped[:, 0] = False  # no query loses every key (torch gives NaN there, see the module docs)
    _check_mha(torch, ours, ref, arrays)
    _check_mha(torch, ours, ref, arrays, key_padding_mask=kpm, attn_mask=dropped)
    _check_mha(torch, ours, ref, arrays, attn_mask=_rand(N * HEADS, L, S), average_attn_weights=False)


@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_self_attention_and_masks(torch, batch_first):
    ours, ref = _pair(torch, batch_first=batch_first)
    x = _inputs(batch_first)[:1]
    kpm = np.zeros((N, L), bool)
    kpm[1, -1] = True
    causal = np.triu(np.ones((L, L), bool), 1)
    _check_mha(torch, ours, ref, x, self_attention=True)
    _check_mha(torch, ours, ref, x, self_attention=True, key_padding_mask=kpm, need_weights=False)
    _check_mha(torch, ours, ref, x, self_attention=True, key_padding_mask=np.where(kpm, -np.inf, 0.0).astype(
        np.float32), attn_mask=np.where(causal, -np.inf, 0.0).astype(np.float32))
    _check_mha(torch, ours, ref, x, self_attention=True, attn_mask=causal, is_causal=True, need_weights=False)
    _check_mha(torch, ours, ref, x, self_attention=True, attn_mask=causal, is_causal=True)


def test_mha_unbatched_matches_torch(torch):
    ours, ref = _pair(torch, kdim=6, vdim=7)
    arrays = _inputs(False, 6, 7, batched=False)
    kpm = np.array([False, False, True, False, True])
    _check_mha(torch, ours, ref, arrays, key_padding_mask=kpm)
    _check_mha(torch, ours, ref, arrays, attn_mask=_rand(HEADS, L, S), average_attn_weights=False)


def test_mha_mismatched_mask_types_warn():
    mha = nn.MultiheadAttention(E, HEADS)
    x = gradc.randn(L, N, E)
    with pytest.warns(UserWarning, match="mismatched key_padding_mask and attn_mask"):
        mha(x, x, x, key_padding_mask=gradc.zeros(N, L, dtype=gradc.bool), attn_mask=gradc.zeros(L, L))


def test_mha_dropout_only_in_training(torch):
    ours, ref = _pair(torch, dropout=0.5)
    q, k, v = (gradc.tensor(a) for a in _inputs(False))
    train_out = ours(q, k, v)[0].detach().numpy()
    assert not np.allclose(train_out, ours(q, k, v)[0].detach().numpy())
    ours.eval()
    ref.eval()
    with torch.no_grad():
        ref_out, ref_weights = ref(*(torch.tensor(t.numpy()) for t in (q, k, v)))
    out, weights = ours(q, k, v)
    assert_close(out, ref_out, atol=1e-6)
    assert_close(weights, ref_weights, atol=1e-6)


def test_mha_parameters_and_initialisation(torch):
    ours, ref = nn.MultiheadAttention(16, 4), torch.nn.MultiheadAttention(16, 4)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in ref.named_parameters()]
    bound = np.sqrt(6 / (16 + 48))  # xavier_uniform_ on the (48, 16) packed weight
    w = ours.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound
    assert not ours.in_proj_bias.detach().numpy().any() and not ours.out_proj.bias.detach().numpy().any()
    assert isinstance(ours.out_proj, nn.Linear) and ours.out_proj.weight.shape == (16, 16)
    separate = nn.MultiheadAttention(16, 4, kdim=8, vdim=12, add_bias_kv=True, bias=False)
    ref_separate = torch.nn.MultiheadAttention(16, 4, kdim=8, vdim=12, add_bias_kv=True, bias=False)
    assert [(n, tuple(p.shape)) for n, p in separate.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in ref_separate.named_parameters()]
    assert separate.in_proj_weight is None and separate.in_proj_bias is None
    assert np.abs(separate.k_proj_weight.detach().numpy()).max() <= np.sqrt(6 / (16 + 8))
    assert (ours.embed_dim, ours.num_heads, ours.head_dim, ours.batch_first) == (16, 4, 4, False)


def test_mha_errors():
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="embed_dim and num_heads must be greater than 0"):
        nn.MultiheadAttention(0, 1)
    mha = nn.MultiheadAttention(E, HEADS)
    x = gradc.randn(L, N, E)
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match=r"The shape of the 2D attn_mask is .*, but should be \(4, 4\)."):
        mha(x, x, x, attn_mask=gradc.zeros(4, 3))
    with pytest.raises(AssertionError, match="expected `key` and `value` to be 3-D"):
        mha(x, x[0], x[0])
    with pytest.raises(AssertionError, match="was expecting embedding dimension of 8, but got 6"):
        mha(x[..., :6], x[..., :6], x[..., :6])
    with pytest.raises(AssertionError, match="only bool and floating types of attn_mask are supported"):
        mha(x, x, x, attn_mask=gradc.zeros(L, L, dtype=gradc.int64))
