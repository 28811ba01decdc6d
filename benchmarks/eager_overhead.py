"""Per-op eager dispatch overhead: gradc against numpy and PyTorch on tiny tensors.

On a 1024-element float32 tensor the arithmetic itself takes well under a microsecond,
so the time per call is the framework's overhead: argument handling, shape/dtype rules,
allocation and, with requires_grad on one input, recording the autograd graph (only
the forward op is timed, never backward). Each number is the median over --repeat runs
of the mean time of --number back-to-back calls; the systems are timed in turn within
each repeat, so that they share the machine's state. The garbage collector is off while
timing, as in `timeit`.

    python benchmarks/eager_overhead.py [--repeat 7] [--number 2000]

The project's target is gradc within 4x of PyTorch eager on every row.
"""
from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "2"  # before numpy/torch start their thread pools

import argparse  # noqa: E402
import gc  # noqa: E402
import operator  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import gradc  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
else:
    torch.set_num_threads(2)

SIZE = 1024
TARGET = 4.0
OPS = ("add", "mul", "sum")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7, help="timed runs per cell; the median is shown (>= 5)")
    p.add_argument("--number", type=int, default=2000, help="calls per timed run")
    args = p.parse_args(argv)
    if args.repeat < 5 or args.number < 1:
        p.error("--repeat must be >= 5 and --number >= 1")
    return args


def systems() -> list[str]:
    return ["gradc", "numpy"] + (["torch"] if torch is not None else [])


def make_inputs(system: str, requires_grad: bool) -> tuple:
    """Two 1024-element float32 tensors of `system`; the first requires grad if asked."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(SIZE).astype(np.float32) for _ in range(2))
    if system == "numpy":
        return a, b
    if system == "torch":
        return torch.tensor(a, requires_grad=requires_grad), torch.tensor(b)
    return gradc.tensor(a, requires_grad=requires_grad), gradc.tensor(b)


def op_call(name: str, inputs: tuple) -> tuple:
    """(callable, args) for one call of op `name`, the same call form on every system."""
    if name == "sum":
        return type(inputs[0]).sum, inputs[:1]
    return getattr(operator, name), inputs


def time_per_call(fn, args, number: int) -> float:
    """Mean microseconds per call of `fn(*args)` over `number` calls."""
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn(*args)
        return (time.perf_counter() - start) / number * 1e6
    finally:
        gc.enable()


def measure(name: str, requires_grad: bool, repeat: int, number: int) -> dict:
    """Median microseconds per call for each system (numpy has no autograd: None)."""
    calls = {s: op_call(name, make_inputs(s, requires_grad)) for s in systems()
             if not (requires_grad and s == "numpy")}
    for fn, args in calls.values():  # warm up caches and lazy initialisation
        time_per_call(fn, args, max(1, number // 10))
    samples = {s: [] for s in calls}
    for _ in range(repeat):
        for s, (fn, args) in calls.items():
            samples[s].append(time_per_call(fn, args, number))
    return {s: statistics.median(samples[s]) if s in samples else None for s in systems()}


def ratio(row: dict) -> float | None:
    return row["gradc"] / row["torch"] if row.get("torch") else None


def format_table(rows: list) -> str:
    cols = systems()
    head = f"{'op':<5} {'requires_grad':<13} " + " ".join(f"{c + ' us':>9}" for c in cols)
    head += f" {'gradc/torch':>11}" if "torch" in cols else ""
    lines = [head, "-" * len(head)]
    for (name, rg), row in rows:
        cells = " ".join(f"{row[c]:9.2f}" if row[c] is not None else f"{'-':>9}" for c in cols)
        r = ratio(row)
        lines.append(f"{name:<5} {str(rg):<13} {cells}" + (f" {r:11.2f}" if r is not None else ""))
    return "\n".join(lines)


def verdict(rows: list) -> str:
    if torch is None:
        return "torch is not installed: the gradc/torch <= 4 target could not be checked"
    ratios = [ratio(row) for _, row in rows]
    worst = max(ratios)
    ok = all(r <= TARGET for r in ratios)
    return (f"every gradc/torch ratio <= {TARGET:g}: {'yes' if ok else 'no'} "
            f"(worst {worst:.2f}x; {SIZE}-element float32, OMP_NUM_THREADS=2)")


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = [((name, rg), measure(name, rg, args.repeat, args.number)) for name in OPS for rg in (False, True)]
    print(f"eager overhead per call, median of {args.repeat} x {args.number} calls "
          f"(gradc {gradc.__version__}, numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch is not None else "") + ")")
    print(format_table(rows))
    print(verdict(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
