"""`gradcheck`: compare autograd's Jacobian with central finite differences.

Use float64 inputs: float32 finite differences are too noisy for the default
tolerances. The analytic Jacobian is built one output element at a time with
`autograd.grad`, so it exercises exactly the path `backward()` takes.
"""
from __future__ import annotations

import numpy as np


class GradcheckError(RuntimeError):
    """Raised by gradcheck (unless raise_exception=False) when the Jacobians differ."""


def _outputs(fn, inputs) -> list:
    from ..tensor import Tensor

    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.is_floating_point]


def _flat_outputs(fn, inputs) -> np.ndarray:
    parts = [o._host().ravel().astype(np.float64) for o in _outputs(fn, inputs)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _numerical(fn, inputs, wrt, eps: float) -> list:
    """Columns: d(all outputs, flattened)/d(input element), by central differences."""
    from .grad_mode import no_grad

    jac = []
    for t in wrt:
        arr = t.detach()._array()
        flat_idx = list(np.ndindex(arr.shape))
        cols = []
        for idx in flat_idx:
            orig = arr[idx].item()
            with no_grad():
                arr[idx] = orig + eps
                plus = _flat_outputs(fn, inputs)
                arr[idx] = orig - eps
                minus = _flat_outputs(fn, inputs)
                arr[idx] = orig
            cols.append((plus - minus) / (2 * eps))
        jac.append(np.stack(cols, axis=1) if cols else np.zeros((_flat_outputs(fn, inputs).size, 0)))
    return jac


def _analytical(fn, inputs, wrt) -> list:
    from . import grad

    outs = _outputs(fn, inputs)
    sizes = [o.numel() for o in outs]
    total = sum(sizes)
    jac = [np.zeros((total, t.numel())) for t in wrt]
    row = 0
    for o, n in zip(outs, sizes):
        if not o.requires_grad:
            row += n
            continue
        for k in range(n):
            from ..factories import zeros

            seed = zeros(o.shape, dtype=o.dtype, device=o.device)
            seed._array().reshape(-1)[k] = 1
            grads = grad(o, wrt, seed, retain_graph=True, allow_unused=True)
            for j, g in enumerate(grads):
                if g is not None:
                    jac[j][row + k] = g._host().reshape(-1)
        row += n
    return jac


def gradcheck(fn, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, **_ignored) -> bool:
    """True when autograd's gradients of `fn` at `inputs` match finite differences."""
    from ..tensor import Tensor

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    wrt = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:  # as PyTorch: a check with nothing to differentiate would pass vacuously
        raise ValueError("gradcheck expects at least one input tensor to require gradient, "
                         "but none of them have requires_grad=True.")
    for t in wrt:
        if t.dtype.name != "float64":
            import warnings

            warnings.warn(f"gradcheck: input of dtype {t.dtype} is not double precision; "
                          "finite differences will be inaccurate", stacklevel=2)
    numerical = _numerical(fn, inputs, wrt, eps)
    analytical = _analytical(fn, inputs, wrt)
    bounds = np.cumsum([0] + [o.numel() for o in _outputs(fn, inputs)])
    for j in range(len(bounds) - 1):  # one block per (output, input), named as PyTorch does
        rows = slice(bounds[j], bounds[j + 1])
        for i, (n, a) in enumerate(zip(numerical, analytical)):
            if not np.allclose(a[rows], n[rows], rtol=rtol, atol=atol, equal_nan=True):
                if not raise_exception:
                    return False
                raise GradcheckError(f"Jacobian mismatch for output {j} with respect to input {i},\n"
                                     f"numerical:{n[rows]}\nanalytical:{a[rows]}\n")
    return True


def gradgradcheck(fn, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  raise_exception: bool = True) -> bool:
    """gradcheck of the first derivative (a vector-Jacobian product with fixed random
    cotangents): checks that backward itself is differentiable."""
    from ..factories import tensor
    from ..tensor import Tensor
    from . import grad

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    rng = np.random.default_rng(0)
    cotangents = [tensor(rng.standard_normal(tuple(o.shape)), dtype=o.dtype) for o in _outputs(fn, inputs)]

    def first_derivative(*args):
        from .grad_mode import enable_grad

        with enable_grad():  # gradcheck's finite differences call this under no_grad
            outs = _outputs(fn, args)
            grads = grad(outs, [a for a in args if isinstance(a, Tensor) and a.requires_grad], cotangents,
                         create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivative, inputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)  # (ValueError when no input requires grad)
