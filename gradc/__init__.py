"""gradc: PyTorch's programming model with a compiler to readable C and CUDA.

This module is the public namespace: tensors and their factories, dtypes, devices,
the ops (as functions; the same ones are Tensor methods), autograd and grad modes.
"""
from __future__ import annotations

from . import (
    autograd,
    compiler,
    nn,
    optim,
    utils,
)
from ._version import __version__
from .autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .compiler import CompileCheckError, ExportError, GraphBreakError, compile, explain, export
from .device import device
from .dtypes import bool_ as bool
from .dtypes import (
    dtype,
    float16,
    float32,
    float64,
    get_default_dtype,
    int8,
    int16,
    int32,
    int64,
    promote_types,
    result_type,
    set_default_dtype,
    uint8,
)
from .factories import (
    arange,
    as_tensor,
    default_generator,
    empty,
    empty_like,
    eye,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    linspace,
    manual_seed,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from .ops import *  # noqa: F401,F403  (the op functions: gradc.exp, gradc.matmul, ...)
from .ops import OPS
from .serialization import load, save
from .size import Size
from .storage import Storage
from .tensor import Tensor, is_tensor  # first: it loads the op table

half = float16
float = float32
double = float64
long = int64
int = int32
short = int16

__all__ = ["Tensor", "Size", "Storage", "tensor", "autograd", "OPS", "__version__", "device", "dtype",
           "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "inference_mode",
           "is_inference_mode_enabled", "is_tensor"]


def numel(input: Tensor) -> int:
    return input.numel()
