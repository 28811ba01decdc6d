"""gradc.nn layers vs torch.nn: with torch's parameters copied in, outputs and gradients
(w.r.t. inputs and every parameter) match; batch norm's running statistics follow
torch's through training steps; reprs, parameter/buffer names and default
initialisation match torch's."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from helpers import assert_close

import gradc
import gradc.nn as nn

pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")]  # torch's


def _rand(*shape, dtype=np.float64):
    return np.random.randn(*shape).astype(dtype)


def _named_state(module) -> dict:
    return dict(itertools.chain(module.named_parameters(), module.named_buffers()))


def copy_from_torch(ours, theirs) -> None:
    """Give `ours` the values of every parameter and buffer of `theirs` (same names)."""
    mine, ref = _named_state(ours), _named_state(theirs)
    assert mine.keys() == ref.keys()
    assert dict(ours.named_parameters()).keys() == dict(theirs.named_parameters()).keys()
    with gradc.no_grad():
        for name, t in ref.items():
            mine[name].copy_(gradc.tensor(t.detach().detach().numpy()))


def check(torch, ours, theirs, *arrays, rtol=1e-6, atol=1e-8, copy=True):
    """Copy torch's state in, run both modules on the same inputs, compare the outputs and,
    for a random cotangent, the gradients of the float inputs and of every parameter."""
    if copy:
        copy_from_torch(ours, theirs)
    g_in = [gradc.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    t_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out, ref = ours(*g_in), theirs(*t_in)
    assert_close(out, ref, rtol=rtol, atol=atol)
    if ref.requires_grad:
        cot = np.random.randn(*ref.shape).astype(ref.detach().detach().numpy().dtype)
        out.backward(gradc.tensor(cot))
        ref.backward(torch.tensor(cot))
        for g, t in zip(g_in, t_in):
            if t.requires_grad:
                assert_close(g.grad, t.grad, rtol=rtol, atol=atol)
        mine = dict(ours.named_parameters())
        for name, t in theirs.named_parameters():
            if t.grad is None:
                assert mine[name].grad is None, name
            else:
                assert_close(mine[name].grad, t.grad, rtol=rtol, atol=atol)
    return out


def pair(torch, name, *args, **kwargs):
    """The gradc and the torch layer `name`, both in float64."""
    if name in FACTORY_KWARGS:
        return (getattr(nn, name)(*args, dtype=gradc.float64, **kwargs),
                getattr(torch.nn, name)(*args, dtype=torch.float64, **kwargs))
    return getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)


FACTORY_KWARGS = {"Linear", "Bilinear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "RMSNorm",
                  "GroupNorm", "Embedding"}

# ---------------------------------------------------------------- repr and state names
LAYERS = [
    ("Linear", (2, 3), {}), ("Linear", (2, 3), {"bias": False}), ("Bilinear", (2, 3, 4), {}),
    ("Conv1d", (2, 4, 3), {}), ("Conv1d", (2, 4, 3), {"padding": "same", "padding_mode": "reflect"}),
    ("Conv2d", (4, 4, (1, 3)), {"stride": 2, "padding": (1, 0), "dilation": 2, "groups": 2, "bias": False,
                                "padding_mode": "circular"}),
    ("Conv2d", (1, 2, 3), {"padding": "valid"}),
    ("MaxPool2d", (2,), {}), ("MaxPool2d", ((2, 3), 1, 1, 2), {"ceil_mode": True}), ("MaxPool1d", (3, 2), {}),
    ("AvgPool2d", (3, 2, 1), {}), ("AvgPool1d", (2,), {}), ("AdaptiveAvgPool2d", ((1, None),), {}),
    ("AdaptiveAvgPool2d", (3,), {}), ("AdaptiveAvgPool1d", (4,), {}),
    ("BatchNorm1d", (3,), {"momentum": None, "affine": False, "track_running_stats": False}),
    ("BatchNorm2d", (3,), {"eps": 1e-3, "bias": False}), ("LayerNorm", ([2, 3],), {"elementwise_affine": False}),
    ("LayerNorm", (4,), {"bias": False}), ("RMSNorm", (4,), {}), ("RMSNorm", ((2, 4),), {"eps": 1e-6}),
    ("GroupNorm", (2, 4), {}), ("GroupNorm", (2, 4), {"affine": False}),
    ("Embedding", (5, 3), {"padding_idx": -1}),
    ("Embedding", (5, 3), {"max_norm": 1.0, "norm_type": 1.0, "scale_grad_by_freq": True}),
    ("Dropout", (), {}), ("Dropout", (0.2, True), {}), ("Flatten", (), {}), ("Unflatten", (1, (2, 3)), {}),
    ("Identity", (3,), {"unused": True}), ("ReLU", (), {}), ("ReLU", (True,), {}), ("LeakyReLU", (0.2, True), {}),
    ("ELU", (), {}), ("GELU", ("tanh",), {}), ("SiLU", (), {}), ("Softplus", (2.0,), {}), ("Tanh", (), {}),
    ("Sigmoid", (), {}), ("Softmax", (1,), {}), ("LogSoftmax", (), {}),
]


@pytest.mark.parametrize("name,args,kwargs", LAYERS)
def test_repr_and_state_names_match_torch(torch, name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert tuple(ours.state_dict()[key].shape) == tuple(value.shape)
        assert ours.state_dict()[key].dtype.np == value.detach().numpy().dtype


# ---------------------------------------------------------------- affine and conv layers
def test_linear_and_bilinear_match_torch(torch):
    check(torch, *pair(torch, "Linear", 3, 4), _rand(5, 3))
    check(torch, *pair(torch, "Linear", 3, 4, bias=False), _rand(2, 5, 3))
    check(torch, *pair(torch, "Bilinear", 3, 2, 4), _rand(5, 3), _rand(5, 2))
    x = _rand(2, 3)
    assert_close(nn.Identity(54, unused=0.1)(gradc.tensor(x)), x)


CONV2D_CONFIGS = [
    {}, {"stride": 2, "padding": 1}, {"padding": "same", "dilation": (2, 1)}, {"groups": 2, "bias": False},
    {"padding": 2, "padding_mode": "reflect"}, {"padding": (1, 2), "padding_mode": "replicate", "stride": (2, 1)},
    {"padding": "same", "padding_mode": "circular"}, {"padding": "valid", "dilation": 2},
]


@pytest.mark.parametrize("kwargs", CONV2D_CONFIGS)
def test_conv2d_matches_torch(torch, kwargs):
    check(torch, *pair(torch, "Conv2d", 4, 6, (3, 2), **kwargs), _rand(2, 4, 8, 7))


@pytest.mark.parametrize("kwargs", [{}, {"stride": 2, "padding": 1, "groups": 2}, {"padding": "same", "dilation": 2},
                                    {"padding": 1, "padding_mode": "circular"}])
def test_conv1d_matches_torch(torch, kwargs):
    check(torch, *pair(torch, "Conv1d", 4, 6, 3, **kwargs), _rand(2, 4, 9))
    check(torch, *pair(torch, "Conv1d", 4, 6, 3, **kwargs), _rand(4, 9))


def test_conv_constructor_errors():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        nn.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="not supported for strided convolutions"):
        nn.Conv2d(4, 3, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv1d(4, 3, 3, padding_mode="mirror")


# ---------------------------------------------------------------- pooling
POOLS = [
    ("MaxPool2d", (3, 2, 1), {"ceil_mode": True}), ("MaxPool2d", (2,), {}), ("MaxPool2d", ((2, 3), 1, (1, 0), 2), {}),
    ("AvgPool2d", (3, 2, 1), {"count_include_pad": False}), ("AvgPool2d", (2,), {"ceil_mode": True}),
    ("AvgPool2d", (3, 1, 1), {"divisor_override": 4}), ("AdaptiveAvgPool2d", ((3, None),), {}),
    ("AdaptiveAvgPool2d", (1,), {}),
]


@pytest.mark.parametrize("name,args,kwargs", POOLS)
def test_pool2d_layers_match_torch(torch, name, args, kwargs):
    check(torch, *pair(torch, name, *args, **kwargs), _rand(2, 3, 7, 9))


def test_pool1d_layers_and_indices_match_torch(torch):
    x = _rand(2, 3, 10)
    check(torch, *pair(torch, "MaxPool1d", 3, 2, 1), x)
    check(torch, *pair(torch, "AvgPool1d", 3, 2, 1, True, False), x)
    check(torch, *pair(torch, "AdaptiveAvgPool1d", 4), x)
    x = _rand(2, 3, 6, 7)
    for ours, theirs in (pair(torch, "MaxPool2d", 3, 2, 1, return_indices=True),
                         pair(torch, "MaxPool1d", 2, return_indices=True)):
        out, idx = ours(gradc.tensor(x[0]))
        ref, ref_idx = theirs(torch.tensor(x[0]))
        assert_close(out, ref)
        assert_close(idx, ref_idx)


# ---------------------------------------------------------------- normalisation
BATCH_NORMS = [
    ("BatchNorm1d", (2, 3), {}), ("BatchNorm1d", (8, 3, 4), {"momentum": None}),
    ("BatchNorm2d", (4, 3, 5, 2), {"eps": 1e-2, "momentum": 0.5}), ("BatchNorm2d", (4, 3, 2, 2), {"affine": False}),
    ("BatchNorm2d", (4, 3, 2, 2), {"bias": False}), ("BatchNorm1d", (6, 3), {"track_running_stats": False}),
]


@pytest.mark.parametrize("name,shape,kwargs", BATCH_NORMS)
def test_batch_norm_trains_then_evaluates_as_torch(torch, name, shape, kwargs):
    ours, theirs = pair(torch, name, 3, **kwargs)
    with torch.no_grad():
        for p in theirs.parameters():  # not the trivial ones/zeros start
            p.copy_(torch.randn(p.shape, dtype=p.dtype))
    copy_from_torch(ours, theirs)
    for _ in range(3):
        check(torch, ours, theirs, _rand(*shape) * 2 + 1, copy=False)
        buffers = dict(ours.named_buffers())
        for key, b in theirs.named_buffers():
            assert_close(buffers[key], b, rtol=1e-6, atol=1e-8)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            a.grad, b.grad = None, None
    ours.eval()
    theirs.eval()
    check(torch, ours, theirs, _rand(*shape), copy=False)
    if kwargs.get("track_running_stats", True):
        assert int(ours.num_batches_tracked) == 3
    else:
        assert ours.running_mean is None and ours.num_batches_tracked is None


def test_batch_norm_input_checks():
    with pytest.raises(ValueError, match="expected 4D input \\(got 3D input\\)"):
        nn.BatchNorm2d(3)(gradc.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="expected 2D or 3D input \\(got 4D input\\)"):
        nn.BatchNorm1d(3)(gradc.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(gradc.zeros(1, 3))
    bn = nn.BatchNorm1d(3)
    bn(gradc.randn(4, 3))
    bn.reset_running_stats()
    assert not bn.running_mean.detach().numpy().any() and int(bn.num_batches_tracked) == 0


def _randomise(torch, module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype))


@pytest.mark.parametrize("name,args,kwargs", [
    ("LayerNorm", ((3, 4),), {}), ("LayerNorm", (4,), {"bias": False, "eps": 1e-3}),
    ("LayerNorm", (4,), {"elementwise_affine": False}), ("RMSNorm", (4,), {}), ("RMSNorm", ((3, 4),), {"eps": 1e-2}),
    ("GroupNorm", (3, 6), {}), ("GroupNorm", (2, 6), {"affine": False}), ("GroupNorm", (6, 6), {"bias": False}),
])
def test_layer_rms_group_norm_match_torch(torch, name, args, kwargs):
    ours, theirs = pair(torch, name, *args, **kwargs)
    _randomise(torch, theirs)
    shape = (2, 6, 3, 4) if name == "GroupNorm" else (2, 5, 3, 4)
    check(torch, ours, theirs, _rand(*shape))


# ---------------------------------------------------------------- embedding, dropout, reshaping
def test_embedding_matches_torch(torch):
    idx = np.array([[0, 2, 4], [4, 1, 1]])
    check(torch, *pair(torch, "Embedding", 5, 3), idx)
    ours, theirs = pair(torch, "Embedding", 5, 3, padding_idx=-1)
    assert ours.padding_idx == theirs.padding_idx == 4
    assert not ours.weight.detach().numpy()[4].any()
    _randomise(torch, theirs)
    check(torch, ours, theirs, idx)
    assert not ours.weight.grad.detach().numpy()[4].any()
    check(torch, *pair(torch, "Embedding", 5, 3, max_norm=1.0, scale_grad_by_freq=True), idx)


def test_embedding_from_pretrained_shares_and_freezes():
    w = gradc.randn(4, 2)
    frozen = nn.Embedding.from_pretrained(w)
    assert not frozen.weight.requires_grad and frozen.weight.data_ptr() == w.data_ptr()
    assert_close(frozen(gradc.tensor([3, 0])), w.detach().numpy()[[3, 0]])
    trainable = nn.Embedding.from_pretrained(w, freeze=False, padding_idx=0)
    assert trainable.weight.requires_grad and trainable.padding_idx == 0
    with pytest.raises(AssertionError, match="2-dimensional"):
        nn.Embedding.from_pretrained(gradc.randn(4))
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(3, 2, padding_idx=3)


def test_dropout_layer_train_and_eval():
    layer = nn.Dropout(0.25)
    x = gradc.ones(100, 100)
    out = layer(x).detach().numpy()
    assert abs((out == 0).mean() - 0.25) < 0.02
    assert np.allclose(out[out != 0], 1 / 0.75)
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(-0.1)


def test_flatten_unflatten_and_activations_match_torch(torch):
    x = _rand(2, 3, 4, 5)
    check(torch, *pair(torch, "Flatten"), x)
    check(torch, *pair(torch, "Flatten", 0, 2), x)
    check(torch, *pair(torch, "Unflatten", 2, (2, 2)), x)
    for name, args in [("ReLU", ()), ("LeakyReLU", (0.3,)), ("ELU", (0.5,)), ("GELU", ()), ("GELU", ("tanh",)),
                       ("SiLU", ()), ("Softplus", (2.0, 1.0)), ("Tanh", ()), ("Sigmoid", ()), ("Softmax", (1,)),
                       ("LogSoftmax", (-1,))]:
        check(torch, *pair(torch, name, *args), x)


def test_inplace_activation_layers_write_their_input(torch):
    for name in ("ReLU", "LeakyReLU", "ELU", "SiLU"):
        x = _rand(3, 4)
        g = gradc.tensor(x)
        assert getattr(nn, name)(inplace=True)(g) is g
        assert_close(g, getattr(torch.nn, name)()(torch.tensor(x)))


# ---------------------------------------------------------------- a whole network
def test_small_cnn_forward_and_backward_match_torch(torch):
    def build(m, **f):
        return m.Sequential(
            m.Conv2d(3, 8, 3, padding=1, **f), m.BatchNorm2d(8, **f), m.ReLU(), m.MaxPool2d(2),
            m.Conv2d(8, 8, 3, groups=2, padding="same", **f), m.GELU(), m.AvgPool2d(2), m.Dropout(0.0),
            m.Flatten(), m.Linear(32, 10, **f), m.LayerNorm(10, **f), m.LogSoftmax(dim=1))

    ours, theirs = build(nn, dtype=gradc.float32), build(torch.nn, dtype=torch.float32)
    check(torch, ours, theirs, _rand(4, 3, 8, 8, dtype=np.float32), rtol=2e-4, atol=2e-5)
    for a, b in zip(ours.buffers(), theirs.buffers()):
        assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- default initialisation
def _uniform_fills(values: np.ndarray, bound: float) -> None:
    """Samples look like U(-bound, bound): inside it, reaching its ends, with its variance."""
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.97 * bound
    assert abs(values.mean()) < 0.05 * bound
    assert abs(values.var() / (bound**2 / 3) - 1) < 0.1


@pytest.mark.parametrize("layer,fan_in", [(lambda: nn.Linear(300, 200), 300),
                                          (lambda: nn.Conv2d(16, 32, 3, groups=2), 72),
                                          (lambda: nn.Conv1d(6, 40, 5), 30), (lambda: nn.Bilinear(50, 3, 40), 50)])
def test_default_init_is_pytorchs_uniform(layer, fan_in):
    module = layer()
    _uniform_fills(module.weight.detach().numpy(), 1 / math.sqrt(fan_in))
    assert np.abs(module.bias.detach().numpy()).max() <= 1 / math.sqrt(fan_in)
    assert module.weight.requires_grad and module.weight.grad_fn is None


def test_default_init_of_embedding_and_norms_and_its_reproducibility():
    emb = nn.Embedding(400, 50, padding_idx=2).weight.detach().numpy()
    assert not emb[2].any()
    assert abs(emb.mean()) < 0.02 and abs(emb.std() - 1) < 0.02
    for layer in (nn.BatchNorm2d(5), nn.LayerNorm(5), nn.GroupNorm(5, 5)):
        assert (layer.weight.detach().numpy() == 1).all() and (layer.bias.detach().numpy() == 0).all()
    assert (nn.RMSNorm(5).weight.detach().numpy() == 1).all()
    bn = nn.BatchNorm1d(5)
    assert (bn.running_var.detach().numpy() == 1).all() and not bn.running_mean.detach().numpy().any()
    assert bn.num_batches_tracked.dtype is gradc.int64
    gradc.manual_seed(3)
    a = nn.Linear(4, 3)
    gradc.manual_seed(3)
    b = nn.Linear(4, 3)
    assert np.array_equal(a.weight.detach().numpy(), b.weight.detach().numpy())
    assert np.array_equal(a.bias.detach().numpy(), b.bias.detach().numpy())
    assert not np.array_equal(a.weight.detach().numpy(), nn.Linear(4, 3).weight.detach().numpy())
    assert nn.Conv2d(2, 3, 1, dtype=gradc.float64).weight.dtype is gradc.float64
