"""gradc.nn.init: gains and fans as torch.nn.init computes them; the initialisers fill in
place, without autograd history, from the distributions torch's use (checked
statistically, not bit for bit), reproducibly under gradc.manual_seed."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradc
from gradc.nn import Parameter, init


def _param(*shape) -> Parameter:
    return Parameter(gradc.empty(*shape))


def _values(t) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


@pytest.mark.parametrize("name,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                        ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                        ("leaky_relu", 3), ("selu", None), ("conv_transpose1d", None)])
def test_calculate_gain_matches_torch(torch, name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="Unsupported nonlinearity softsign"):
        init.calculate_gain("softsign")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", "big")


@pytest.mark.parametrize("shape", [(3, 4), (5, 2, 3), (8, 4, 3, 2), (2, 0, 3)])
def test_fans_match_torch(torch, shape):
    assert init._calculate_fan_in_and_fan_out(gradc.empty(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(*shape))


def test_fans_need_two_dims():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(gradc.empty(4))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(gradc.empty(4))


def _looks_uniform(v: np.ndarray, lo: float, hi: float) -> None:
    assert v.min() >= lo and v.max() <= hi
    width = hi - lo
    assert v.min() < lo + 0.01 * width and v.max() > hi - 0.01 * width
    assert abs(v.mean() - (lo + hi) / 2) < 0.02 * width
    assert abs(v.std() / (width / math.sqrt(12)) - 1) < 0.05


def _looks_normal(v: np.ndarray, mean: float, std: float) -> None:
    assert abs(v.mean() - mean) < 0.05 * std
    assert abs(v.std() / std - 1) < 0.05
    assert abs(((v - mean) / std > 1).mean() - 0.1587) < 0.02  # the upper 1-sigma tail


def test_uniform_and_normal_fill_in_place_without_history():
    p = _param(100, 50)
    ptr = p.data_ptr()
    out = init.uniform_(p, -2.0, 3.0)
    assert out is p and p.data_ptr() == ptr
    assert p.grad_fn is None and p.requires_grad and p.is_leaf
    _looks_uniform(_values(p), -2.0, 3.0)
    init.normal_(p, 1.5, 0.5)
    _looks_normal(_values(p), 1.5, 0.5)
    assert p.grad_fn is None
    t = gradc.empty(200, 100, dtype=gradc.float64)
    init.normal_(t)
    assert t.dtype is gradc.float64
    _looks_normal(_values(t), 0.0, 1.0)


def test_constant_ones_zeros_eye():
    p = _param(3, 4)
    assert (_values(init.constant_(p, 2.5)) == 2.5).all()
    assert (_values(init.ones_(p)) == 1).all()
    assert not _values(init.zeros_(p)).any()
    assert np.array_equal(_values(init.eye_(p)), np.eye(3, 4))
    with pytest.raises(ValueError, match="2 dimensions"):
        init.eye_(gradc.empty(2, 2, 2))


def test_xavier_matches_torchs_distributions():
    p = _param(200, 30, 3)  # fan_in 90, fan_out 600
    gain = 1.7
    bound = gain * math.sqrt(6 / 690)
    _looks_uniform(_values(init.xavier_uniform_(p, gain)), -bound, bound)
    _looks_normal(_values(init.xavier_normal_(p, gain)), 0.0, gain * math.sqrt(2 / 690))


@pytest.mark.parametrize("a,mode,nonlinearity", [(0, "fan_in", "leaky_relu"), (math.sqrt(5), "fan_in", "leaky_relu"),
                                                 (0, "fan_out", "relu"), (0.1, "fan_in", "tanh")])
def test_kaiming_matches_torchs_distributions(torch, a, mode, nonlinearity):
    p = _param(120, 40, 2, 2)
    fan = 160 if mode == "fan_in" else 480
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    _looks_uniform(_values(init.kaiming_uniform_(p, a, mode, nonlinearity)), -math.sqrt(3) * std, math.sqrt(3) * std)
    _looks_normal(_values(init.kaiming_normal_(p, a, mode, nonlinearity)), 0.0, std)
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(p, mode="fan_avg")


def test_kaiming_on_an_empty_tensor_warns_and_does_nothing():
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_uniform_(gradc.empty(0, 3))


def test_trunc_normal_stays_in_bounds_with_torchs_moments(torch):
    p = _param(200, 100)
    init.trunc_normal_(p, mean=0.5, std=2.0, a=-1.0, b=3.0)
    ours = _values(p)
    ref = torch.nn.init.trunc_normal_(torch.empty(200, 100, dtype=torch.float64), 0.5, 2.0, -1.0, 3.0).numpy()
    assert ours.min() >= -1.0 and ours.max() <= 3.0
    assert ours.min() < -0.98 and ours.max() > 2.98
    assert abs(ours.mean() - ref.mean()) < 0.03 and abs(ours.std() / ref.std() - 1) < 0.03
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(p, a=1.0, b=0.0)


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (4, 3, 2)])
def test_orthogonal_gives_orthonormal_rows_or_columns(shape):
    p = _param(*shape)
    init.orthogonal_(p, gain=2.0)
    m = _values(p).reshape(shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(gram, 4.0 * np.eye(gram.shape[0]), atol=1e-5)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(gradc.empty(3))


def test_manual_seed_makes_initialisation_reproducible():
    p, q = _param(20, 10), _param(20, 10)
    for fill in (init.uniform_, init.normal_, init.xavier_uniform_, init.kaiming_normal_, init.trunc_normal_,
                 init.orthogonal_):
        gradc.manual_seed(11)
        fill(p)
        gradc.manual_seed(11)
        fill(q)
        assert np.array_equal(_values(p), _values(q)), fill.__name__
        fill(q)
        assert not np.array_equal(_values(p), _values(q)), fill.__name__


def test_an_explicit_generator_is_used():
    p, q = _param(5, 5), _param(5, 5)
    init.uniform_(p, generator=np.random.default_rng(3))
    init.uniform_(q, generator=np.random.default_rng(3))
    assert np.array_equal(_values(p), _values(q))
