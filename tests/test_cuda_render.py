"""The CUDA backend without a GPU: `backend="cuda"` renders CUDA for every lowered op (the
op sweep's groups, forward and backward) and for the example models' training steps, and
every source compiles with `nvcc --ptx -arch=sm_90`. The functions still run (eagerly)
and give eager's results."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_compiler_ops import COMPILING, GROUP_SIZE, _Prepared, group_function

import gradc
import gradc.nn.functional as F
from gradc import nn
from gradc.compiler.render import resource_dir

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _nvcc(folder: Path) -> None:
    """Compile every .cu in `folder` to PTX for sm_90 in one nvcc run; fail with its errors."""
    sources = sorted(folder.glob("*.cu"))
    assert sources, "nothing was rendered"
    runtime = resource_dir("gradc.runtime", "runtime")
    done = subprocess.run([NVCC, "--ptx", "-arch=sm_90", f"-I{runtime}", "-odir", str(folder), *map(str, sources)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert len(list(folder.glob("*.ptx"))) == len(sources)


def test_every_lowered_op_renders_cuda_that_nvcc_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_DUMP_DIR", str(tmp_path))
    by_kind: dict = {}
    for c in COMPILING:
        by_kind.setdefault((c.dtype, c.grad), []).append(c)
    for (_, grad), cases in by_kind.items():
        for i in range(0, len(cases), GROUP_SIZE):
            sweep, inputs = group_function([_Prepared(c) for c in cases[i:i + GROUP_SIZE]])
            with gradc.set_grad_enabled(grad), np.errstate(all="ignore"):  # samples at inf/nan on purpose
                gradc.compile(sweep, backend="cuda", fullgraph=True)(*inputs)
    assert gradc.compiler.counters["compiles"] == 0  # rendered, never built for the CPU
    _nvcc(tmp_path)


def test_example_models_render_cuda_for_forward_and_backward(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_DUMP_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from char_transformer import CharTransformer

    gradc.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10))
    lm = CharTransformer(30, 16, dim=32, heads=4, layers=1)
    digits, labels = gradc.randn(8, 1, 8, 8), gradc.randint(0, 10, (8,))
    text = gradc.randint(0, 30, (2, 16))
    cases = [(lambda x, y: F.cross_entropy(mlp(x), y), (digits, labels)),
             (lambda x, y: F.cross_entropy(cnn(x), y), (digits, labels)),
             (lambda i, t: F.cross_entropy(lm(i).reshape(-1, 30), t.reshape(-1)), (text, text))]
    for fn, args in cases:
        gradc.manual_seed(1)
        got = gradc.compile(fn, backend="cuda", fullgraph=True)(*args)
        gradc.manual_seed(1)
        want = fn(*args)
        assert np.allclose(got.item(), want.item())  # it ran eagerly: eager's own result
        got.backward()
    assert len(list(tmp_path.glob("*.cu"))) == 6  # forward and backward of each
    _nvcc(tmp_path)


def test_explain_shows_cuda_kernels():
    fn = gradc.compile(lambda x: (x - x.amax(-1, keepdim=True)).exp().sum(-1), backend="cuda")
    report = gradc.explain(fn, gradc.randn(4, 100))
    (kernel,) = report.kernels
    assert kernel.backend == "cuda" and "__global__" in kernel.source and "gradc_block_reduce" in kernel.source


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_launch_sequence_matches_every_kernel_signature(monkeypatch):
    """The host side of a CUDA program (what cuda_runner passes to each launch) agrees with
    the kernels' parameter lists: one buffer per parameter, of the parameter's element type,
    then the sizes table exactly when the kernel reads dynamic sizes."""
    import re

    from gradc.compiler.api import lower, trace_call
    from gradc.compiler.cexpr import ctype
    from gradc.compiler.joint import split
    from gradc.compiler.render_cuda import cuda_program

    monkeypatch.syspath_prepend(str(EXAMPLES))
    from char_transformer import CharTransformer

    gradc.manual_seed(0)
    lm = CharTransformer(30, 16, dim=32, heads=4, layers=1)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(256, 10))
    text, digits, labels = gradc.randint(0, 30, (2, 16)), gradc.randn(8, 1, 8, 8), gradc.randint(0, 10, (8,))
    cases = [(lambda i, t: F.cross_entropy(lm(i).reshape(-1, 30), t.reshape(-1)), (text, text), frozenset()),
             (lambda x, y: F.cross_entropy(cnn(x), y), (digits, labels), frozenset({(0, 0), (1, 0)}))]
    launches_checked, sized = 0, 0
    for fn, args, dynamic in cases:
        trace, derivation = trace_call(fn, args, {}, dynamic)
        parts = split(trace, derivation)
        for part in (parts.forward, parts.backward):
            graph, plan, _ = lower(part, "test", "cuda")
            source, launches = cuda_program(graph, plan, "test")
            signatures = {name: params for name, params in
                          re.findall(r"__global__ void __launch_bounds__\(GRADC_THREADS\) (\w+)\((.*)\)", source)}
            dtype_of = {b.slot: b.dtype for b in plan.buffers.values()}
            for step in launches:
                if step.extern is not None:
                    continue
                params = [p.strip() for p in signatures[step.kernel].split(",")]
                assert len(params) == len(step.slots) + step.sizes, (step.kernel, params, step.slots)
                for param, slot in zip(params, step.slots):
                    assert param.split("*")[0].replace("const", "").strip() == ctype(dtype_of[slot]), (param, slot)
                assert step.sizes == params[-1].endswith(" sz")
                launches_checked += 1
                sized += step.sizes
    assert launches_checked > 20 and sized > 0  # the dynamic CNN's kernels take the sizes
