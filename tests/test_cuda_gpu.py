"""On an NVIDIA GPU (cupy finds a device): eager CUDA tensors and compiled CUDA kernels
against the CPU. Marked `cuda`; scripts/gpu_check.sh runs them. Without a device they
are skipped, and tests/test_cuda_render.py still compiles every kernel with nvcc."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from test_compiler_ops import COMPILING, GROUP_SIZE, _Prepared, group_function

import gradc
import gradc.nn.functional as F
from gradc import nn


def _gpu_count() -> int:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(_gpu_count() == 0, reason="needs an NVIDIA GPU and cupy (run scripts/gpu_check.sh)")]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _close(got, want, tol=1e-4):
    np.testing.assert_allclose(np.asarray(got.detach().cpu().numpy()), want.detach().numpy(), rtol=tol, atol=tol)


def test_eager_ops_and_gradients_match_the_cpu():
    x = gradc.randn(64, 33, requires_grad=True)
    w = gradc.randn(33, 17, requires_grad=True)
    xc, wc = x.detach().cuda().requires_grad_(), w.detach().cuda().requires_grad_()
    for a, b in ((x, w), (xc, wc)):
        loss = (F.softmax(a @ b, dim=-1) * F.gelu(a @ b)).sum() + a.amax(0).sum()
        loss.backward()
    assert xc.device.type == "cuda" and xc.grad.device.type == "cuda"
    _close(xc.grad, x.grad)
    _close(wc.grad, w.grad)


@pytest.mark.parametrize("grad", [False, True])
def test_every_lowered_op_compiled_on_the_gpu_matches_eager_cpu(grad):
    cases = [c for c in COMPILING if c.grad == grad and c.dtype == "float32"]
    for i in range(0, len(cases), GROUP_SIZE):
        prepared = [_Prepared(c) for c in cases[i:i + GROUP_SIZE]]
        sweep, cpu_inputs = group_function(prepared)
        inputs = [t.detach().cuda().requires_grad_(t.requires_grad) for t in cpu_inputs]
        with gradc.set_grad_enabled(grad):
            got = gradc.compile(sweep, fullgraph=True)(*inputs)
        want = [o for p in prepared for o in p.eager]
        for g, w in zip(got, want):
            assert g.device.type == "cuda"
            np.testing.assert_allclose(g.detach().cpu().numpy(), w.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert gradc.compiler.counters["fallbacks"] == 0


def test_example_models_train_compiled_on_the_gpu_like_the_cpu(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from char_transformer import CharTransformer

    def models():
        gradc.manual_seed(0)
        return [nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(64, 10)),
                CharTransformer(30, 16, dim=32, heads=4, layers=1)]

    cpu, gpu = models(), [m.cuda() for m in models()]
    digits, labels = gradc.randn(8, 1, 8, 8), gradc.randint(0, 10, (8,))
    text = gradc.randint(0, 30, (2, 16))
    losses = [lambda m, x, y: F.cross_entropy(m(x), y)] * 2 + [
        lambda m, i, t: F.cross_entropy(m(i).reshape(-1, 30), t.reshape(-1))]
    batches = [(digits, labels), (digits, labels), (text, text)]
    for m_cpu, m_gpu, loss, batch in zip(cpu, gpu, losses, batches):
        compiled = gradc.compile(lambda *a, m=m_gpu, loss=loss: loss(m, *a))
        for _ in range(3):
            want = loss(m_cpu, *batch)
            want.backward()
            got = compiled(*(t.cuda() for t in batch))
            got.backward()
            _close(got, want)
            for p, q in zip(m_gpu.parameters(), m_cpu.parameters()):
                _close(p.grad, q.grad, 1e-3)
    assert gradc.compiler.counters["fallbacks"] == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-m", "cuda"]))
