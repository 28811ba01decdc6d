"""CUDA devices without cupy (or without a GPU): every way of reaching one fails with a
message naming the device, the missing piece and how to get it, and nothing changes."""
from __future__ import annotations

import sys

import pytest

import gradc
from gradc.device import _cupy


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    _cupy.cache_clear()
    yield
    _cupy.cache_clear()


@pytest.mark.parametrize("make", [
    lambda x: x.cuda(), lambda x: x.to("cuda"), lambda x: x.to("cuda:1"), lambda x: gradc.zeros(3, device="cuda"),
    lambda x: gradc.nn.Linear(2, 2).cuda(), lambda x: gradc.randn(2, device=gradc.device("cuda", 0)),
])
def test_cuda_without_cupy_is_a_clear_error(no_cupy, make):
    x = gradc.arange(3.0)
    with pytest.raises(RuntimeError, match=r"cuda:\d tensors need cupy, which is not installed: pip install"):
        make(x)
    assert x.device == gradc.device("cpu") and x.tolist() == [0.0, 1.0, 2.0]


def test_cupy_without_a_gpu_is_a_clear_error(monkeypatch):
    class Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = type(sys)("cupy")
    fake.cuda = type(sys)("cupy.cuda")
    fake.cuda.runtime = Runtime
    monkeypatch.setitem(sys.modules, "cupy", fake)
    _cupy.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="need an NVIDIA GPU; cupy cannot reach one .*cudaErrorNoDevice"):
            gradc.ones(2).cuda()
    finally:
        _cupy.cache_clear()
