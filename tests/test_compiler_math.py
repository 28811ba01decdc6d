"""Compiled float32 exp/tanh/sigmoid/erf (runtime/gradc_runtime.h's own versions) and
reductions over leading dims (row-of-accumulators loops) against float64 references and eager."""
import math

import numpy as np
import pytest

import gradc
from gradc import compiler

# Documented bound: the runtime's float32 functions are within 2.5 ulps of the exact
# result (measured: exp 0.98, tanh 1.5, sigmoid 2.25 over this range).
MAX_ULPS = 2.5
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.73, -103.9, -104.0, 1e-30, -1e-30, 1e-45,
            9.0, -9.0, 0.625, -0.625, 20.0, -20.0]


def _sigmoid64(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _dense_range():
    rng = np.random.default_rng(0)
    return np.concatenate([np.linspace(-110, 110, 400_001), np.linspace(-1, 1, 100_001),
                           rng.standard_normal(100_000) * 4, SPECIALS]).astype(np.float32)


# erf follows eager's float32 formula (a Taylor polynomial, then Abramowitz & Stegun 7.1.26),
# whose own error is about 6 ulps (measured: eager 5.97, compiled 5.47 over this range)
ERF_MAX_ULPS = 6.5


@pytest.mark.parametrize("name,ref,bound", [("exp", np.exp, MAX_ULPS), ("tanh", np.tanh, MAX_ULPS),
                                            ("sigmoid", _sigmoid64, MAX_ULPS),
                                            ("erf", np.vectorize(math.erf), ERF_MAX_ULPS)])
def test_float32_math_within_ulps_and_special_values_match_eager(name, ref, bound):
    fn = getattr(gradc, name)
    x = _dense_range()
    got = gradc.compile(fn)(gradc.tensor(x)).numpy()
    with np.errstate(all="ignore"):
        exact = ref(x.astype(np.float64))
        rounded = exact.astype(np.float32)
    normal = np.isfinite(rounded) & (np.abs(rounded) >= np.finfo(np.float32).tiny)
    ulps = np.abs(got[normal] - exact[normal]) / np.spacing(np.abs(rounded[normal])).astype(np.float64)
    assert ulps.max() <= bound, (name, ulps.max(), x[normal][ulps.argmax()])
    # overflow, underflow, subnormals, +-inf and NaN: as eager (numpy float32) gives them
    eager = fn(gradc.tensor(x)).numpy()
    np.testing.assert_allclose(got[~normal], eager[~normal], rtol=0, atol=1e-44)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(eager))
    assert compiler.counters["fallbacks"] == 0


@pytest.mark.parametrize("dtype,tol", [(gradc.float32, 1e-4), (gradc.float64, 1e-12)])
def test_reductions_over_leading_dims_match_eager(dtype, tol):
    def f(x):
        return (x.sum(dim=0), x.amax(dim=0), x.sum(dim=-1), x.sum(), x.amin(dim=(0, 2)),
                (x * 2).sum(dim=(0, 1)), x.prod(dim=1), x.mean(dim=0, keepdim=True))

    x = gradc.randn(37, 5, 1300, dtype=dtype)  # 1300 > one 1024-wide accumulator tile
    xt = gradc.randn(1300, 5, 37, dtype=dtype).permute(2, 1, 0)  # strided rows
    for arg in (x, xt):
        for c, e in zip(gradc.compile(f)(arg), f(arg)):
            assert c.shape == e.shape and c.dtype == e.dtype
            np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=tol, atol=tol)


def test_column_max_propagates_nan():
    x = np.zeros((4, 3), np.float32)
    x[2, 1] = np.nan
    got = gradc.compile(lambda t: t.amax(dim=0))(gradc.tensor(x)).numpy()
    np.testing.assert_array_equal(got, np.array([0, np.nan, 0], np.float32))
