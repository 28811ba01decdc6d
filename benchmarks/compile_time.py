"""Compile time of gradc.compile: cold, warm from the disk cache in a fresh process, steady state.

Cases: a small pointwise function (gelu-tanh on 4096 float32), a softmax over the rows of
a (256, 512) float32 matrix (reductions), and an MLP training step (Linear(64, 64)-ReLU-
Linear(64, 10) + cross entropy on a 64x64 batch, forward and backward: two graphs).

- cold: first call of the compiled function in a fresh process with an empty cache
  directory (capture, codegen, C compile and load); "of which cc" is the C compiler's share;
- warm: first call in a fresh process whose cache directory a previous run filled (capture,
  codegen, key, hash check and load: the C compiler never runs);
- compiled / eager: steady-state time per call (an in-memory hit), one warm-up first.
cold and warm are measured inside their own subprocess (interpreter start and imports
excluded); each cell is the median of --repeat samples. Caches live in a temp directory.
OMP_NUM_THREADS=2. Timings depend on machine load: compare rows of one run only.

    python benchmarks/compile_time.py [--repeat 3]
"""
from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "2"  # before numpy/OpenMP start their thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradc  # noqa: E402
from gradc import compiler  # noqa: E402
from gradc.compiler import build  # noqa: E402

STEADY_CALLS = {"pointwise": 200, "softmax": 50, "mlp_step": 20}  # calls per steady-state sample


def gelu(x):
    return 0.5 * x * (1 + gradc.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def softmax(x):
    e = (x - x.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def make_case(name: str):
    """(compiled call, eager call) of one case; each call runs it once (a training step for
    the MLP: loss, backward, gradients cleared)."""
    gradc.manual_seed(0)
    if name == "pointwise":
        x = gradc.randn(4096)
        fn = gelu
        return (lambda c=gradc.compile(fn): c(x)), (lambda: fn(x))
    if name == "softmax":
        x = gradc.randn(256, 512)
        return (lambda c=gradc.compile(softmax): c(x)), (lambda: softmax(x))
    nn, F = gradc.nn, gradc.nn.functional
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = gradc.randn(64, 64), gradc.randint(0, 10, (64,))

    def loss(x, y):
        return F.cross_entropy(model(x), y)

    def step(fn):
        model.zero_grad()
        out = fn(x, y)
        out.backward()
        return out

    compiled = gradc.compile(loss)
    return (lambda: step(compiled)), (lambda: step(loss))


def child(name: str) -> None:
    """Time the first compiled call of `name` in this (fresh) process and print it as JSON."""
    spent = [0.0]
    real = build.compile_source

    def timed(source, target):
        start = time.perf_counter()
        try:
            real(source, target)
        finally:
            spent[0] += time.perf_counter() - start

    build.compile_source = timed
    compiled, _ = make_case(name)
    start = time.perf_counter()
    compiled()
    first = time.perf_counter() - start
    print(json.dumps({"first": first, "cc": spent[0], "counters": dict(compiler.counters)}))


def first_call(name: str, cache: Path) -> dict:
    env = dict(os.environ, GRADC_CACHE_DIR=str(cache))
    env.pop("GRADC_EAGER", None)
    done = subprocess.run([sys.executable, __file__, "--child", name], env=env, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"child {name} failed:\n{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["counters"]["fallbacks"] or report["counters"]["graph_breaks"]:
        raise SystemExit(f"child {name} did not compile: {report}")
    return report


def per_call_ms(fn, repeat: int, calls: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return 1e3 * statistics.median(samples)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="samples per cell (>= 1)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    print(f"{'case':12} {'cold ms':>9} {'of which cc':>12} {'warm ms':>9} {'compiled ms':>12} {'eager ms':>9}"
          f"  graphs")
    with tempfile.TemporaryDirectory(prefix="gradc-bench-") as tmp:
        for name in STEADY_CALLS:
            colds, warms = [], []
            for i in range(args.repeat):
                cache = Path(tmp) / f"{name}-{i}"  # empty: a cold compile
                colds.append(first_call(name, cache))
                warms.append(first_call(name, cache))  # the same cache, now filled
                assert warms[-1]["counters"]["compiles"] == 0, warms[-1]
            graphs = colds[0]["counters"]["compiles"]
            assert warms[0]["counters"]["disk_hits"] == graphs
            os.environ["GRADC_CACHE_DIR"] = str(Path(tmp) / f"{name}-0")
            compiled, eager = make_case(name)
            cells = [1e3 * statistics.median(r["first"] for r in colds),
                     1e3 * statistics.median(r["cc"] for r in colds),
                     1e3 * statistics.median(r["first"] for r in warms),
                     per_call_ms(compiled, max(args.repeat, 5), STEADY_CALLS[name]),
                     per_call_ms(eager, max(args.repeat, 5), STEADY_CALLS[name])]
            print(f"{name:12} {cells[0]:9.1f} {cells[1]:12.1f} {cells[2]:9.1f} {cells[3]:12.4f} {cells[4]:9.4f}"
                  f"  {graphs}")
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}: timings depend on machine load "
          "(other processes, a cold page cache); compare rows of one run only.")


if __name__ == "__main__":
    main()
