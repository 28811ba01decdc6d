"""Compiled C against eager (numpy) and PyTorch: gelu-tanh, a column sum, small calls.

gelu-tanh on 4M float32 exercises the runtime's vectorised tanh; the column sum of a
(2000, 2000) float32 matrix exercises reductions over a leading dim (accumulator rows);
small_call (10 chained pointwise ops on 1024 float32) measures per-call overhead, so each
of its timed samples is SMALL_CALLS calls and the cell is the time per call.
Each cell is the median of --repeat timed samples (compilation excluded: one warm-up call
first), seed fixed, OMP_NUM_THREADS=2 and torch.set_num_threads(2).

    python benchmarks/compiled_pointwise.py [--repeat 7]
"""
from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "2"  # before numpy/torch/OpenMP start their thread pools

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import gradc  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
else:
    torch.set_num_threads(2)


def gelu(x, tanh):
    return 0.5 * x * (1 + tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


SMALL_CALLS = 1000  # calls per timed sample of small_call


def small_chain(x, exp, tanh):
    """10 chained pointwise ops (add, mul, exp, tanh, sub): per-call overhead dominates."""
    y = x + 1.0
    y = y * 0.5
    y = exp(y)
    y = y - x
    y = tanh(y)
    y = y * x
    y = y + 0.25
    y = tanh(y)
    y = y - 0.125
    return exp(y)


def median_ms(fn, repeat: int, calls: int = 1) -> float:
    """Median over `repeat` samples of the time per call, each sample `calls` calls."""
    fn()  # warm-up: compiles, loads and faults in memory
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return 1e3 * statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7, help="timed calls per cell (>= 5)")
    args = p.parse_args(argv)
    if args.repeat < 5:
        p.error("--repeat must be >= 5")
    gradc.manual_seed(0)
    x = gradc.randn(4 * 1024 * 1024)
    m = gradc.randn(2000, 2000)
    gelu_c = gradc.compile(lambda t: gelu(t, gradc.tanh))
    s = gradc.randn(1024)
    colsum_c = gradc.compile(lambda t: t.sum(dim=0))
    small_c = gradc.compile(lambda t: small_chain(t, gradc.exp, gradc.tanh))
    rows = [("gelu-tanh 4M f32", 1, lambda: gelu_c(x), lambda: gelu(x, gradc.tanh),
             (lambda t: lambda: gelu(t, torch.tanh))(torch.from_numpy(x.numpy())) if torch else None),
            ("column sum (2000,2000) f32", 1, lambda: colsum_c(m), lambda: m.sum(dim=0),
             (lambda t: lambda: t.sum(dim=0))(torch.from_numpy(m.numpy())) if torch else None),
            ("small_call 1024 f32", SMALL_CALLS, lambda: small_c(s),
             lambda: small_chain(s, gradc.exp, gradc.tanh),
             (lambda t: lambda: small_chain(t, torch.exp, torch.tanh))(torch.from_numpy(s.numpy()))
             if torch else None)]
    print(f"{'case':28} {'compiled ms':>12} {'eager ms':>10} {'torch ms':>10}")
    for name, calls, compiled, eager, reference in rows:
        cells = [median_ms(compiled, args.repeat, calls), median_ms(eager, args.repeat, calls)]
        torch_ms = f"{median_ms(reference, args.repeat, calls):10.4f}" if reference else f"{'-':>10}"
        print(f"{name:28} {cells[0]:12.4f} {cells[1]:10.4f} {torch_ms}")


if __name__ == "__main__":
    main()
