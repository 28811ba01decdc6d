"""Special functions numpy lacks, as array-module kernels."""
from __future__ import annotations

import math

_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def erf(xp, x):
    """The error function, accurate to the precision of `x`'s dtype.

    cupy has a native kernel. On numpy: for |x| < 3 the series
    erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n (2x^2)^n x / (1*3*...*(2n+1)), whose terms are
    all positive (no cancellation), summed until they stop mattering; beyond, the
    continued fraction of erfc (only on those elements).
    """
    if xp.__name__ == "cupy":
        from cupyx.scipy.special import erf as cupy_erf

        return cupy_erf(x)
    dt = x.dtype
    tol = 1e-17 if dt.itemsize >= 8 else 1e-9
    z = xp.abs(x.astype(xp.float64))
    out = xp.ones_like(z)
    near = z < 3.0
    s = z[near] if not near.all() else z
    z2 = s * s
    term = s.copy()
    total = s.copy()
    for n in range(1, 100):
        term *= 2 * z2 / (2 * n + 1)
        total += term
        if n % 4 == 0 and not (term > tol * total).any():
            break
    series = _TWO_OVER_SQRT_PI * xp.exp(-z2) * total
    if s is z:
        out = series
    else:
        out[near] = series
        far = ~near
        b = z[far]
        frac = xp.zeros_like(b)
        for k in range(40, 0, -1):
            frac = (k / 2) / (b + frac)
        out[far] = 1 - xp.exp(-b * b) / math.sqrt(math.pi) / (b + frac)
    return xp.copysign(out, x).astype(dt, copy=False)
