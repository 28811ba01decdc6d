"""Comparisons shared by the tests (`from helpers import assert_close`)."""
from __future__ import annotations

import numpy as np

import gradc


def to_numpy(x) -> np.ndarray:
    """A gradc tensor, torch tensor or array-like as a numpy array (detached)."""
    if isinstance(x, gradc.Tensor):
        return x.detach().numpy()
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def assert_close(actual, expected, rtol: float = 1e-5, atol: float = 1e-6, check_dtype: bool = True) -> None:
    """Values (and by default dtype and shape) of `actual` match `expected`."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    if check_dtype:
        assert a.dtype == e.dtype, f"dtype {a.dtype} != {e.dtype}"
    np.testing.assert_allclose(a.astype(np.float64) if a.dtype != bool else a,
                               e.astype(np.float64) if e.dtype != bool else e,
                               rtol=rtol, atol=atol, equal_nan=True)
