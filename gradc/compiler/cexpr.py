"""C types, literals and expressions for single graph nodes.

The contract: every node value lives in a C local of its output dtype's C type; an op
casts its tensor operands to its compute dtype (as eager's `meta` does), evaluates the
op's `lowering` expression and converts to the output type. float32 ops call the
`f`-suffixed libm functions and keep literals in float, so they compute in float32 as
numpy does; exp, tanh and sigmoid call the runtime's vectorisable float32 versions
(`_F32_OWN`), since a scalar libm call per element keeps gcc from vectorising a loop.
Anything whose C semantics would differ from eager raises `GraphBreak`.
"""
from __future__ import annotations

import math
import re

from .constants import op_of
from .errors import GraphBreak
from .symbolic import Sym

CTYPES = {"float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t",
          "int16": "int16_t", "int8": "int8_t", "uint8": "uint8_t", "bool": "bool"}
_LIMITS = {"int64": ("INT64_MIN", "INT64_MAX"), "int32": ("INT32_MIN", "INT32_MAX"),
           "int16": ("INT16_MIN", "INT16_MAX"), "int8": ("INT8_MIN", "INT8_MAX"),
           "uint8": ("0", "UINT8_MAX"), "bool": ("0", "1"), "float32": ("-INFINITY", "INFINITY"),
           "float64": ("-INFINITY", "INFINITY")}
# Ops whose C lowering matches numpy on integer and bool operands (C integer arithmetic,
# compiled with -fwrapv, wraps as numpy does). Others break the graph on integers.
INTEGER_OPS = frozenset({"fill", "arange", "clone", "add", "sub", "mul", "neg", "eq", "ne", "lt", "le", "gt", "ge",
                         "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "logical_not", "where", "cast",
                         "sign", "maximum", "minimum", "relu", "clamp"})
# Integer forms of float lowerings (numpy's floor/ceil/round of an integer is the integer)
_INTEGER_FORMS = {"abs": "(({0}) < 0 ? -({0}) : ({0}))", "floor": "{0}", "ceil": "{0}", "round": "{0}",
                  "floor_divide": "gradc_floordiv_int({0}, {1})", "remainder": "gradc_remainder_int({0}, {1})"}
_F32_FUNCS = re.compile(r"\b(exp|log|log1p|expm1|sqrt|sin|cos|tanh|erf|fabs|floor|ceil|rint|pow|fmod|"
                        r"gradc_floordiv|gradc_remainder|gradc_sigmoid|gradc_uniform)\(")
_F32_OWN = {"exp": "gradc_expf", "tanh": "gradc_tanhf", "erf": "gradc_erff"}  # gradc_runtime.h, not libm
_FLOAT_LITERAL = re.compile(r"(?<![\w.])(\d+\.\d*(?:[eE][-+]?\d+)?)")
# Test-only: op name -> a lowering template used instead of the op's own (see
# gradc.compiler.testing.planted_lowering). Empty outside that context manager.
PLANTED: dict[str, str] = {}


def ctype(dtype) -> str:
    name = dtype.name
    if name not in CTYPES:
        raise GraphBreak(f"dtype {name} is not compiled yet")
    return CTYPES[name]


def limits(dtype) -> tuple[str, str]:
    return _LIMITS[dtype.name]


def literal(value, dtype) -> str:
    """A Python scalar as a C literal of `dtype` (converted as numpy converts it); a
    symbolic size becomes its C expression, converted."""
    if isinstance(value, Sym):
        return f"(({ctype(dtype)}){value})"
    if dtype.is_floating_point:
        v = float(value)
        if math.isnan(v):
            text = "NAN"
        elif math.isinf(v):
            text = "INFINITY" if v > 0 else "(-INFINITY)"
        else:
            text = repr(v)
        return f"(({ctype(dtype)}){text})"
    if dtype.name == "bool":
        return "1" if value else "0"
    if isinstance(value, float) and value != int(value):
        raise GraphBreak(f"float constant {value!r} in a {dtype.name} op")
    return f"(({ctype(dtype)}){int(value)}LL)"


def _small_power(n: int, operand: str) -> str:
    return "1" if n == 0 else "(" + " * ".join([operand] * n) + ")"


def node_expression(node: dict, operand_var, position: str = "") -> str:
    """The C expression computing op `node` (a graph node's attributes) from its operands;
    `operand_var(node_id)` names the C local holding an operand's value, `position` is the
    element's index in the node's shape (for the positional ops, see `constants`)."""
    op = op_of(node["op"])
    out_dtype = node["dtype"]
    compute = node["compute"]
    work = compute if compute is not None else out_dtype
    ctype(out_dtype)
    if not work.is_floating_point and node["op"] not in INTEGER_OPS and node["op"] not in _INTEGER_FORMS:
        raise GraphBreak(f"op {node['op']!r} on {work.name} is not compiled yet")
    operands = []
    for pos, (tag, ref) in enumerate(node["args"]):
        cast = compute is not None and not (node["op"] == "where" and pos == 0)
        if tag == "const":
            operands.append(literal(ref, work) if cast else repr(ref))
        else:
            name = operand_var(ref)
            operands.append(f"({ctype(compute)}){name}" if cast else name)
    planted = PLANTED.get(node["op"])
    if planted is None and node["op"] == "pow" and node["args"][1][0] == "const":
        exponent = node["args"][1][1]
        if float(exponent).is_integer() and 0 <= exponent <= 4:
            return f"({ctype(out_dtype)}){_small_power(int(exponent), operands[0])}"
    if planted is not None:
        template = planted
    elif node["op"] == "bitwise_not" and work.name == "bool":
        template = "(!{0})"
    elif not work.is_floating_point and node["op"] in _INTEGER_FORMS:
        template = _INTEGER_FORMS[node["op"]]
    else:
        template = op.lowering(node["attrs"]) if callable(op.lowering) else op.lowering
    if work.name == "float32":
        template = _F32_FUNCS.sub(lambda m: _F32_OWN.get(m.group(1), m.group(1) + "f") + "(", template)
        template = _FLOAT_LITERAL.sub(lambda m: f"((float){m.group(1)})", template)
    named = {k: literal(v, work) for k, v in node["attrs"].items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return f"({ctype(out_dtype)}){template.format(*operands, **named, pos=position)}"
