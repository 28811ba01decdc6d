"""The CUDA backend executed without a GPU: `backend="cuda"` on CPU tensors runs the
generated kernels and `CudaModule`'s host logic through the CPU emulation of CUDA
(`cuda_emulator`: fibers for threads, real barriers and warp shuffles, grids capped so
grid-stride loops are exercised). Every lowered op's samples (forward, and backward for
the training groups) and the example models' training steps must match eager and the C
backend, as they must on a GPU (tests/test_cuda_gpu.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cuda_emulator import CXX, Emulated
from test_compiler_ops import case_groups, check_group

import gradc
import gradc.nn.functional as F
from gradc import nn
from gradc.compiler import config

pytestmark = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (g++) for the CUDA emulation")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def kernels_folder(tmp_path_factory) -> Path:
    """Emulated builds shared by this module's tests (keyed by source)."""
    return tmp_path_factory.mktemp("cuda-emulation")


@pytest.fixture(autouse=True)
def emulated(kernels_folder, monkeypatch):
    monkeypatch.setattr(config, "cuda_toolchain", lambda device: Emulated(kernels_folder))


@pytest.mark.parametrize("cases", case_groups())
def test_every_lowered_op_runs_through_the_cuda_kernels(cases):
    check_group(cases, backend="cuda")


def test_the_kernels_really_ran_and_cover_every_kernel_kind():
    def f(x):
        return (F.softmax(x, -1) * x.tanh()).sum(0), F.layer_norm(x, (x.shape[-1],)) * 2

    x = gradc.randn(50, 70)
    fn = gradc.compile(f, backend="cuda")
    got = fn(x)
    assert gradc.compiler.counters["compiles"] == 1 and gradc.compiler.counters["fallbacks"] == 0
    (entry,) = [e for es in fn.entries.values() for e in es]
    assert "__global__" in entry.source
    assert {"reduction", "rows", "template"} <= {k.kind for k in entry.module.plan.kernels}
    for a, b in zip(got, f(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_a_planted_wrong_lowering_shows_in_the_emulated_results():
    """The emulation runs the generated CUDA itself: a wrong expression in it is seen."""
    from gradc.compiler.testing import planted_lowering

    x = gradc.randn(300)
    with planted_lowering("tanh", "sinf({0})"):
        got = gradc.compile(lambda t: (t * 3).tanh(), backend="cuda")(x)
    np.testing.assert_allclose(got.numpy(), np.sin(x.numpy() * 3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [3, 4, 7, 1000, 1029])
def test_vectorised_pointwise_loops_take_tails_and_unaligned_buffers(n):
    """Contiguous operands move 4 elements per thread when aligned; the scalar loop takes
    the tail, and everything when a buffer starts off a 16-byte boundary (a slice)."""
    def f(x, bias):
        return (x * 2 + bias).tanh() + x.exp(), x.reshape(-1, 1) * bias.reshape(1, -1)[:, :1]

    fn = gradc.compile(f, backend="cuda")
    storage, bias = gradc.randn(n + 1), gradc.randn(n)
    for x in (storage[:n], storage[1:]):  # the same guards; 16-byte aligned, then 4 bytes off
        for got, want in zip(fn(x, bias), f(x, bias)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    (entry,) = [e for es in fn.entries.values() for e in es]
    assert ("gradc_load4" in entry.source) == (n >= 4)


def test_example_models_train_through_the_cuda_kernels_like_the_c_backend(monkeypatch):
    """Three training steps of each example model with SGD: the CUDA kernels (emulated)
    and the C backend give the same losses and parameters."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from char_transformer import CharTransformer

    def models():
        gradc.manual_seed(0)
        return [nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10)),
                CharTransformer(30, 16, dim=32, heads=4, layers=1)]

    digits, labels = gradc.randn(8, 1, 8, 8), gradc.randint(0, 10, (8,))
    text = gradc.randint(0, 30, (2, 16))
    losses = [lambda m, x, y: F.cross_entropy(m(x), y)] * 2 + [
        lambda m, i, t: F.cross_entropy(m(i).reshape(-1, 30), t.reshape(-1))]
    batches = [(digits, labels), (digits, labels), (text, text)]
    runs = {}
    for backend in ("c", "cuda"):
        trained = []
        for model, loss_fn, batch in zip(models(), losses, batches):
            step = gradc.compile(lambda *b, m=model, f=loss_fn: f(m, *b), backend=backend)
            opt = gradc.optim.SGD(model.parameters(), lr=0.1)
            gradc.manual_seed(3)
            history = []
            for _ in range(3):
                opt.zero_grad()
                loss = step(*batch)
                loss.backward()
                opt.step()
                history.append(loss.item())
            trained.append((history, [p.detach().numpy().copy() for p in model.parameters()]))
        runs[backend] = trained
    assert gradc.compiler.counters["fallbacks"] == 0
    for (c_losses, c_params), (cuda_losses, cuda_params) in zip(runs["c"], runs["cuda"]):
        np.testing.assert_allclose(cuda_losses, c_losses, rtol=1e-5)
        for a, b in zip(cuda_params, c_params):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
