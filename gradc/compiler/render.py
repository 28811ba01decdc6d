"""Render a schedule as one C translation unit (templates in `gradc.templates`, c/*.j2).

A kernel whose code equals an earlier one's (the same layer repeated) is not written
again: its call runs the earlier function, commented with its own name.

Every kernel is a loop nest over its iteration space with int64 indices. Buffers are
indexed through their real strides (0 on broadcast dims), so broadcasting and views of
inputs need no copies. Adjacent loops that every access walks contiguously are merged,
so a contiguous elementwise chain is a single loop. The outermost loop gets an OpenMP
`parallel for` when the kernel is big enough to pay for the threads. Comments name the
graph node and the user's source line each value comes from; text from the user is
sanitized before it reaches the source.
"""
from __future__ import annotations

import importlib.resources
import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import jinja2
import networkx as nx

from .._version import __version__
from ..ops.conv import blocks
from ..size import contiguous_strides
from .cexpr import ctype, limits, node_expression
from .constants import POSITIONAL
from .schedule import Kernel, Plan
from .symbolic import Sym, same

PARALLEL_MIN_ELEMENTS = 1 << 16
ROW_TILE = 1024  # accumulators per row tile of a reduction over leading dims (8 KiB of doubles)
PARALLEL_TILES, MIN_TILE = 4, 64  # a parallel one splits its row into at least 4 tiles of >= 64
SUM_BLOCK = 128  # softmax sums this many terms per lane-wise block before adding it in double
ROW_CHUNK_ELEMENTS, MIN_ROW_CHUNKS = 1 << 14, 32  # a softmax chunk: ~16K elements' rows, but >= 32 chunks
_GROUPS = ("outer", "inner", "row")  # loop groups, outermost first
_SYMBOL = re.compile(r"\bs(\d+)\b")
_UNSAFE = re.compile(r"[^\x20-\x7e]|\*/|/\*|\?\?")


def _one(x: int) -> bool:
    """Known to be 1 at every size (a symbolic size never is: dynamic dims are >= 2)."""
    return not isinstance(x, Sym) and x == 1


def _zero(x: int) -> bool:
    return not isinstance(x, Sym) and x == 0


def _above_one(x: int) -> bool:
    return isinstance(x, Sym) or x > 1


def _pragma(parallel: str, simd: bool, clause: str = "") -> str:
    """An OpenMP pragma; `parallel` is "" (no threads), "always" or an `if(...)` clause."""
    words = (["parallel for"] if parallel else []) + (["simd"] if simd else []) + ([clause] if clause else [])
    return "#pragma omp " + " ".join(words + ([parallel] if parallel.startswith("if(") else []))


def sanitize(text: str, limit: int = 100) -> str:
    """User text made safe for a C comment: printable ASCII, no comment delimiters."""
    text = _UNSAFE.sub("?", str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resource_dir(package: str, folder: str) -> Path:
    """A shipped data folder (`gradc.templates` or `gradc.runtime`); in a source checkout
    installed before those packages existed, the folder next to the gradc package."""
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / folder


@cache
def _environment(backend: str = "c") -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resource_dir("gradc.templates", "templates") / backend))
    return jinja2.Environment(loader=loader, trim_blocks=True, lstrip_blocks=True, autoescape=False,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)



def _where(d: dict) -> str:
    src = d.get("source")
    if not src:
        return ""
    file, line, code = src
    return sanitize(f"  [{os.path.basename(file)}:{line}: {code}]")


def buffer_geometry(g: nx.DiGraph, plan: Plan, n: int) -> tuple:
    """(buffer slot, element offset, strides) where node `n`'s value lives: inputs and views
    of them through their real strides, computed values contiguous."""
    d = g.nodes[n]
    if d["kind"] == "view":
        return plan.buffers[d["root"]].slot, d["offset"], list(d["strides"])
    if d["kind"] == "input":
        return plan.buffers[n].slot, 0, list(d["strides"])
    return plan.buffers[n].slot, 0, contiguous_strides(d["shape"])


def _with_sizes(params: list, arguments: list, lines: list, restrict: str = "restrict") -> None:
    """Add the dynamic sizes a kernel body uses (s0, s1, ...) as a parameter and locals."""
    symbols = sorted({int(m) for m in _SYMBOL.findall("\n".join(lines))})
    if symbols:  # sizes of dynamic dims, read once per call
        params.append(f"const int64_t *{restrict} sz")
        arguments.append("sz")
        lines[:0] = [f"    const int64_t s{i} = sz[{i}];" for i in symbols]


def _window_context(g: nx.DiGraph, d: dict, operand: int, strides: list) -> tuple[dict, str]:
    """unfold / fold: the image geometry and the window attributes."""
    a = d["attrs"]
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = a["kernel_size"], a["dilation"], a["padding"], a["stride"]
    image = d["shape"] if d["op"] == "fold" else g.nodes[operand]["shape"]
    n, c, h, w = image
    oh, ow = blocks(h, kh, dh, ph, sh), blocks(w, kw, dw, pw, sw)
    context = dict(n=n, c=c, h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw, dh=dh, dw=dw, ph=ph, pw=pw, sh=sh, sw=sw,
                   xs=strides)
    return context, f"{d['op']} over image {list(image)}, kernel {kh}x{kw}"


def _rows_context(g: nx.DiGraph, d: dict, operand: int, strides: list) -> tuple[dict, str]:
    """softmax / log_softmax: rows along `dim`, the other dims flattened in C order."""
    shape = tuple(d["shape"])
    dim = d["attrs"]["dim"] % len(shape) if shape else 0
    out_strides = contiguous_strides(shape)
    outer, after = [], 1
    for i in reversed([i for i in range(len(shape)) if i != dim]):
        outer.append({"size": shape[i], "after": after, "xs": strides[i], "ys": out_strides[i]})
        after = after * shape[i]
    work = d["dtype"]
    floats = work.name == "float32"
    context = dict(rows=after, length=shape[dim] if shape else 1, outer=outer[::-1],
                   xl=strides[dim] if shape else 0, yl=out_strides[dim] if shape else 0,
                   log=d["op"] == "log_softmax", exp="gradc_expf_nonpositive" if floats else "exp",
                   log_fn="logf" if floats else "log", block=SUM_BLOCK, chunk_elements=ROW_CHUNK_ELEMENTS,
                   min_chunks=MIN_ROW_CHUNKS)
    return context, f"{d['op']} over shape {list(shape)}, rows along dim {dim}"


_TEMPLATE_CONTEXTS = {"unfold": _window_context, "fold": _window_context, "softmax": _rows_context,
                      "log_softmax": _rows_context}


_BUFFER = re.compile(r"\bb(\d+)\b")
_LOCAL = re.compile(r"\bv(\d+)\b")
_COMMENT = re.compile(r"/\*.*?\*/")


def _code_key(params: list, lines: list) -> tuple:
    """A kernel's code with comments dropped, buffers named by parameter position and
    locals by first use: two kernels with equal keys compute the same function of their
    arguments."""
    buffers: dict = {}
    for p in params:
        m = _BUFFER.search(p.rsplit(" ", 1)[-1])
        if m:
            buffers.setdefault(m.group(1), len(buffers))
    locals_: dict = {}

    def rename(text: str) -> str:
        text = _BUFFER.sub(lambda m: f"b#{buffers.get(m.group(1), m.group(1))}", _COMMENT.sub("", text))
        return _LOCAL.sub(lambda m: f"v#{locals_.setdefault(m.group(1), len(locals_))}", text)

    return tuple(map(rename, params)), tuple(map(rename, lines))


def _template_kernel(g: nx.DiGraph, plan: Plan, k: Kernel) -> dict:
    """A template kernel (an op with a hand-written C loop nest, `templates/c/<op>.c.j2`):
    its one operand is read through its real geometry (and converted to the result's
    type), its result written contiguously."""
    n = k.roots[0]
    d = g.nodes[n]
    operand = d["args"][0][1]
    slot, base, strides = buffer_geometry(g, plan, operand)
    out_slot = plan.buffers[n].slot
    t, t_in = ctype(d["dtype"]), ctype(g.nodes[operand]["dtype"])
    context, summary = _TEMPLATE_CONTEXTS[d["op"]](g, d, operand, strides)
    template = "softmax.c.j2" if d["op"] == "log_softmax" else f"{d['op']}.c.j2"
    body = _environment().get_template(template).render(t=t, base=base, parallel_min=PARALLEL_MIN_ELEMENTS,
                                                        **context)
    lines = ["    " + line if line else line for line in body.rstrip("\n").split("\n")]
    params = [f"const {t_in} *restrict x", f"{t} *restrict out"]
    arguments = [f"(const {t_in} *)buf[{slot}]", f"({t} *)buf[{out_slot}]"]
    _with_sizes(params, arguments, lines)
    comments = [f"node {n}: {d['op']}{_where(d)}"]
    source = _environment().get_template("kernel.c.j2").render(
        name=k.name, summary=summary, comments=comments, params=params, body=lines)
    return {"source": source, "call": f"{k.name}({', '.join(arguments)});", "code": _code_key(params, lines)}


def _kernel(g: nx.DiGraph, plan: Plan, k: Kernel) -> dict:
    if k.kind == "template":
        return _template_kernel(g, plan, k)
    return (_RowsWriter if k.kind == "rows" else _KernelWriter)(g, plan, k).write()


class _KernelWriter:
    def __init__(self, g: nx.DiGraph, plan: Plan, kernel: Kernel):
        self.g, self.plan, self.k = g, plan, kernel
        self.params: dict[int, str] = {}  # slot -> parameter declaration
        self.accesses: list = []  # (key, slot, base, strides over the space)

    def _access(self, n: int) -> tuple:
        slot, base, strides = buffer_geometry(self.g, self.plan, n)
        return slot, base, self._broadcast(self.g.nodes[n]["shape"], strides)

    def _broadcast(self, shape: tuple, strides: list) -> list:
        """Strides of a value of `shape` over the kernel's iteration space (0 where broadcast)."""
        space = self.k.space
        return [0] * (len(space) - len(shape)) + [0 if _one(s) else st for s, st in zip(shape, strides)]

    def _loops(self, vectors: list) -> list:
        """[size, group, [stride per access]] per loop, outermost first, merged where possible.

        Groups: "outer" (kept dims), "inner" (reduced dims) and "row": a reduction's kept
        dims after its last reduced dim. Those are the contiguous ones, so they become the
        innermost loop over a row of accumulators (see `_reduction_by_rows`) rather than
        outer loops above a strided walk of the reduced dims."""
        space, reduced = self.k.space, set(self.k.reduce_dims)
        last = max((d for d in reduced if _above_one(space[d])), default=len(space))
        kept = [i for i in range(len(space)) if i not in reduced]
        order = ([(d, "outer") for d in kept if d < last] + [(d, "inner") for d in sorted(reduced)]
                 + [(d, "row") for d in kept if d > last])
        loops = []
        for dim, group in order:
            if _one(space[dim]):
                continue
            strides = [v[dim] for v in vectors]
            if loops and loops[-1][1] == group and all(
                    same(a, b * space[dim]) for a, b in zip(loops[-1][2], strides)):
                loops[-1][0] *= space[dim]
                loops[-1][2] = strides
            else:
                loops.append([space[dim], group, strides])
        rows = [loop for loop in loops if loop[1] == "row"]
        for loop in rows[:-1]:  # only one row loop: the others (kept dims) move outside
            loop[1] = "outer"
        return sorted(loops, key=lambda loop: _GROUPS.index(loop[1]))  # stable: keeps nesting order

    def write(self) -> dict:
        g, k = self.g, self.k
        loads = [self._access(n) for n in k.loads]
        stores = []
        if k.kind == "pointwise":
            stores = [(self.plan.buffers[r].slot, 0, contiguous_strides(k.space)) for r in k.roots]
        else:
            kept = [i for i in range(len(k.space)) if i not in k.reduce_dims]
            inner = contiguous_strides(tuple(k.space[i] for i in kept))
            vec = [0] * len(k.space)
            for i, st in zip(kept, inner):
                vec[i] = st
            stores = [(self.plan.buffers[k.roots[0]].slot, 0, vec)]
        positional = [n for n in k.nodes if g.nodes[n]["op"] in POSITIONAL]
        first_position = len(loads) + len(stores)
        positions = [self._broadcast(g.nodes[n]["shape"], contiguous_strides(g.nodes[n]["shape"])) for n in positional]
        loops = self._loops([v for _, _, v in loads + stores] + positions)
        var = [f"i{j}" for j in range(len(loops))]

        def offset(base: int, which: int) -> str:
            terms = [f"{var[j]} * {loop[2][which]}" if not _one(loop[2][which]) else var[j]
                     for j, loop in enumerate(loops) if not _zero(loop[2][which])]
            return " + ".join(([str(base)] if not _zero(base) else []) + terms) or "0"

        for slot, _, _ in loads:
            node = next(n for n in k.loads if self._slot(n) == slot)
            self.params.setdefault(slot, f"const {ctype(self._dtype(node))} *restrict b{slot}")
        for slot, _, _ in stores:
            self.params[slot] = f"{ctype(self.plan.buffers[self._root_of(slot)].dtype)} *restrict b{slot}"

        body_values = []
        for idx, n in enumerate(k.loads):
            slot, base, _ = loads[idx]
            body_values.append(f"const {ctype(self._dtype(n))} v{n} = b{slot}[{offset(base, idx)}];")
        compute_nodes = k.nodes if k.kind == "pointwise" else k.nodes[:-1]
        for n in compute_nodes:
            d = g.nodes[n]
            position = offset(0, first_position + positional.index(n)) if n in positional else ""
            expr = node_expression(d, lambda ref: f"v{ref}", position)
            body_values.append(f"const {ctype(d['dtype'])} v{n} = {expr};")

        lines, depth = [], 1
        total = 1
        for s in k.space:
            total *= s
        # with symbolic sizes the thread count is decided at run time (an OpenMP `if` clause)
        parallel = f"if({total} >= {PARALLEL_MIN_ELEMENTS})" if isinstance(total, Sym) else \
            "always" if total >= PARALLEL_MIN_ELEMENTS else ""

        def emit(text: str) -> None:
            lines.append("    " * depth + text)

        def open_block(header: str) -> None:
            nonlocal depth
            emit(header)
            depth += 1

        def open_loop(j: int, start: str = "0", simd: bool = False, clause: str = "") -> None:
            threads = j == 0 and loops[0][1] == "outer" and _above_one(loops[0][0]) and parallel
            if threads or simd:
                emit(_pragma(parallel if threads else "", simd, clause))
            end = loops[j][0] if start == "0" else "tile_end"
            open_block(f"for (int64_t {var[j]} = {start}; {var[j]} < {end}; ++{var[j]}) {{")

        def close_loop() -> None:
            nonlocal depth
            depth -= 1
            emit("}")

        n_outer = sum(1 for loop in loops if loop[1] == "outer")
        if k.kind == "pointwise":
            # iterations are independent (outputs are written once each, inputs only read)
            for j in range(n_outer):
                open_loop(j, simd=j == n_outer - 1)
            lines.extend("    " * depth + line for line in body_values)
            for idx, (slot, base, _) in enumerate(stores):
                root = k.roots[idx]
                emit(f"b{slot}[{offset(base, len(loads) + idx)}] = v{root};  /* output: node {root} */")
        else:
            r = k.roots[0]
            d = g.nodes[r]
            operand = d["args"][0][1]
            for j in range(n_outer):
                open_loop(j)
            slot, base, _ = stores[0]
            store = f"b{slot}[{offset(base, len(loads))}] = ({ctype(d['dtype'])})"
            if loops and loops[-1][1] == "row":
                self._reduction_by_rows(loops, var, n_outer, d, operand, body_values, store,
                                        (emit, open_block, open_loop, close_loop), parallel if n_outer == 0 else "")
            else:
                acc_t, init, combine = self._accumulator(d, operand, "acc")
                emit(f"{acc_t} acc = {init};")
                # a sum or product may combine in any order (lanes of a vector); max/min keep the
                # sequential form, whose NaN test a vector reduction would not honour
                clause = {"sum": "reduction(+:acc)", "prod": "reduction(*:acc)"}.get(d["op"], "")
                for j in range(n_outer, len(loops)):
                    last = j == len(loops) - 1 and bool(clause)
                    open_loop(j, simd=last, clause=clause if last else "")
                lines.extend("    " * depth + line for line in body_values)
                emit(combine)
                for _ in range(n_outer, len(loops)):
                    close_loop()
                emit(f"{store}acc;  /* node {r}: {d['op']} */")
        for _ in range(n_outer):
            close_loop()
        summary = (f"{k.kind} over shape {list(k.space)}" +
                   (f", reducing dims {list(k.reduce_dims)}" if k.reduce_dims else ""))
        return self._function(summary, lines)

    def _function(self, summary: str, lines: list) -> dict:
        """The kernel's C function (parameters: the buffers it touches, by slot, then the
        dynamic sizes it uses), its call from the segment, and its code key."""
        g, k = self.g, self.k
        comments = [f"node {n}: {g.nodes[n]['op']}{_where(g.nodes[n])}" for n in k.nodes]
        params = [self.params[s] for s in sorted(self.params)]
        arguments = [f"({p.rsplit(' *restrict', 1)[0]} *)buf[{s}]" for s, p in sorted(self.params.items())]
        _with_sizes(params, arguments, lines)
        source = _environment().get_template("kernel.c.j2").render(
            name=k.name, summary=summary, comments=comments, params=params, body=lines)
        return {"source": source, "call": f"{k.name}({', '.join(arguments)});", "code": _code_key(params, lines)}

    def _slot(self, n: int) -> int:
        d = self.g.nodes[n]
        return self.plan.buffers[d["root"] if d["kind"] == "view" else n].slot

    def _dtype(self, n: int):
        return self.g.nodes[n]["dtype"]

    def _root_of(self, slot: int) -> int:
        return next(n for n, b in self.plan.buffers.items() if b.slot == slot)

    def _reduction_by_rows(self, loops, var, n_outer, d, operand, body_values, store, writer, parallel) -> None:
        """A reduction whose innermost dims are kept: tiles of ROW_TILE accumulators, one per
        output along the row loop; the reduced loops run outside the row loop, so every pass
        reads a contiguous stretch of memory (and vectorises), and each output still
        combines its values in the same order as the one-accumulator form. Tiles are the
        parallel loop: a large one is cut into several (a bias gradient's 1024 columns
        into 4 tiles of 256), or it would run on one thread."""
        emit, open_block, open_loop, close_loop = writer
        width, row = loops[-1][0], var[-1]
        tile = ROW_TILE if isinstance(width, Sym) else min(ROW_TILE, width)
        if parallel and not isinstance(width, Sym) and width >= PARALLEL_TILES * MIN_TILE:
            tile = min(tile, -(-width // (PARALLEL_TILES * 16)) * 16)  # enough tiles for the threads
        acc_t, init, combine = self._accumulator(d, operand, f"acc[{row} - tile]")
        if parallel and (isinstance(width, Sym) or width > tile):
            emit(_pragma(parallel, False))
        open_block(f"for (int64_t tile = 0; tile < {width}; tile += {tile}) {{  /* a tile of the output row */")
        emit(f"const int64_t tile_end = tile + {tile} < {width} ? tile + {tile} : {width};")
        emit(f"{acc_t} acc[{tile}];")
        emit(f"for (int64_t {row} = tile; {row} < tile_end; ++{row}) acc[{row} - tile] = {init};")
        inner = range(n_outer, len(loops) - 1)
        for j in inner:
            open_loop(j)
        open_loop(len(loops) - 1, start="tile", simd=True)  # outputs are independent
        for line in body_values:
            emit(line)
        emit(combine)
        close_loop()
        for _ in inner:
            close_loop()
        open_block(f"for (int64_t {row} = tile; {row} < tile_end; ++{row}) {{")
        emit(f"{store}acc[{row} - tile];  /* node {self.k.roots[0]}: {d['op']} */")
        close_loop()
        close_loop()

    def _accumulator(self, d: dict, operand: int, acc: str) -> tuple[str, str, str]:
        """The accumulator's C type, initial value and combining statement (on `acc`)."""
        out = d["dtype"]
        op = d["op"]
        value = f"v{operand}"
        if op in ("sum", "prod"):
            acc_t = "double" if out.is_floating_point else "int64_t"
            init = "0" if op == "sum" else "1"
            sign = "+=" if op == "sum" else "*="
            return acc_t, init, f"{acc} {sign} ({acc_t}){value};"
        acc_t = ctype(out)
        lo, hi = limits(out)
        better = ">" if op == "amax" else "<"
        return acc_t, (lo if op == "amax" else hi), \
            f"if ({value} != {value} || {value} {better} {acc}) {acc} = {value};  /* NaN propagates */"


class _RowsWriter(_KernelWriter):
    """A "rows" kernel (see `schedule._fuse_rows`): loops over the rows (every dim of the
    space but the last), and inside each row runs its stages in order: a reduction over
    the row into one accumulator, a pointwise pass over the row, or a pointwise step on
    one value per row. Index variables: r0, r1, ... for the row dims, l along the row."""

    def write(self) -> dict:
        k = self.k
        rows = [d for d in range(len(k.space) - 1) if not _one(k.space[d])]
        total = 1
        for s in k.space:
            total *= s
        parallel = f"if({total} >= {PARALLEL_MIN_ELEMENTS})" if isinstance(total, Sym) else \
            "always" if total >= PARALLEL_MIN_ELEMENTS else ""
        lines, depth = [], 1

        def emit(text: str) -> None:
            lines.append("    " * depth + text)

        def offset(base, vec: list) -> str:
            names = [f"r{d}" for d in range(len(k.space) - 1)] + ["l"]
            terms = [name if _one(st) else f"{name} * {st}" for name, st in zip(names, vec) if not _zero(st)]
            return " + ".join(([str(base)] if not _zero(base) else []) + terms) or "0"

        if rows and parallel:
            clause = f"collapse({len(rows)})" if len(rows) > 1 else ""
            emit(_pragma(parallel, False, clause))
        for d in rows:
            emit(f"for (int64_t r{d} = 0; r{d} < {k.space[d]}; ++r{d}) {{")
            depth += 1
        for stage in k.stages:
            lines.extend("    " * depth + line for line in self._stage(stage, offset))
        for _ in rows:
            depth -= 1
            emit("}")
        return self._function(f"{len(k.stages)} stages fused per row of shape {list(k.space)} (rows over all "
                              "dims but the last)", lines)

    def _stage(self, stage: Kernel, offset) -> list[str]:
        """One stage's lines, indented relative to the row loops."""
        g = self.g
        out: list = []
        loads = [(n, *self._access(n)) for n in stage.loads]
        for n, slot, _, _ in loads:
            self.params.setdefault(slot, f"const {ctype(self._dtype(n))} *restrict b{slot}")
        values = [f"const {ctype(self._dtype(n))} v{n} = b{slot}[{offset(base, vec)}];" for n, slot, base, vec in loads]
        compute = stage.nodes if stage.kind == "pointwise" else stage.nodes[:-1]
        for n in compute:
            d = g.nodes[n]
            shape = d["shape"]
            position = offset(0, self._broadcast(shape, contiguous_strides(shape))) if d["op"] in POSITIONAL else ""
            values.append(f"const {ctype(d['dtype'])} v{n} = {node_expression(d, lambda ref: f'v{ref}', position)};")
        along = not (stage.kind == "pointwise" and not isinstance(stage.space[-1], Sym) and stage.space[-1] == 1)
        length = self.k.space[-1]
        if stage.kind == "reduction":
            r = stage.roots[0]
            d = g.nodes[r]
            slot = self.plan.buffers[r].slot
            self.params[slot] = f"{ctype(d['dtype'])} *restrict b{slot}"
            kept = tuple(d["shape"]) if len(d["shape"]) == len(self.k.space) else tuple(d["shape"]) + (1,)
            store_vec = self._broadcast(kept, contiguous_strides(kept))
            acc_t, init, combine = self._accumulator(d, d["args"][0][1], f"acc{r}")
            clause = {"sum": f"reduction(+:acc{r})", "prod": f"reduction(*:acc{r})"}.get(d["op"], "")
            out.append("{")
            out.append(f"    {acc_t} acc{r} = {init};")
            if clause:
                out.append(f"    {_pragma('', True, clause)}")
            out.append(f"    for (int64_t l = 0; l < {length}; ++l) {{")
            out += ["        " + v for v in values] + ["        " + combine, "    }"]
            out.append(f"    b{slot}[{offset(0, store_vec)}] = ({ctype(d['dtype'])})acc{r};  /* node {r}: {d['op']} */")
            out.append("}")
        else:
            stores = []
            for r in stage.roots:
                slot = self.plan.buffers[r].slot
                self.params[slot] = f"{ctype(self.plan.buffers[r].dtype)} *restrict b{slot}"
                vec = self._broadcast(stage.space, contiguous_strides(stage.space))
                stores.append(f"b{slot}[{offset(0, vec)}] = v{r};  /* output: node {r} */")
            if along:
                out.append(_pragma("", True))
                out.append(f"for (int64_t l = 0; l < {length}; ++l) {{")
                out += ["    " + v for v in values + stores] + ["}"]
            else:
                out += ["{"] + ["    " + v for v in values + stores] + ["}"]
        return out


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"  # a symbolic size prints as its name (s0)


def _input_roles(g: nx.DiGraph) -> dict:
    """Input node -> what it is to the caller: `arg i` (call order), `output grad i` and
    `saved` (a training backward's inputs), `parameter`, `seed` or `constant`, then the
    Python name where the capture knew it (`arg 0 x`, `parameter 0.weight`)."""
    roles = {}
    inputs, n_grads = g.graph["inputs"], g.graph.get("n_grad_inputs", 0)
    for i, n in enumerate(inputs):
        roles[n] = f"output grad {i}" if i < n_grads else "saved" if n_grads else f"arg {i}"
    for group, word in (("externals", "parameter"), ("seeds", "seed"), ("constants", "constant")):
        roles.update((n, word) for n in g.graph[group])
    names = g.graph.get("names", {})
    return {n: f"{role} {names[n]}" if n in names else role for n, role in roles.items()}


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def module_header(g: nx.DiGraph, plan: Plan) -> list[str]:
    """The interface of a generated module, for its top comment (shared by the C and the CUDA
    module): every input and output buffer with its slot, what it is to the caller, shape,
    dtype and graph node, the temporaries' slots, and where each dynamic size comes from.
    Outputs are the function's results (a training backward's: the gradients), values a
    training forward saves for its backward, and values written back into mutated inputs.
    Every line is sanitized text without a trailing blank."""
    roles = _input_roles(g)
    ins = [[f"buf[{plan.buffers[n].slot}]", roles[n], _shape_text(g.nodes[n]["shape"]), g.nodes[n]["dtype"].name,
            f"node {n}"] for n in roles]
    outputs, mutations = g.graph["outputs"], g.graph["mutations"]
    n_results, backward = g.graph["n_results"], g.graph.get("n_grad_inputs", 0) > 0
    written = {value: target for target, value in mutations}
    outs = []
    for i, n in enumerate(outputs):
        if i >= len(outputs) - len(mutations) and n in written:
            target = written[n]
            role = f"written into buf[{plan.buffers[target].slot}] ({roles[target]})"
        elif i < n_results:
            role = f"{'gradient' if backward else 'result'} {i}"
        else:
            role = "saved for backward"
        d = g.nodes[n]
        outs.append([f"buf[{plan.buffers[n].slot}]", role, _shape_text(d["shape"]), d["dtype"].name,
                     f"node {n}: {d['op']}"])
    table = _aligned(ins + outs)  # one set of columns for both
    lines = ["Inputs:"] + table[:len(ins)] + ["Outputs:"] + table[len(ins):]
    temps = sorted(b.slot for b in plan.buffers.values() if b.role == "temp")
    if temps:
        lines.append(f"Temporaries: buf[{temps[0]}]..buf[{temps[-1]}] ({len(temps)}, values kernels pass on)"
                     if len(temps) > 1 else f"Temporary: buf[{temps[0]}] (a value kernels pass on)")
    for k, (n, dim) in enumerate(g.graph["symbols"]):
        lines.append(f"Size s{k} = dim {dim} of buf[{plan.buffers[n].slot}] ({roles[n]})")
    return [sanitize(line, 200) for line in lines]


def entry_points(plan: Plan) -> list[str]:
    """The C entry functions of a plan, one per segment of C kernels, in run order."""
    return [f"gradc_segment_{i}" for i, step in enumerate(s for s in plan.steps() if isinstance(s, list))]


def _extern_note(g: nx.DiGraph, plan: Plan, k: Kernel) -> str:
    n = k.roots[0]
    d = g.nodes[n]
    reads = ", ".join(f"node {m}" for m in k.loads)
    return sanitize(f"node {n}: {d['op']}({reads}) -> buf[{plan.buffers[n].slot}]", 200) + _where(d)


def kernel_source(g: nx.DiGraph, plan: Plan, k: Kernel) -> str:
    """One step's text for reports: a C kernel's function, or an extern step's note."""
    if k.kind == "extern":
        return _extern_note(g, plan, k)
    return _kernel(g, plan, k)["source"].rstrip("\n")


def unique_kernels(kernels: list, written: dict, sources: list, write: Callable) -> list[tuple[str, dict]]:
    """(name of the function to call, `write(k)`) per kernel, in order; each kernel's source
    is appended to `sources` unless `written` (code key -> kernel name) holds an earlier
    one with the same code (a repeated layer), whose function the call then runs. Shared
    by the C and CUDA renderers."""
    out = []
    for k in kernels:
        written_k = write(k)
        twin = written.setdefault(written_k["code"], k.name)
        if twin == k.name:
            sources.append(written_k["source"].rstrip("\n"))
        out.append((twin, written_k))
    return out


def kernel_calls(g: nx.DiGraph, plan: Plan, step: list, written: dict, kernels: list,
                 write: Callable = _kernel) -> list[str]:
    """The C calls of one segment's kernels (see `unique_kernels`); a call of an earlier
    twin is commented with the kernel's own name."""
    return [out["call"] if twin == k.name else twin + out["call"][len(k.name):] + f"  /* {k.name} */"
            for k, (twin, out) in zip(step, unique_kernels(step, written, kernels, lambda k: write(g, plan, k)))]


def render(g: nx.DiGraph, plan: Plan, function_name: str) -> str:
    """The C source of a whole plan, opening with its interface (`module_header`); raises
    GraphBreak if a node cannot be lowered."""
    kernels, steps = [], []
    names = iter(entry_points(plan))
    written: dict[tuple, str] = {}  # (parameters, body) -> the kernel that has that code
    for step in plan.steps():
        if isinstance(step, Kernel):
            steps.append({"extern": _extern_note(g, plan, step), "name": step.name})
            continue
        steps.append({"extern": "", "name": next(names), "calls": kernel_calls(g, plan, step, written, kernels)})
    return _environment().get_template("module.c.j2").render(
        version=__version__, function=sanitize(function_name), n_nodes=g.number_of_nodes(),
        header=module_header(g, plan), kernels=kernels, steps=steps, n_externs=sum(bool(s["extern"]) for s in steps))
