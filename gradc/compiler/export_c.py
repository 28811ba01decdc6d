"""Render an inference graph as a standalone C program: model.h, model.c, main_example.c and,
with `weights="file"`, weights.bin (see `gradc.export`, which captures the graph).

The kernels are the compiler's own (`render`), with two differences that make the result
depend on nothing but a C99 compiler and libm:
- ops the compiler runs as numpy extern steps get portable C kernels here
  (`PORTABLE`: `templates/export/<op>.c.j2`); any other extern op cannot be exported;
- OpenMP pragmas are dropped unless asked for (with them the code needs `-fopenmp`).
The runtime header's helpers are copied into model.c, so it includes no gradc file.
`model_run` binds the caller's inputs and outputs, the weights and one workspace (malloc'd
per call and laid out as the schedule planned the temporaries), runs every kernel in order
and returns an error code; it keeps no state, so concurrent calls are safe.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

import networkx as nx
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._version import __version__
from ..ops.indexing import INDEX_SLOT
from .cexpr import ctype
from .render import (
    _environment,
    _where,
    _with_sizes,
    buffer_geometry,
    kernel_calls,
    module_header,
    resource_dir,
    sanitize,
)
from .render import _kernel as c_kernel
from .schedule import Kernel, Plan
from .symbolic import Sym, evaluate


def _single_index(attrs: dict) -> bool:
    """`x[..., idx, ...]` with one integer tensor among full slices (embedding, index_select)."""
    template = attrs.get("template", ())
    full = slice(None)
    return sum(k is INDEX_SLOT for k in template) == 1 and all(
        k is INDEX_SLOT or (isinstance(k, slice) and k == full) for k in template)


# Extern ops with a portable C kernel, and which calls of them it covers.
PORTABLE = {"matmul": lambda attrs: True, "argmax": lambda attrs: True, "argmin": lambda attrs: True,
            "index": _single_index}
WEIGHTS_MAGIC = b"GRADCW1\0"
WEIGHTS_HEADER = struct.Struct("<8sIIQQ")  # magic, byte-order mark, format version, payload bytes, tensors
MATMUL_TILE = 256  # columns of a matmul row accumulated at once (a 2 KiB array of doubles)
ALIGN = 64  # every weight and workspace region starts on a 64-byte boundary
_PRAGMA = re.compile(r"(?m)^[ \t]*#pragma omp[^\n]*\n")
_SYMBOL = re.compile(r"\bs0\b")


def portable(op: str, attrs: dict) -> bool:
    """Whether a call of extern op `op` with these attrs has a portable kernel."""
    return op in PORTABLE and PORTABLE[op](attrs)


def make_portable(g: nx.DiGraph) -> list[tuple]:
    """Turn the extern steps that have a portable kernel into template kernels, in place;
    returns (op, source) of the extern steps that have none (the graph cannot be exported)."""
    missing = []
    for _, d in g.nodes(data=True):
        if d["kind"] == "extern":
            if portable(d["op"], d["attrs"]):
                d["kind"] = "template"
            else:
                missing.append((d["op"], d.get("source")))
    return missing


def _matmul_context(g: nx.DiGraph, plan: Plan, d: dict) -> dict:
    (_, a), (_, b) = d["args"]
    _, a_base, a_st = buffer_geometry(g, plan, a)
    _, b_base, b_st = buffer_geometry(g, plan, b)
    shape = tuple(d["shape"])
    batch_shape, (m, n) = shape[:-2], shape[-2:]
    k = g.nodes[a]["shape"][-1]

    def batch_strides(node: int, strides: list) -> list:  # 0 on dims the operand broadcasts over
        own = g.nodes[node]["shape"][:-2]
        pad = len(batch_shape) - len(own)
        return [0 if i < pad or own[i - pad] == 1 else strides[i - pad] for i in range(len(batch_shape))]

    ab, bb = batch_strides(a, a_st), batch_strides(b, b_st)
    dims = [{"size": s, "a": x, "b": y} for s, x, y in zip(batch_shape, ab, bb) if isinstance(s, Sym) or s != 1]
    floating = d["dtype"].is_floating_point
    return dict(batch=math.prod(batch_shape), dims=dims, a_base=a_base, b_base=b_base, m=m, n=n, k=k,
                am=a_st[-2], ak=a_st[-1], bk=b_st[-2], bn=b_st[-1], tile=MATMUL_TILE,
                rows_of_b=not isinstance(b_st[-1], Sym) and b_st[-1] == 1,
                acc="double" if floating else ctype(d["dtype"]),
                summary=f"matmul {list(g.nodes[a]['shape'])} x {list(g.nodes[b]['shape'])}"), [a, b]


def _argmax_context(g: nx.DiGraph, plan: Plan, d: dict) -> dict:
    x = d["args"][0][1]
    _, base, strides = buffer_geometry(g, plan, x)
    shape = tuple(g.nodes[x]["shape"]) or (1,)
    strides = strides or [0]
    dim = d["attrs"].get("dim")
    reduced = set(range(len(shape))) if dim is None else {dim % len(shape)}
    kept = [{"size": shape[i], "stride": strides[i]} for i in range(len(shape)) if i not in reduced]
    red = [{"size": shape[i], "stride": strides[i]} for i in sorted(reduced)]
    return dict(outer=math.prod(e["size"] for e in kept), kept=kept, reduced=red, base=base,
                count=math.prod(e["size"] for e in red), op=d["op"], t_in=ctype(g.nodes[x]["dtype"]),
                floating=g.nodes[x]["dtype"].is_floating_point,
                summary=f"{d['op']} of {list(g.nodes[x]['shape'])} over dim {dim}"), [x]


def _index_context(g: nx.DiGraph, plan: Plan, d: dict) -> dict:
    (_, x), (_, idx) = d["args"]
    _, base, strides = buffer_geometry(g, plan, x)
    _, idx_base, idx_strides = buffer_geometry(g, plan, idx)
    shape, idx_shape = tuple(g.nodes[x]["shape"]), tuple(g.nodes[idx]["shape"])
    pos = d["attrs"]["template"].index(INDEX_SLOT)
    dims = [{"size": n, "stride": s} for n, s in zip(shape, strides)]
    pre, post = dims[:pos], dims[pos + 1:]
    return dict(pre=pre, post=post, pre_count=math.prod(e["size"] for e in pre), base=base,
                post_count=math.prod(e["size"] for e in post), rows=shape[pos], row_stride=strides[pos],
                idx=[{"size": n, "stride": s} for n, s in zip(idx_shape, idx_strides)],
                idx_count=math.prod(idx_shape), idx_base=idx_base,
                summary=f"index {list(shape)} by an index of shape {list(idx_shape)} on dim {pos}"), [x, idx]


_CONTEXTS = {"matmul": _matmul_context, "argmax": _argmax_context, "argmin": _argmax_context,
             "index": _index_context}
_CHECKED = frozenset({"index"})  # kernels that report an out-of-range index through `bad`


def _portable_kernel(g: nx.DiGraph, plan: Plan, k: Kernel) -> dict:
    """A portable kernel (see `PORTABLE`): the same shape of result as `render`'s kernels."""
    n = k.roots[0]
    d = g.nodes[n]
    context, operands = _CONTEXTS[d["op"]](g, plan, d)
    t = ctype(d["dtype"])
    names = {"matmul": ["a", "b"], "index": ["x", "ix"]}.get(d["op"], ["x"])
    params = [f"const {ctype(g.nodes[o]['dtype'])} *restrict {name}" for o, name in zip(operands, names)]
    arguments = [f"(const {ctype(g.nodes[o]['dtype'])} *)buf[{buffer_geometry(g, plan, o)[0]}]" for o in operands]
    params.append(f"{t} *restrict out")
    arguments.append(f"({t} *)buf[{plan.buffers[n].slot}]")
    body = _environment("export").get_template(f"{'argmax' if d['op'] == 'argmin' else d['op']}.c.j2").render(
        t=t, **context)
    lines = ["    " + line if line else line for line in body.rstrip("\n").split("\n")]
    _with_sizes(params, arguments, lines)
    if d["op"] in _CHECKED:
        params.append("int *restrict bad")
        arguments.append("&bad")
    source = _environment().get_template("kernel.c.j2").render(
        name=k.name, summary=context["summary"], comments=[f"node {n}: {d['op']}{_where(d)}"], params=params,
        body=lines)
    return {"source": source, "call": f"{k.name}({', '.join(arguments)});", "code": (tuple(params), tuple(lines))}


def _write(g: nx.DiGraph, plan: Plan, k: Kernel) -> dict:
    if k.kind == "template" and g.nodes[k.roots[0]]["op"] in PORTABLE:
        return _portable_kernel(g, plan, k)
    return c_kernel(g, plan, k)


def _c_size(x) -> str:
    """A size as C text, with the batch symbol spelled `batch`."""
    return _SYMBOL.sub("batch", str(x))


def _shape_doc(shape: tuple) -> str:
    return "[" + ", ".join(_c_size(s) for s in shape) + "]"


def _literal(value, dtype) -> str:
    """A C literal that converts back to exactly `value` of gradc dtype `dtype`."""
    if dtype.is_floating_point:
        v = float(value)
        if math.isnan(v):
            return "NAN"
        if math.isinf(v):
            return "INFINITY" if v > 0 else "-INFINITY"
        text = ("%.9g" if dtype.name == "float32" else "%.17g") % v
        if text.lstrip("-").isdigit():
            text += ".0"
        return text + ("f" if dtype.name == "float32" else "")
    if dtype.name == "bool":
        return "1" if value else "0"
    return f"{int(value)}LL" if dtype.name == "int64" else str(int(value))


def _stored(array: np.ndarray, strides: tuple) -> np.ndarray:
    """The flat elements a kernel reading `array` through element `strides` expects (a
    parameter that is not contiguous keeps its layout; a broadcast dim is stored once)."""
    extent = 1 + sum((n - 1) * s for n, s in zip(array.shape, strides) if n > 0)
    flat = np.zeros(max(extent, 1), array.dtype)
    item = array.itemsize
    as_strided(flat, array.shape, [s * item for s in strides])[...] = array
    return flat


@dataclass
class Operand:
    """One argument of `model_run` (an input or an output)."""

    name: str  # C name: in0, in1, ... / out0, ...
    label: str  # what it is in Python (argument name, or "result i")
    ctype: str
    dtype: str
    shape: str
    numel: str  # C expression (in `batch` when the export is dynamic)
    per_sample: int  # elements at batch 1 (dynamic) or in all (fixed)
    row: int  # elements per printed line (the last dim when it is fixed)


def _operand(g: nx.DiGraph, n: int, name: str, label: str) -> Operand:
    d = g.nodes[n]
    shape = tuple(d["shape"])
    numel = math.prod(shape)
    row = shape[-1] if shape and not isinstance(shape[-1], Sym) and 0 < shape[-1] <= 16 else 8
    return Operand(name, label, ctype(d["dtype"]), d["dtype"].name, _shape_doc(shape), _c_size(numel),
                   int(evaluate(numel, (1,))) if isinstance(numel, Sym) else int(numel), row)


def render_program(g: nx.DiGraph, plan: Plan, weights: dict[int, np.ndarray], *, title: str,
                   weights_mode: str = "embed", openmp: bool = False, min_batch: int = 1) -> dict[str, bytes]:
    """The exported files (name -> bytes) for an inference graph already made portable
    (`make_portable`) and scheduled; `weights` maps each external input node to its array;
    a dynamic graph serves batch sizes from `min_batch` up."""
    dynamic = bool(g.graph["symbols"])
    kernels: list[str] = []
    calls = kernel_calls(g, plan, plan.kernels, {}, kernels, write=_write)
    if not openmp:
        kernels = [_PRAGMA.sub("", source) for source in kernels]
    names = g.graph.get("names", {})
    inputs = [_operand(g, n, f"in{i}", f"argument {i}" + (f" ({names[n]})" if n in names else ""))
              for i, n in enumerate(g.graph["inputs"])]
    results = g.graph["outputs"][: g.graph["n_results"]]
    outputs = [_operand(g, n, f"out{i}", f"result {i}") for i, n in enumerate(results)]

    slot_of = {n: b.slot for n, b in plan.buffers.items()}
    body = [f"buf[{slot_of[n]}] = (void *){op.name};" for op, n in zip(inputs, g.graph["inputs"])]
    tables, layout, payload = _bind_weights(g, plan, weights, weights_mode, body)
    regions = _workspace(g, plan)
    first_output: dict[int, str] = {}
    copies = []
    for op, n in zip(outputs, results):
        if plan.buffers[n].role == "output" and n not in first_output:
            first_output[n] = op.name
            body.append(f"buf[{slot_of[n]}] = (void *){op.name};")
        else:  # an input, a weight or a repeated result: copied once the kernels ran
            copies.append(f"memcpy({op.name}, buf[{slot_of[n]}], (size_t)({op.numel}) * sizeof({op.ctype}));")
    uses_sz = any(re.search(r"\bsz\b", c) for c in calls)
    checked = any("&bad" in c for c in calls)
    context = dict(
        version=__version__, title=sanitize(title), dynamic=dynamic, min_batch=min_batch, inputs=inputs,
        outputs=outputs, file_weights=bool(layout), weights_bytes=len(payload), n_weights=len(layout),
        n_buffers=len(plan.buffers), body=body, regions=regions, calls=calls, copies=copies, uses_sz=uses_sz,
        checked=checked,
        kernels=kernels, tables=tables, layout=layout, openmp=openmp, header=module_header(g, plan),
        runtime=(resource_dir("gradc.runtime", "runtime") / "gradc_runtime.h").read_text(),
        n_nodes=g.number_of_nodes(), magic=WEIGHTS_MAGIC[:7].decode(), align=ALIGN)
    env = _environment("export")
    files = {name: env.get_template(f"{name}.j2").render(**context).encode()
             for name in ("model.h", "model.c", "main_example.c")}
    if context["file_weights"]:
        header = WEIGHTS_HEADER.pack(WEIGHTS_MAGIC, 0x01020304, 1, len(payload), len(layout))
        files["weights.bin"] = header + b"\0" * (ALIGN - len(header)) + payload
    return files


def _bind_weights(g: nx.DiGraph, plan: Plan, weights: dict, mode: str, body: list[str]) -> tuple:
    """Bind the weights and constants to their slots (lines appended to `body`). Returns
    the C arrays to define (constants, and weights when embedded), the layout of the
    weights file ((slot, name, shape, dtype) per weight) and its payload."""
    names = g.graph.get("names", {})
    tables, layout, payload = [], [], bytearray()
    for n in g.graph["externals"] + g.graph["constants"]:
        d, slot = g.nodes[n], plan.buffers[n].slot
        name = names.get(n, "constant")
        flat = _stored(np.asarray(weights[n] if n in weights else d["value"], d["dtype"].np), tuple(d["strides"]))
        if mode == "file" and n in weights:
            body.append(f"buf[{slot}] = (void *)(model_weights + {len(payload)});  /* {sanitize(name)} */")
            layout.append((slot, sanitize(name), _shape_doc(d["shape"]), d["dtype"].name))
            payload += flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()
            payload += b"\0" * (-len(payload) % ALIGN)
            continue
        ident = re.sub(r"[^0-9A-Za-z_]", "_", f"w{slot}_{name}")
        values = [_literal(v, d["dtype"]) for v in flat.tolist()]
        tables.append({"name": ident, "ctype": ctype(d["dtype"]), "count": len(values),
                       "rows": [", ".join(values[i:i + 8]) for i in range(0, len(values), 8)],
                       "what": sanitize(f"{name} {list(d['shape'])} {d['dtype'].name}")})
        body.append(f"buf[{slot}] = (void *){ident};")
    return tables, layout, bytes(payload)


def _workspace(g: nx.DiGraph, plan: Plan) -> list[dict]:
    """The workspace regions: one per planned memory block of temporaries (see
    `schedule._share_temporaries`) and one per temporary of its own, with the slots that
    live there and the region's size in bytes as C text."""
    regions: dict = {}
    for b in plan.buffers.values():
        if b.role != "temp":
            continue
        key = ("block", b.storage) if b.storage >= 0 else ("own", b.node)
        r = regions.setdefault(key, {"slots": [], "bytes": f"(size_t)({_c_size(math.prod(b.shape))}) * "
                                                         f"sizeof({ctype(b.dtype)})"})
        r["slots"].append(b.slot)
    return list(regions.values())
