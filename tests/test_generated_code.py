"""The generated C and CUDA read well: kernels are named after what they compute, and every
module opens with its interface (inputs, outputs, shapes, dtypes, dynamic sizes)."""
import re

import pytest

import gradc
import gradc.nn.functional as F
from gradc import nn


def softmax(x):
    e = (x - x.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def kernel_names(fn, *args) -> list[str]:
    return [k.name for k in gradc.explain(fn, *args).kernels]


def test_kernels_are_named_after_what_they_compute():
    x = gradc.randn(4, 16)
    assert kernel_names(softmax, x) == ["k0_softmax_row"]
    assert kernel_names(lambda a: F.softmax(a, dim=-1), x) == ["k0_softmax_row"]  # the row-wise template
    assert kernel_names(lambda a: (a * 2).sum(0), x) == ["k0_sum_dim0"]
    assert kernel_names(lambda a: (a * 2).sum(), x) == ["k0_sum"]
    with gradc.no_grad():
        ln, lin = nn.LayerNorm(16), nn.Linear(16, 8)
        assert kernel_names(ln, x)[0] == "k0_norm_row"  # mean, variance and normalisation in one pass
        assert kernel_names(lambda a: lin(a).relu(), x) == ["k0_matmul", "k1_add_relu"]


def test_kernel_names_are_short_unique_c_identifiers():
    lin = nn.Linear(16, 8)
    x, y = gradc.randn(4, 16), gradc.tensor([1, 2, 3, 0])
    names = kernel_names(lambda a: F.cross_entropy(lin(a).tanh() * 2 + 1, y), x)
    assert len(names) > 5
    for name in names:
        assert re.fullmatch(r"k\d+_[A-Za-z0-9_]*[A-Za-z0-9]", name) and len(name) <= 40, name
        assert not re.search(r"_(pointwise|reduction|rows|extern|template)_|_etc$", name), name
    per_graph = [name for name in names if name.startswith("k0_")]
    assert len(per_graph) == 2  # forward and backward each number their kernels from 0


HEADER_ROW = re.compile(r"^ \*   buf\[(\d+)\]\s+(.+?)\s{2,}(\[[^\]]*\])\s+(\w+)\s+node (\d+)", re.M)


def header_rows(source: str, title: str) -> list[tuple]:
    """(slot, role, shape, dtype, node) per row of the header's `title` table."""
    head = source[: source.index("*/")]
    start = head.index(f" * {title}:\n")
    end = head.find(" * Outputs:\n", start + 1) if title == "Inputs" else len(head)
    return HEADER_ROW.findall(head[start:end])


@pytest.mark.parametrize("backend", ["c", "cuda"])
def test_header_lists_every_input_and_output_of_a_training_step(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_DUMP_DIR", str(tmp_path))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def train_step(x, y):
        return F.mse_loss(model(x), y)

    gradc.compile(train_step, backend=backend)(gradc.randn(3, 4), gradc.randn(3, 2)).backward()
    suffix = ".cu" if backend == "cuda" else ".c"
    forward, backward = (p.read_text() for p in sorted(tmp_path.glob(f"*{suffix}")))

    ins = header_rows(forward, "Inputs")
    assert [(role, shape) for _, role, shape, _, _ in ins] == [
        ("arg 0 x", "[3, 4]"), ("arg 1 y", "[3, 2]"), ("parameter 0.weight", "[8, 4]"),
        ("parameter 0.bias", "[8]"), ("parameter 2.weight", "[2, 8]"), ("parameter 2.bias", "[2]")]
    assert [int(slot) for slot, *_ in ins] == list(range(6)) and {r[3] for r in ins} == {"float32"}
    outs = header_rows(forward, "Outputs")
    assert outs[0][1:4] == ("result 0", "[]", "float32")
    saved = [r for r in outs if r[1] == "saved for backward"]
    assert len(outs) == 1 + len(saved) and ("[3, 8]" in {r[2] for r in saved})  # the relu's output
    assert re.search(r" \* Temporaries: buf\[\d+\]\.\.buf\[\d+\]", forward)

    back_ins = header_rows(backward, "Inputs")
    assert back_ins[0][1:3] == ("output grad 0", "[]")
    # the backward reads what the forward saved, under the forward's node ids
    assert {r[4] for r in saved} <= {r[4] for r in back_ins if r[1].startswith("saved")}
    grads = header_rows(backward, "Outputs")
    assert [(role, shape) for _, role, shape, _, _ in grads] == [
        ("gradient 0", "[8, 4]"), ("gradient 1", "[8]"), ("gradient 2", "[2, 8]"), ("gradient 3", "[2]")]
    assert "train_step (backward): readable" in backward.splitlines()[0]


def test_header_names_dynamic_sizes_and_written_back_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADC_DUMP_DIR", str(tmp_path))

    def step(x, total):
        total.add_(x.sum(0))
        return x.tanh()

    gradc.compile(step)(gradc.randn(5, 3), gradc.zeros(3))
    gradc.compile(lambda x: (x * 2).tanh().sum(0), dynamic=True)(gradc.randn(5, 3))
    mutating, dynamic = (p.read_text() for p in sorted(tmp_path.glob("*.c")))
    ins = header_rows(mutating, "Inputs")
    assert [(r[1], r[2]) for r in ins] == [("arg 0 x", "[5, 3]"), ("arg 1 total", "[3]")]
    outs = header_rows(mutating, "Outputs")
    assert [r[1] for r in outs] == ["result 0", f"written into buf[{ins[1][0]}] (arg 1 total)"]
    assert [(r[1], r[2]) for r in header_rows(dynamic, "Inputs")] == [("arg 0 x", "[s0, s1]")]
    assert header_rows(dynamic, "Outputs")[0][1:3] == ("result 0", "[s1]")
    header = dynamic[: dynamic.index("*/")]
    assert " * Size s0 = dim 0 of buf[0] (arg 0 x)\n * Size s1 = dim 1 of buf[0] (arg 0 x)\n" in header
