"""The HTML report of dumped graphs (`gradc.compiler.report`): structure, escaping, and a
headless-Chromium screenshot of the digits MLP step's report where Chromium is installed."""
from __future__ import annotations

import dataclasses
import html
import importlib.util
import inspect
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import gradc
import gradc.nn.functional as F
from gradc import nn
from gradc.compiler import dump
from gradc.compiler.render_cuda import render_cuda
from gradc.compiler.report import _layout, highlight, render_html, write_html

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "report_screenshot.py"
MODEL = None  # the module `loss` trains, built by the `records` fixture


def loss(x, y):
    return F.cross_entropy(MODEL(x), y)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dump.GraphRecord]:
    """The forward and backward records of one compiled training step of a small MLP."""
    global MODEL
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADC_DUMP_DIR", str(tmp_path_factory.mktemp("dump")))
        mp.setenv("GRADC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("GRADC_DUMP_BACKEND", raising=False)
        gradc.compiler.reset()
        gradc.manual_seed(0)
        MODEL = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        gradc.compile(loss)(gradc.randn(8, 16), gradc.randint(0, 4, (8,))).backward()
        out = list(dump.records)
        gradc.compiler.reset()
    return out


@pytest.fixture(scope="module")
def page(records) -> str:
    return render_html(records)


def _articles(page: str) -> dict[str, str]:
    """Kernel section id -> its HTML."""
    return {m.group(1): m.group(0) for m in re.finditer(r'<article class="kernel" id="([^"]+)".*?</article>', page,
                                                        re.S)}


def test_records_are_a_training_step(records):
    assert [r.part for r in records] == ["forward", "backward"]


def test_a_picture_per_graph_with_every_node(records, page):
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == len(records)
    for r, svg in zip(records, svgs):
        heads = set(re.findall(r'<text [^>]*class="head">([^<]*)</text>', svg))
        assert heads == {f"{n} {d.get('role', 'input') if d['kind'] == 'input' else d['op']}"
                         for n, d in r.graph.nodes(data=True)}
        edges = svg[svg.index('<g class="edges">'):svg.index('<g class="nodes">')]
        assert edges.count("<path d=") == r.graph.number_of_edges()


def test_every_kernel_with_its_nodes_and_source(records, page):
    articles = _articles(page)
    assert len(articles) == sum(len(r.plan.kernels) for r in records)
    for r in records:
        for k in r.plan.kernels:
            article = articles[f"g{r.index}-{k.name}"]
            for n in k.nodes:
                assert f"<td>{n}</td><td>{r.graph.nodes[n]['op']}</td>" in article
            if k.kind == "extern":
                assert 'class="note"' in article
            else:
                assert '<span class="c-kw">' in article and '<span class="c-ty">' in article
                assert f'<span class="c-fn">{k.name}</span>' in article


def test_kernels_cite_the_users_python_line(records, page):
    line = inspect.getsourcelines(loss)[1] + 1
    cited = html.escape(f"test_report.py:{line}: return F.cross_entropy(MODEL(x), y)")
    articles = _articles(page)
    with_ops = [f"g{r.index}-{k.name}" for r in records[:1] for k in r.plan.kernels if k.nodes]
    assert with_ops and all(cited in articles[a] for a in with_ops)
    assert "<backward>" not in page  # lines the backward derivation made carry no code: left out


def test_hostile_names_are_escaped(records):
    forward = records[0]
    graph = forward.graph.copy()
    node = next(n for n, d in graph.nodes(data=True) if d["kind"] == "op")
    graph.nodes[node]["source"] = ("<evil>.py", 3, "x = '<img src=x onerror=alert(1)>'")
    hostile = dataclasses.replace(forward, function="<script>alert(1)</script>", graph=graph)
    page = render_html([hostile])
    assert "<script" not in page and "<img" not in page and "<evil>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_highlight_keeps_the_text_and_marks_tokens():
    code = ('#include "x.h"\nstatic inline float f(const float *restrict a) {  /* a < b && "q" */\n'
            '    return a[0] * 1.5e-3f + 0x1F;  // done <here>\n}\n')
    out = str(highlight(code))
    assert html.unescape(re.sub(r"<[^>]+>", "", out)) == code
    for cls, text in (("c-pre", '#include &#34;x.h&#34;'), ("c-kw", "static"), ("c-ty", "float"),
                      ("c-fn", "f"), ("c-num", "1.5e-3f"), ("c-num", "0x1F"),
                      ("c-com", "/* a &lt; b &amp;&amp; &#34;q&#34; */"), ("c-com", "// done &lt;here&gt;")):
        assert f'<span class="{cls}">{text}</span>' in out


def test_cuda_rendering_shown_when_dumped(records):
    forward = records[0]
    with_cuda = dataclasses.replace(forward, cuda_source=render_cuda(forward.graph, forward.plan, forward.function))
    page = render_html([with_cuda])
    assert "CUDA source" in page and '<span class="c-kw">__global__</span>' in page
    assert "The whole C program" in page and "The whole CUDA program" in page


def test_written_page_is_self_contained_and_deterministic(records, tmp_path):
    write_html(records, tmp_path / "a.html")
    write_html(records, tmp_path / "b.html")
    text = (tmp_path / "a.html").read_text()
    assert text == (tmp_path / "b.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|<img|\ssrc=|@import|url\(http", text)
    assert set(re.findall(r"https?://[^\s\"']+", text)) <= {"http://www.w3.org/2000/svg"}


def test_layout_boxes_do_not_overlap(records):
    for r in records:
        lay = _layout(r.graph)
        rows: dict[float, list] = {}
        for n in r.graph.nodes:
            rows.setdefault(lay.y[n], []).append((lay.x[n] - lay.width[n] / 2, lay.x[n] + lay.width[n] / 2))
        for boxes in rows.values():
            boxes.sort()
            assert all(a[1] < b[0] for a, b in zip(boxes, boxes[1:]))
        for a, b in r.graph.edges:
            assert lay.y[a] < lay.y[b]  # every edge points down


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _find_chromium() -> str | None:
    """The screenshot script's own search for a browser (it installs one; this test never does)."""
    spec = importlib.util.spec_from_file_location("report_screenshot", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.find_chromium()


@pytest.mark.skipif(_find_chromium() is None, reason="no Chromium on PATH (scripts/report_screenshot.py "
                    "installs it with apt-get when run as root; this test never installs)")
def test_screenshot_of_the_digits_mlp_report(tmp_path):
    shot = tmp_path / "report.png"
    done = subprocess.run([sys.executable, str(SCRIPT), str(shot)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert _png_size(shot) == (1400, 2000)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kilobytes
    page = shot.with_suffix(".html").read_text()
    assert page.count("<svg") == 2 and "k3_add_relu" in page
