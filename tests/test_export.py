"""gradc.export: models written as dependency-free C, built with exactly
`cc -O2 -std=c99 -Wall -Werror model.c main_example.c -lm`, run as a separate program on
inputs the test writes, and compared with gradc eager."""
from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradc
import gradc.nn.functional as F
from gradc import nn

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BUILD = ["cc", "-O2", "-std=c99", "-Wall", "-Werror", "model.c", "main_example.c", "-lm", "-o", "model"]


def build(out: Path, extra: tuple = ()) -> None:
    done = subprocess.run(BUILD + list(extra), cwd=out, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def run(out: Path, inputs: list[np.ndarray], outputs: list[tuple], env: dict | None = None) -> list[np.ndarray]:
    """Run the built example program on `inputs` (written raw, in order) and read back the
    outputs, given as (shape, numpy dtype)."""
    (out / "in.bin").write_bytes(b"".join(np.ascontiguousarray(a).tobytes() for a in inputs))
    done = subprocess.run(["./model", "in.bin", "out.bin"], cwd=out, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    data, results, at = (out / "out.bin").read_bytes(), [], 0
    for shape, dtype in outputs:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        results.append(np.frombuffer(data[at:at + n], dtype).reshape(shape))
        at += n
    assert at == len(data)
    return results


def eager(fn, *inputs):
    with gradc.no_grad():
        out = fn(*inputs)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def example_model(name: str) -> nn.Module:
    """The digits example's network with random weights and, for batch norm, random running
    statistics (so eval-mode normalisation is not the identity)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(EXAMPLES))
    gradc.manual_seed(1)
    model = module.build_model()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(gradc.randn(m.num_features) * 0.1)
            m.running_var.copy_(gradc.rand(m.num_features) + 0.5)
    return model


@pytest.mark.parametrize("name, sample", [("digits_mlp", (64,)), ("digits_cnn", (1, 8, 8))])
@pytest.mark.parametrize("weights", ["embed", "file"])
def test_digits_models_match_eager(tmp_path, name, sample, weights):
    model = example_model(name).train()
    x = gradc.randn(5, *sample)
    paths = gradc.export(model, x, tmp_path, weights=weights)
    assert model.training  # restored after the export's eval-mode capture
    names = {p.name for p in paths}
    assert names == {"model.h", "model.c", "main_example.c"} | ({"weights.bin"} if weights == "file" else set())
    build(tmp_path)
    model.eval()
    for _ in range(2):  # the same executable on fresh inputs
        x = gradc.randn(5, *sample)
        (got,) = run(tmp_path, [x.numpy()], [((5, 10), np.float32)])
        (want,) = eager(model, x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    c_source = (tmp_path / "model.c").read_text()
    assert not re.search(r"^\s*#pragma omp", c_source, re.M) and '#include "gradc_runtime.h"' not in c_source
    if weights == "file":
        assert (tmp_path / "weights.bin").stat().st_size > sum(p.numel() for p in model.parameters()) * 4
        assert "model_load" in (tmp_path / "model.h").read_text()


@pytest.mark.parametrize("name, sample", [("digits_mlp", (64,)), ("digits_cnn", (1, 8, 8))])
def test_dynamic_batch(tmp_path, name, sample):
    model = example_model(name).eval()
    gradc.export(model, gradc.randn(4, *sample), tmp_path, dynamic=True, weights="file")
    header = (tmp_path / "model.h").read_text()
    assert "int model_run(int64_t batch, const float *in0, float *out0);" in header
    build(tmp_path)
    for batch in (1, 3, 4, 9):
        x = gradc.randn(batch, *sample)
        (got,) = run(tmp_path, [x.numpy()], [((batch, 10), np.float32)])
        np.testing.assert_allclose(got, eager(model, x)[0], rtol=1e-5, atol=1e-5)


def test_openmp_build_matches(tmp_path):
    model = example_model("digits_cnn").eval()
    gradc.export(model, gradc.randn(64, 1, 8, 8), tmp_path, openmp=True)
    assert re.search(r"^\s*#pragma omp parallel for", (tmp_path / "model.c").read_text(), re.M)
    build(tmp_path, ("-fopenmp",))
    x = gradc.randn(64, 1, 8, 8)
    (got,) = run(tmp_path, [x.numpy()], [((64, 10), np.float32)])
    np.testing.assert_allclose(got, eager(model, x)[0], rtol=1e-5, atol=1e-5)


def _transformer_bits(x, w, b):
    h = F.gelu(x @ w + b, approximate="tanh")
    h = F.layer_norm(h, (h.shape[-1],))
    return F.softmax(h, dim=-1), F.log_softmax(h.sum(-1), dim=-1)


# Functions covering the portable kernels (matmul with transposes, broadcast and batched
# operands; argmax/argmin over one dim or all, keepdim, NaN) and the row templates.
CASES = {
    "matmul_2d_transposed": (lambda a, b: a @ b.t(), [(3, 5), (4, 5)]),
    "matmul_batched_broadcast": (lambda a, b: a @ b, [(2, 1, 3, 5), (4, 5, 2)]),
    "matmul_vector_rows": (lambda a, b: (a.unsqueeze(0) @ b).squeeze(0) * 2, [(7,), (7, 3)]),
    "matmul_permuted": (lambda a, b: a.permute(0, 2, 1) @ b, [(2, 5, 3), (2, 5, 4)]),
    "argmax_dim": (lambda a: (a.argmax(1), a.argmin(0, keepdim=True)), [(4, 6, 3)]),
    "argmax_all": (lambda a: (a.argmax(), (a * 2).argmin()), [(3, 5)]),
    "argmax_nan": (lambda a: (a / (a - a[0:1])).argmax(0), [(4, 3)]),
    "rows": (_transformer_bits, [(2, 3, 8), (8, 8), (8,)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_portable_kernels(tmp_path, case):
    fn, shapes = CASES[case]
    gradc.manual_seed(3)
    inputs = [gradc.randn(*s) for s in shapes]
    gradc.export(fn, inputs, tmp_path)
    build(tmp_path)
    want = eager(fn, *inputs)
    got = run(tmp_path, [t.numpy() for t in inputs], [(w.shape, w.dtype) for w in want])
    for g, w in zip(got, want):
        if w.dtype.kind == "i":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_unsupported_ops_are_all_listed_before_writing(tmp_path):
    def fn(x, idx):
        y = x.cumsum(0)
        z = y.gather(1, idx)
        return z.argsort(dim=1).float() + x.flip(0)[:, :2]

    out = tmp_path / "never"
    with pytest.raises(gradc.ExportError) as info:
        gradc.export(fn, (gradc.randn(3, 4), gradc.zeros(3, 2, dtype=gradc.int64)), out)
    message = str(info.value)
    for op in ("cumsum", "gather", "argsort", "flip"):
        assert op in message
    assert "test_export.py" in message  # the user's lines
    assert not out.exists()


def test_random_and_stateful_functions_are_refused(tmp_path):
    with pytest.raises(gradc.ExportError, match="random numbers"):
        gradc.export(lambda x: F.dropout(x, 0.5, training=True), gradc.randn(4, 4), tmp_path / "a")
    bn = nn.BatchNorm1d(4)
    with pytest.raises(gradc.ExportError, match="writes into"):  # a function: export cannot switch it to eval
        gradc.export(lambda x: F.batch_norm(x, bn.running_mean, bn.running_var, training=True),
                     gradc.randn(4, 4), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_dynamic_refused_when_the_batch_is_baked_in(tmp_path):
    def fn(x):
        return x.reshape(x.shape[0] % 1000, -1) * 2  # `%` leaves the symbolic sizes: the batch is baked in

    with pytest.raises(gradc.ExportError, match="dynamic=False"):
        gradc.export(fn, gradc.randn(4, 3), tmp_path, dynamic=True)
    gradc.export(fn, gradc.randn(4, 3), tmp_path)  # fixed shapes are fine


def test_bad_arguments():
    with pytest.raises(ValueError, match="weights"):
        gradc.export(lambda x: x * 2, gradc.randn(2), "unused", weights="inline")
    with pytest.raises(TypeError, match="example_inputs"):
        gradc.export(lambda x: x * 2, [np.zeros(2)], "unused")
    with pytest.raises(ValueError, match="batch"):
        gradc.export(lambda x: x * 2, gradc.randn(1, 3), "unused", dynamic=True)


def test_example_program_checks_its_input_size(tmp_path):
    gradc.export(lambda x: x.exp() + 1, gradc.randn(2, 3), tmp_path, weights="file")
    assert not (tmp_path / "weights.bin").exists()  # nothing to load: model_run needs no model_load
    build(tmp_path)
    pattern = subprocess.run(["./model"], cwd=tmp_path, capture_output=True, text=True)
    assert pattern.returncode == 0 and pattern.stdout.startswith("out0 float32 [2, 3]:")
    (tmp_path / "in.bin").write_bytes(b"\0" * 5)
    wrong = subprocess.run(["./model", "in.bin"], cwd=tmp_path, capture_output=True, text=True)
    assert wrong.returncode == 1 and "the inputs take 24" in wrong.stderr


def test_model_run_error_codes(tmp_path):
    gradc.export(nn.Linear(4, 2), gradc.randn(3, 4), tmp_path, dynamic=True)
    (tmp_path / "check.c").write_text(
        '#include <stdio.h>\n#include "model.h"\n'
        "int main(void)\n{\n    float x[8] = {0}, y[4];\n"
        "    if (model_run(0, x, y) != MODEL_EINVAL || model_run(2, NULL, y) != MODEL_EINVAL) return 1;\n"
        "    if (model_run(2, x, NULL) != MODEL_EINVAL || model_run(2, x, y) != MODEL_OK) return 2;\n"
        '    printf("%s", model_strerror(MODEL_EINVAL));\n    return 0;\n}\n')
    done = subprocess.run(["cc", "-O2", "-std=c99", "-Wall", "-Werror", "model.c", "check.c", "-lm", "-o", "check"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(["./check"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "batch size below 1" in done.stdout


def test_weights_file_is_checked(tmp_path):
    model = nn.Linear(3, 2)
    gradc.export(model, gradc.randn(2, 3), tmp_path, weights="file")
    build(tmp_path)
    x = gradc.randn(2, 3)
    (got,) = run(tmp_path, [x.numpy()], [((2, 2), np.float32)])
    np.testing.assert_allclose(got, eager(model.eval(), x)[0], rtol=1e-6, atol=1e-6)
    blob = (tmp_path / "weights.bin").read_bytes()
    magic, mark, version, payload, count = struct.unpack_from("<8sIIQQ", blob)
    assert (magic, mark, version, count) == (b"GRADCW1\0", 0x01020304, 1, 2)
    (tmp_path / "weights.bin").write_bytes(blob[:-4])  # truncated
    done = subprocess.run(["./model"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "cannot read the weights file" in done.stderr
    (tmp_path / "weights.bin").unlink()
    done = subprocess.run(["./model"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "model_load(weights.bin)" in done.stderr


def test_cli_export(tmp_path):
    script = tmp_path / "net.py"
    script.write_text("from gradc import nn\n\n"
                      "def build():\n"
                      "    return nn.Sequential(nn.Linear(8, 4), nn.Tanh())\n\n"
                      "if __name__ == '__main__':\n"
                      "    raise SystemExit('main code must not run')\n")
    gradc.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.Tanh())
    gradc.save(model.state_dict(), tmp_path / "state.safetensors")
    out = tmp_path / "c"
    done = subprocess.run([sys.executable, "-m", "gradc", "export", f"{script}:build", "--state",
                           str(tmp_path / "state.safetensors"), "--example", "randn(2, 8)", "-o", str(out),
                           "--dynamic"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "cc -O2 -std=c99" in done.stdout
    build(out)
    x = gradc.randn(3, 8)
    (got,) = run(out, [x.numpy()], [((3, 4), np.float32)])
    np.testing.assert_allclose(got, eager(model.eval(), x)[0], rtol=1e-5, atol=1e-6)
    missing = subprocess.run([sys.executable, "-m", "gradc", "export", f"{script}:nope", "--example", "randn(2)",
                              "-o", str(out)], capture_output=True, text=True)
    assert missing.returncode == 2 and "defines no 'nope'" in missing.stderr


def test_compiled_functions_and_modules_export_their_python(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    compiled_model = gradc.compile(model)

    @gradc.compile
    def fn(x):
        return (x * 2).exp()

    x = gradc.randn(2, 4)
    compiled_model(x), fn(x)  # compiled and cached: the export still captures the Python
    for i, f in enumerate((compiled_model, fn)):
        out = tmp_path / str(i)
        gradc.export(f, x, out)
        build(out)
        (got,) = run(out, [x.numpy()], [((2, 3 if i == 0 else 4), np.float32)])
        np.testing.assert_allclose(got, eager(model if i == 0 else fn.fn, x)[0], rtol=1e-5, atol=1e-6)


def test_index_lookups(tmp_path):
    def fn(w, i, j):
        return w[:, i] * 2, w[j]  # a 2-D index on dim 1 (negative entries count from the end), then dim 0

    w = gradc.randn(4, 6, 3)
    i = gradc.tensor([[0, -1], [5, 2], [-6, 3]])
    j = gradc.tensor([3, 0, -4])
    gradc.export(fn, (w, i, j), tmp_path)
    build(tmp_path)
    want = eager(fn, w, i, j)
    got = run(tmp_path, [w.numpy(), i.numpy(), j.numpy()], [(x.shape, x.dtype) for x in want])
    for g, x in zip(got, want):
        np.testing.assert_array_equal(g, x)
    (tmp_path / "in.bin").write_bytes(w.numpy().tobytes() + np.full(6, 6, np.int64).tobytes() + j.numpy().tobytes())
    done = subprocess.run(["./model", "in.bin", "out.bin"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "out of range" in done.stderr


def test_char_transformer(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        from char_transformer import CharTransformer
    finally:
        sys.path.remove(str(EXAMPLES))
    gradc.manual_seed(0)
    model = CharTransformer(vocab=40, context=16, dim=32, heads=4, layers=2)
    gradc.export(model, gradc.randint(0, 40, (2, 16)), tmp_path, dynamic=True)
    header = (tmp_path / "model.h").read_text()
    assert "in0   int64 [batch, 16]" in header and "out0  float32 [batch, 16, 40]" in header
    build(tmp_path)
    model.eval()
    for batch in (2, 5):
        idx = gradc.randint(0, 40, (batch, 16))
        (got,) = run(tmp_path, [idx.numpy()], [((batch, 16, 40), np.float32)])
        np.testing.assert_allclose(got, eager(model, idx)[0], rtol=1e-5, atol=1e-5)
    idx = idx.numpy().copy()
    idx[1, 7] = 40
    (tmp_path / "in.bin").write_bytes(idx.tobytes())
    done = subprocess.run(["./model", "in.bin"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "token id) is out of range" in done.stderr


def test_cli_export_reports_what_cannot_be_exported(tmp_path):
    script = tmp_path / "net.py"
    script.write_text("def f(x):\n    return x.cumsum(0).flip(0)\n")
    out = tmp_path / "c"
    done = subprocess.run([sys.executable, "-m", "gradc", "export", f"{script}:f", "--example", "randn(3,4)",
                           "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 1 and not out.exists()
    assert "gradc export: cannot export function f:" in done.stderr
    assert "'cumsum'" in done.stderr and "'flip'" in done.stderr and "net.py:2" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "gradc", "export", f"{script}:f", "--example", "[1, 2]",
                          "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode == 1 and "not a tensor" in bad.stderr
