"""Symbolic sizes for `dynamic` compiles: ints that remember how they depend on input sizes.

A `Sym` is an `int` (its value is the size seen at capture time, so eager code, numpy and
every shape check run unchanged) that also carries a polynomial over size symbols
s0, s1, ... (one per dynamic dim of an input). The capture gives dynamic input dims fresh
symbols; shape rules, view arithmetic and user code (`x.shape[0] * 2`) then build
polynomials through `+`, `-`, `*` and exact `//`. Anything else (`%`, inexact division,
`int()`, numpy) yields a plain int: the value is then baked in, which is only wrong for
other sizes. That is why a dynamic entry is never trusted blindly: each new size is
captured again and compared with the symbolic graph evaluated at that size (see
`api`), and only a match reuses the compiled code.

Comparisons stay value-based, as eager code needs. The compiler's own decisions (loop
merging, fusion by shape) use `same`, which compares polynomials, so a coincidence of
values at one size never shapes the generated code. `str(sym)` is its C expression
(its value while the captured function runs, see `shown_as_values`).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator

Poly = tuple  # ((monomial, coefficient), ...) sorted; a monomial is a sorted tuple of symbol indices


def _normal(terms: dict) -> Poly:
    return tuple(sorted((m, c) for m, c in terms.items() if c))


def _add(p: Poly, q: Poly, sign: int = 1) -> Poly:
    terms = dict(p)
    for m, c in q:
        terms[m] = terms.get(m, 0) + sign * c
    return _normal(terms)


def _mul(p: Poly, q: Poly) -> Poly:
    terms: dict = {}
    for m1, c1 in p:
        for m2, c2 in q:
            m = tuple(sorted(m1 + m2))
            terms[m] = terms.get(m, 0) + c1 * c2
    return _normal(terms)


def poly_of(x: int) -> Poly:
    return x.poly if isinstance(x, Sym) else _normal({(): int(x)})


def make(value: int, poly: Poly) -> int:
    """A Sym, or the plain int when the polynomial is a constant."""
    if all(m == () for m, _ in poly):
        return int(value)
    return Sym(value, poly)


class Sym(int):
    """An int with a polynomial over size symbols (see the module docstring)."""

    poly: Poly

    def __new__(cls, value: int, poly: Poly):
        self = super().__new__(cls, value)
        self.poly = poly
        return self

    @staticmethod
    def symbol(index: int, value: int) -> Sym:
        return Sym(value, (((index,), 1),))

    def __add__(self, other):
        if not isinstance(other, int):
            return int(self) + other
        return make(int(self) + int(other), _add(self.poly, poly_of(other)))

    __radd__ = __add__

    def __sub__(self, other):
        if not isinstance(other, int):
            return int(self) - other
        return make(int(self) - int(other), _add(self.poly, poly_of(other), -1))

    def __rsub__(self, other):
        if not isinstance(other, int):
            return other - int(self)
        return make(int(other) - int(self), _add(poly_of(other), self.poly, -1))

    def __mul__(self, other):
        if not isinstance(other, int):
            return int(self) * other
        return make(int(self) * int(other), _mul(self.poly, poly_of(other)))

    __rmul__ = __mul__

    def __neg__(self):
        return make(-int(self), _mul(self.poly, ((((), -1),))))

    def __pos__(self):
        return self

    def __floordiv__(self, other):
        value = int(self) // int(other) if isinstance(other, int) else int(self) // other
        quotient = _divide(self.poly, poly_of(other)) if isinstance(other, int) and int(other) else None
        return value if quotient is None else make(value, quotient)

    def __hash__(self) -> int:
        return hash((int(self), self.poly))  # never equal-hashed with the plain int: caches keep them apart

    def __eq__(self, other) -> bool:
        return int(self) == other

    def __ne__(self, other) -> bool:
        return int(self) != other

    def __str__(self) -> str:
        return str(int(self)) if getattr(_shown, "values", False) else c_text(self)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else format(int(self), spec)

    def __reduce__(self):
        return (Sym, (int(self), self.poly))


_shown = threading.local()  # .values: whether Syms print as their values (see `shown_as_values`)


@contextlib.contextmanager
def shown_as_values() -> Iterator[None]:
    """Within it, on this thread, a Sym prints as its value. The captured function runs in
    it, so what user code prints and the eager errors it raises ("shapes [3, 4] and [3, 5]
    cannot be multiplied") read as in eager, never with the compiler's C text ("s0");
    code rendered meanwhile on another thread keeps that text."""
    before = getattr(_shown, "values", False)
    _shown.values = True
    try:
        yield
    finally:
        _shown.values = before


def _divide(p: Poly, q: Poly) -> Poly | None:
    """p / q when q is one term that divides every term of p exactly; else None."""
    if len(q) != 1:
        return None
    (mq, cq), = q
    out = {}
    for m, c in p:
        rest = list(m)
        for s in mq:
            if s not in rest:
                return None
            rest.remove(s)
        if c % cq:
            return None
        out[tuple(rest)] = c // cq
    return _normal(out)


def c_text(x: int) -> str:
    """The C expression of an int or Sym over int64 locals s0, s1, ..."""
    if not isinstance(x, Sym):
        return str(int(x))
    terms = []
    for m, c in x.poly:
        factors = [f"s{s}" for s in m]
        if c != 1 or not factors:
            factors.insert(0, str(c))
        terms.append("*".join(factors))
    text = " + ".join(terms).replace("+ -", "- ")
    return text if len(terms) == 1 and len(x.poly[0][0]) <= 1 and x.poly[0][1] == 1 else f"({text})"


def same(a: int, b: int) -> bool:
    """Equal as polynomials (for plain ints: equal)."""
    return poly_of(a) == poly_of(b)


def same_shape(a: Iterable, b: Iterable) -> bool:
    a, b = tuple(a), tuple(b)
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def is_symbolic(x) -> bool:
    """Whether `x` (an int, or a nested tuple/list/slice of them) has a Sym in it."""
    if isinstance(x, Sym):
        return True
    if isinstance(x, (tuple, list)):
        return any(is_symbolic(v) for v in x)
    if isinstance(x, slice):
        return any(is_symbolic(v) for v in (x.start, x.stop, x.step))
    return False


def evaluate(x, sizes: tuple):
    """`x` (an int, Sym, or a nested tuple/list/slice/dict of them) at symbol values
    `sizes`; anything without a Sym comes back as is."""
    if not sizes:
        return x
    if isinstance(x, Sym):
        total = 0
        for m, c in x.poly:
            term = c
            for s in m:
                term *= sizes[s]
            total += term
        return total
    if isinstance(x, tuple):
        return tuple(evaluate(v, sizes) for v in x)
    if isinstance(x, list):
        return [evaluate(v, sizes) for v in x]
    if isinstance(x, slice):
        return slice(evaluate(x.start, sizes), evaluate(x.stop, sizes), evaluate(x.step, sizes))
    if isinstance(x, dict):
        return {k: evaluate(v, sizes) for k, v in x.items()}
    return x


def symbols_in(x) -> set:
    """The symbol indices used anywhere in `x`."""
    if isinstance(x, Sym):
        return {s for m, _ in x.poly for s in m}
    if isinstance(x, (tuple, list)):
        return set().union(*(symbols_in(v) for v in x)) if x else set()
    if isinstance(x, slice):
        return symbols_in((x.start, x.stop, x.step))
    return set()
