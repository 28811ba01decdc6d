"""Tiny modules defined identically over gradc.nn and torch.nn, for side-by-side tests.

They use only Parameters, buffers and tensor ops (no library layers), so the Module
tests depend on nothing but Module itself. `twins(nn, lib)` returns the classes for one
library; values come from a seeded numpy generator, so both twins start equal.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

_CACHE: dict = {}


def twins(nn, lib) -> SimpleNamespace:
    """The twin classes written against `nn` (gradc.nn or torch.nn) and `lib` (gradc or torch)."""
    if nn in _CACHE:
        return _CACHE[nn]

    def values(shape, seed: int):
        return lib.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))

    class Affine(nn.Module):
        """y = x W^T + b, with an integer call counter (persistent) and a scratch buffer (not)."""

        def __init__(self, n_in: int, n_out: int, bias: bool = True, seed: int = 0):
            super().__init__()
            self.n_in, self.n_out = n_in, n_out
            self.weight = nn.Parameter(values((n_out, n_in), seed))
            if bias:
                self.bias = nn.Parameter(values((n_out,), seed + 100))
            else:
                self.register_parameter("bias", None)
            self.register_buffer("calls", lib.zeros((), dtype=lib.int64))
            self.register_buffer("scratch", lib.ones(2), persistent=False)

        def forward(self, x):
            y = x @ self.weight.T
            return y + self.bias if self.bias is not None else y

        def extra_repr(self) -> str:
            return f"n_in={self.n_in}, n_out={self.n_out}, bias={self.bias is not None}"

    class Scale(nn.Module):
        """Multiplies by a parameter; its extra_repr spans two lines."""

        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(lib.tensor([2.0]))

        def forward(self, x):
            return x * self.s

        def extra_repr(self) -> str:
            return "line one\nline two"

    class Net(nn.Module):
        """Two Affines around a Scale; `tied` is the first Affine registered a second time."""

        def __init__(self):
            super().__init__()
            self.fc1 = Affine(3, 4, seed=1)
            self.act = Scale()
            self.fc2 = Affine(4, 2, bias=False, seed=2)
            self.register_buffer("running", lib.zeros(2))
            self.tied = self.fc1

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x))) + self.running

    class TwoInTwoOut(nn.Module):
        """forward(x, y, k) -> (x * y * k, x + 1): for backward hook tests."""

        def forward(self, x, y, k=2.0):
            return x * y * k, x + 1

    _CACHE[nn] = SimpleNamespace(Affine=Affine, Scale=Scale, Net=Net, TwoInTwoOut=TwoInTwoOut)
    return _CACHE[nn]


def as_gradc(state: dict) -> dict:
    """A torch state dict with its tensors converted to gradc (via numpy)."""
    import gradc

    return {k: gradc.tensor(v.detach().numpy()) for k, v in state.items()}
