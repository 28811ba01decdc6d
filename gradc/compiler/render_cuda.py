"""Render a schedule as one CUDA translation unit (templates in `gradc.templates`, cuda/*.j2).

The same plan the C backend renders (`schedule`), the same C expressions per node
(`cexpr`) and the same runtime helpers (`gradc_cuda.h` includes `gradc_runtime.h`), laid
out for a GPU:
- pointwise kernels: one thread per element of the iteration space (a grid-stride loop),
  the element's index split into per-dim indices, each buffer read through its strides;
- reductions: one block per output element, each thread accumulating a strided share
  of the reduced elements, combined by a warp-shuffle block reduction;
- fused row kernels: one block per row; each stage is a block reduction or a
  block-strided pass over the row, separated by barriers;
- template kernels (unfold, fold, softmax) from their own CUDA templates.
Extern steps (matmul, ...) are launches of the array library between kernels. Every
kernel comment names its graph nodes, source lines and launch grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from .._version import __version__
from ..size import contiguous_strides
from .cexpr import ctype, limits, node_expression
from .constants import POSITIONAL
from .render import (
    _TEMPLATE_CONTEXTS,
    _code_key,
    _environment,
    _extern_note,
    _one,
    _where,
    _with_sizes,
    _zero,
    buffer_geometry,
    module_header,
    sanitize,
    unique_kernels,
)
from .schedule import Kernel, Plan

THREADS = 256
VECTOR = 4  # elements per thread in vectorised pointwise loops (16 bytes of float32)
MAX_BLOCKS = 65535  # grid-stride loops cover the rest
_REDUCERS = {"sum": "gradc_add", "prod": "gradc_mul", "amax": "gradc_amax", "amin": "gradc_amin"}


def _product(values) -> object:
    total = 1
    for v in values:
        total = total * v
    return total


class _CudaWriter:
    def __init__(self, g: nx.DiGraph, plan: Plan, k: Kernel):
        self.g, self.plan, self.k = g, plan, k
        self.params: dict[int, str] = {}

    # -------------------------------------------------------------- shared pieces
    def _load_param(self, n: int) -> int:
        slot, _, _ = buffer_geometry(self.g, self.plan, n)
        self.params.setdefault(slot, f"const {ctype(self.g.nodes[n]['dtype'])} *__restrict__ b{slot}")
        return slot

    def _store_param(self, n: int) -> int:
        slot = self.plan.buffers[n].slot
        self.params[slot] = f"{ctype(self.plan.buffers[n].dtype)} *__restrict__ b{slot}"
        return slot

    def _vector(self, shape: tuple, strides: list) -> list:
        """Strides of a value over the kernel's space (0 where broadcast)."""
        space = self.k.space
        return [0] * (len(space) - len(shape)) + [0 if _one(s) else st for s, st in zip(shape, strides)]

    @staticmethod
    def _offset(base, vec: list, names: list) -> str:
        terms = [name if _one(st) else f"{name} * {st}" for name, st in zip(names, vec) if not _zero(st)]
        return " + ".join(([] if _zero(base) else [str(base)]) + terms) or "0"

    def _split(self, flat: str, dims: list, names: list) -> list[str]:
        """Lines giving names[d] (d in dims, last fastest) from the flat index `flat`."""
        lines, rest = [], flat
        used = [d for d in dims if not _one(self.k.space[d])]  # size-1 dims are never indexed
        for d in reversed(used):
            size = self.k.space[d]
            outermost = d == used[0]  # what is left of the flat index is already below its size
            lines.append(f"const int64_t {names[d]} = {rest if outermost else f'{rest} % {size}'};")
            rest = f"({rest} / {size})"
        return lines

    def _values(self, kernel: Kernel, names: list, skip_last: bool, given: dict | None = None) -> list[str]:
        """Loads and computed values of `kernel`'s nodes at index variables `names`; loads
        in `given` take the expression it maps them to instead of reading memory."""
        g = self.g
        out = []
        for n in kernel.loads:
            if given and n in given:
                out.append(f"const {ctype(g.nodes[n]['dtype'])} v{n} = {given[n]};")
                continue
            slot = self._load_param(n)
            _, base, strides = buffer_geometry(g, self.plan, n)
            vec = self._vector(g.nodes[n]["shape"], strides)
            out.append(f"const {ctype(g.nodes[n]['dtype'])} v{n} = b{slot}[{self._offset(base, vec, names)}];")
        for n in (kernel.nodes[:-1] if skip_last else kernel.nodes):
            d = g.nodes[n]
            shape = d["shape"]
            position = "" if d["op"] not in POSITIONAL else \
                self._offset(0, self._vector(shape, contiguous_strides(shape)), names)
            out.append(f"const {ctype(d['dtype'])} v{n} = {node_expression(d, lambda ref: f'v{ref}', position)};")
        return out

    def _reducer(self, d: dict) -> tuple[str, str, str]:
        """(accumulator type, identity, combining functor) of a reduction node."""
        out = d["dtype"]
        if d["op"] in ("sum", "prod"):
            acc_t = "double" if out.is_floating_point else "int64_t"
            return acc_t, "0" if d["op"] == "sum" else "1", _REDUCERS[d["op"]]
        lo, hi = limits(out)
        return ctype(out), lo if d["op"] == "amax" else hi, _REDUCERS[d["op"]]

    def _function(self, summary: str, grid: tuple, lines: list) -> dict:
        """The kernel's source, its launch (grid as (work items, items per block)), the
        buffer slots its parameters take in order, and its code key."""
        g, k = self.g, self.k
        comments = [f"node {n}: {g.nodes[n]['op']}{_where(g.nodes[n])}" for n in k.nodes]
        params = [self.params[s] for s in sorted(self.params)]
        arguments = [f"buf[{s}]" for s in sorted(self.params)]
        _with_sizes(params, arguments, lines, "__restrict__")
        launch = _grid_text(*grid)
        source = _environment("cuda").get_template("kernel.cu.j2").render(
            name=k.name, summary=summary, comments=comments, params=params, body=lines, launch=launch)
        return {"source": source, "launch": f"{k.name}<<<{launch}>>>", "code": _code_key(params, lines),
                "grid": grid, "slots": sorted(self.params), "sizes": arguments[-1:] == ["sz"]}

    # -------------------------------------------------------------- kernel kinds
    def write(self) -> dict:
        kind = self.k.kind
        if kind == "pointwise":
            return self._pointwise()
        if kind == "reduction":
            return self._reduction()
        if kind == "rows":
            return self._rows()
        return self._template()

    def _pointwise(self) -> dict:
        """One thread per element (grid-stride); see `_linear` for the vectorised form."""
        k = self.k
        names = [f"d{i}" for i in range(len(k.space))]
        total = _product(k.space)
        linear = self._linear()
        lines = [f"const int64_t total = {total};", "int64_t start = 0;  /* the first element the scalar loop takes */"]
        if linear is not None:
            lines += self._vectorised(names, linear)
        lines.append("for (int64_t i = start + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; "
                     "i += (int64_t)gridDim.x * blockDim.x) {")
        body = self._split("i", list(range(len(k.space))), names) + self._values(k, names, False)
        for r in k.roots:
            slot = self._store_param(r)
            vec = self._vector(self.g.nodes[r]["shape"], contiguous_strides(self.g.nodes[r]["shape"]))
            body.append(f"b{slot}[{self._offset(0, vec, names)}] = v{r};  /* output: node {r} */")
        lines += ["    " + line for line in body] + ["}"]
        work = total if linear is None else -(-total // VECTOR)
        return self._function(f"pointwise over shape {list(k.space)}", (work, THREADS),
                              ["    " + line for line in lines])

    def _linear(self) -> dict | None:
        """Vectorise when the space is static, every root and at least one load is read at
        the element's own flat index (same shape, contiguous): those move VECTOR elements
        per memory instruction where aligned. Returns load node -> its base offset, or None."""
        g, k = self.g, self.k
        if not all(type(s) is int for s in k.space) or _product(k.space) < VECTOR:
            return None
        flat = [0 if _one(s) else st for s, st in zip(k.space, contiguous_strides(k.space))]

        def at_flat_index(shape: tuple, strides: list) -> bool:
            return len(shape) == len(k.space) and self._vector(shape, strides) == flat

        if not all(at_flat_index(g.nodes[r]["shape"], contiguous_strides(g.nodes[r]["shape"])) for r in k.roots):
            return None
        loads = {}
        for n in k.loads:
            _, base, strides = buffer_geometry(g, self.plan, n)
            if at_flat_index(g.nodes[n]["shape"], strides):
                loads[n] = base
        return loads if loads and not any(g.nodes[n]["op"] in POSITIONAL for n in k.nodes) else None

    def _vectorised(self, names: list, linear: dict) -> list[str]:
        """The vector loop: VECTOR consecutive elements per thread, one vector load per
        linear operand and one vector store per root, when all of them are aligned; the
        scalar loop after it takes the tail (and everything, when something is unaligned)."""
        g, k = self.g, self.k
        pointers = {n: f"b{self._load_param(n)}" + (f" + {base}" if not _zero(base) else "")
                    for n, base in linear.items()}
        stores = {r: f"b{self._store_param(r)}" for r in k.roots}
        aligned = " && ".join(f"gradc_aligned{VECTOR}({p})" for p in [*pointers.values(), *stores.values()])
        types = {n: ctype(g.nodes[n]["dtype"]) for n in [*linear, *k.roots]}
        lanes = []
        if any(n not in linear for n in k.loads):  # a broadcast or strided operand: read at its own index
            lanes += [f"const int64_t i = {VECTOR} * q + e;"] + self._split("i", list(range(len(k.space))), names)
        lanes += self._values(k, names, False, {n: f"l{n}.v[e]" for n in linear})
        lanes += [f"w{r}.v[e] = v{r};" for r in k.roots]
        body = [f"const gradc_vec{VECTOR}<{types[n]}> l{n} = gradc_load{VECTOR}({p}, q);" for n, p in pointers.items()]
        body += [f"gradc_vec{VECTOR}<{types[r]}> w{r};" for r in k.roots]
        body += ["#pragma unroll", f"for (int e = 0; e < {VECTOR}; ++e) {{"] + ["    " + x for x in lanes] + ["}"]
        body += [f"gradc_store{VECTOR}({p}, q, w{r});  /* output: node {r} */" for r, p in stores.items()]
        return [f"if ({aligned}) {{  /* {VECTOR} elements per thread through vector loads and stores */",
                f"    for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; q < total / {VECTOR}; "
                "q += (int64_t)gridDim.x * blockDim.x) {"] + ["        " + x for x in body] + [
                "    }", f"    start = total / {VECTOR} * {VECTOR};", "}"]

    def _reduction(self) -> dict:
        k, g = self.k, self.g
        names = [f"d{i}" for i in range(len(k.space))]
        kept = [i for i in range(len(k.space)) if i not in k.reduce_dims]
        r = k.roots[0]
        d = g.nodes[r]
        acc_t, identity, functor = self._reducer(d)
        operand = d["args"][0][1]
        slot = self._store_param(r)
        store = [0] * len(k.space)
        for i, st in zip(kept, contiguous_strides(tuple(k.space[i] for i in kept))):
            store[i] = 0 if _one(k.space[i]) else st
        n_out, n_red = _product(k.space[i] for i in kept), _product(k.space[i] for i in k.reduce_dims)
        lines = [f"__shared__ {acc_t} scratch[32];",
                 f"for (int64_t o = blockIdx.x; o < {n_out}; o += gridDim.x) {{"]
        body = self._split("o", kept, names) + [f"{acc_t} acc = {identity};",
                                                f"for (int64_t j = threadIdx.x; j < {n_red}; j += blockDim.x) {{"]
        inner = self._split("j", list(k.reduce_dims), names) + self._values(k, names, True)
        inner.append(f"acc = {functor}()(acc, ({acc_t})v{operand});")
        body += ["    " + line for line in inner] + ["}"]
        body.append(f"acc = gradc_block_reduce(acc, {functor}(), ({acc_t}){identity}, scratch);")
        body.append(f"if (threadIdx.x == 0) b{slot}[{self._offset(0, store, names)}] = "
                    f"({ctype(d['dtype'])})acc;  /* node {r}: {d['op']} */")
        lines += ["    " + line for line in body] + ["}"]
        summary = f"reduction over shape {list(k.space)}, reducing dims {list(k.reduce_dims)}"
        return self._function(summary, (n_out, 1), ["    " + line for line in lines])

    def _rows(self) -> dict:
        k, g = self.k, self.g
        rows = list(range(len(k.space) - 1))
        names = [f"d{i}" for i in rows] + ["l"]
        n_rows, length = _product(k.space[:-1]), k.space[-1]
        lines = [f"for (int64_t o = blockIdx.x; o < {n_rows}; o += gridDim.x) {{"]
        body = self._split("o", rows, names)
        scratch: set = set()
        for stage in k.stages:
            if stage.kind == "reduction":
                r = stage.roots[0]
                d = g.nodes[r]
                acc_t, identity, functor = self._reducer(d)
                scratch.add(acc_t)
                slot = self._store_param(r)
                kept_shape = tuple(d["shape"]) if len(d["shape"]) == len(k.space) else tuple(d["shape"]) + (1,)
                store = self._vector(kept_shape, contiguous_strides(kept_shape))
                body += ["{", f"    {acc_t} acc = {identity};",
                         f"    for (int64_t l = threadIdx.x; l < {length}; l += blockDim.x) {{"]
                body += ["        " + v for v in self._values(stage, names, True)]
                body += [f"        acc = {functor}()(acc, ({acc_t})v{d['args'][0][1]});", "    }",
                         f"    acc = gradc_block_reduce(acc, {functor}(), ({acc_t}){identity}, "
                         f"scratch_{_scratch_name(acc_t)});",
                         f"    if (threadIdx.x == 0) b{slot}[{self._offset(0, store, names)}] = "
                         f"({ctype(d['dtype'])})acc;  /* node {r}: {d['op']} */", "}"]
            else:
                per_row = _one(stage.space[-1])
                stores = []
                for r in stage.roots:
                    slot = self._store_param(r)
                    vec = self._vector(stage.space, contiguous_strides(stage.space))
                    stores.append(f"b{slot}[{self._offset(0, vec, names)}] = v{r};  /* output: node {r} */")
                inner = self._values(stage, names, False) + stores
                if per_row:
                    body += ["if (threadIdx.x == 0) {"] + ["    " + v for v in inner] + ["}"]
                else:
                    body += [f"for (int64_t l = threadIdx.x; l < {length}; l += blockDim.x) {{"]
                    body += ["    " + v for v in inner] + ["}"]
            body.append("__syncthreads();  /* the next stage reads what this one wrote */")
        lines = [f"__shared__ {t} scratch_{_scratch_name(t)}[32];" for t in sorted(scratch)] + lines
        lines += ["    " + line for line in body] + ["}"]
        summary = f"{len(k.stages)} stages fused per row of shape {list(k.space)}, one block per row"
        return self._function(summary, (n_rows, 1), ["    " + line for line in lines])

    def _template(self) -> dict:
        g, k = self.g, self.k
        n = k.roots[0]
        d = g.nodes[n]
        operand = d["args"][0][1]
        slot, base, strides = buffer_geometry(g, self.plan, operand)
        out_slot = self.plan.buffers[n].slot
        t, t_in = ctype(d["dtype"]), ctype(g.nodes[operand]["dtype"])
        context, summary = _TEMPLATE_CONTEXTS[d["op"]](g, d, operand, strides)
        template = "softmax.cu.j2" if d["op"] == "log_softmax" else f"{d['op']}.cu.j2"
        body = _environment("cuda").get_template(template).render(t=t, base=base, **context)
        lines = ["    " + line if line else line for line in body.rstrip("\n").split("\n")]
        self.params = {slot: f"const {t_in} *__restrict__ x", out_slot: f"{t} *__restrict__ out"}
        per_row = d["op"] in ("softmax", "log_softmax")
        grid = (context["rows"], 1) if per_row else (_product(d["shape"]), THREADS)
        return self._function(summary, grid, lines)


def _scratch_name(ctype_name: str) -> str:
    return ctype_name.replace(" ", "_")


def _grid_text(work, per_block: int) -> str:
    blocks = f"min(ceil({work} / {per_block}), {MAX_BLOCKS})" if per_block > 1 else f"min({work}, {MAX_BLOCKS})"
    return f"{blocks}, {THREADS}"


def blocks(work: int, per_block: int) -> int:
    """Blocks to launch for `work` items, `per_block` per block: enough to cover them, at
    most MAX_BLOCKS (every kernel loops over the rest), at least one."""
    return max(1, min(-(-work // per_block), MAX_BLOCKS))


@dataclass
class Launch:
    """One step of a CUDA program: a kernel launch, or an extern step (`extern` set)."""

    kernel: str = ""  # the function to launch (an earlier twin's, for repeated code)
    slots: list = field(default_factory=list)  # buffer slots of its parameters, in order
    grid: tuple = (1, 1)  # (work items, items per block), work possibly symbolic
    sizes: bool = False  # takes the dynamic sizes as its last parameter
    extern: Kernel | None = None


def cuda_kernel_source(g: nx.DiGraph, plan: Plan, k: Kernel) -> str:
    """One step's CUDA for reports: a kernel, or an extern step's note."""
    if k.kind == "extern":
        return _extern_note(g, plan, k)
    return _CudaWriter(g, plan, k).write()["source"].rstrip("\n")


def render_cuda(g: nx.DiGraph, plan: Plan, function_name: str) -> str:
    """The CUDA source of a whole plan (kernels in launch order, repeated code once)."""
    return cuda_program(g, plan, function_name)[0]


def cuda_program(g: nx.DiGraph, plan: Plan, function_name: str) -> tuple[str, list[Launch]]:
    """(CUDA source, launch sequence) of a plan; the source opens with the plan's interface
    (`render.module_header`, as the C module does)."""
    kernels, steps, launches = [], [], []
    written: dict[tuple, str] = {}
    for k in plan.kernels:
        if k.kind == "extern":
            steps.append(f"{k.name} (extern): " + _extern_note(g, plan, k))
            launches.append(Launch(extern=k))
            continue
        ((twin, out),) = unique_kernels([k], written, kernels, lambda k: _CudaWriter(g, plan, k).write())
        steps.append(out["launch"] if twin == k.name else twin + out["launch"][len(k.name):] + f"  ({k.name})")
        launches.append(Launch(twin, out["slots"], out["grid"], out["sizes"]))
    source = _environment("cuda").get_template("module.cu.j2").render(
        version=__version__, function=sanitize(function_name), n_nodes=g.number_of_nodes(), kernels=kernels,
        header=module_header(g, plan), steps=[sanitize(s, 300) for s in steps], threads=THREADS,
        n_externs=sum(k.kind == "extern" for k in plan.kernels))
    return source, launches

