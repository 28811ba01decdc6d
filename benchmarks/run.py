"""The benchmark of record: the workloads of ../shared/bench/WORKLOADS.md on every available system.

Systems: gradc eager, gradc compiled (`gradc.compile`), numpy written as a user would
(pointwise, softmax, layer norm and small call only: the training workloads would need a
hand-written backward), torch eager and torch.compile (when torch is installed).

Method
- Steady state (gelu, softmax, layernorm, mlp_step, block_step, small_call): one worker
  process per (system, workload group) - `run.py --worker SYSTEM` reading one JSON command
  a line on stdin - so no two systems share a process, OpenMP runtime or compile cache,
  and each process pays its compiles once per run. A setup pass builds every workload
  (first call = compile, untimed here, reported as setup_s), then rounds alternate the
  systems, rotating their order each round, each system timing a few samples of each
  workload; a sample is enough back-to-back calls to last 50 ms (20 ms with --quick),
  timed per call, with the garbage collector off as in `timeit`. Cells are the median of
  all samples. These workers use each system's default compile cache. Training steps:
  the loss function is compiled (gradc.compile, or torch.compile for torch) and
  `backward()` runs the compiled backward; zero_grad and the SGD step run eagerly, as in
  examples/train_loop.py and benchmarks/training_steps.py.
- cold_compile / warm_start (after the steady state): fresh processes by definition. Per repeat and system, a fresh
  empty cache directory (GRADC_CACHE_DIR; TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR for
  torch) serves one process that calls the compiled gelu once (cold), then a second fresh
  process on the same directory (warm). The cell is the wall time measured in this
  process from spawning the child to reading its result (interpreter start and imports
  included); the child's own first-call time is reported beside it. Imports read
  bytecode as from an installed package (pip compiles it; torch's always is): gradc's
  modules are byte-compiled first, and PYTHONDONTWRITEBYTECODE is not passed on.
- Bandwidth bound: a STREAM-like copy kernel in C (`cc -O3 -march=native -fopenmp`, 2
  threads, arrays much larger than the L3 cache, best of several passes) runs once per
  round; for gelu, softmax and layernorm the bound is the bytes that must move (each input
  read once, each output written once) over the median copy bandwidth, and the table
  shows time / bound.
Everything runs with OMP_NUM_THREADS=2 (and torch.set_num_threads(2)), inputs from a
fixed seed. The ratio column is gradc compiled over the best of torch eager and
torch.compile in this run; absolute times drift on shared machines, ratios less so, but
2-thread timings collapse when other processes hold a core, so the report says how busy
the machine was just before and after the run.

--quick (under 2 minutes once torch's default inductor cache holds this script's graphs):
3 rounds of 2 shorter samples, one cold/warm repeat, no torch.compile cold compile (10-15 s
alone: that cell and its ratio read "skipped"), and torch.compile's warm_start runs on
torch's default cache, which the steady-state gelu worker of the same run has filled.

    python benchmarks/run.py [--quick] [--systems gradc_compiled,torch_eager] [--workloads gelu,mlp_step]

Writes benchmarks/results/latest.md and latest.json (or --output-dir).
"""
from __future__ import annotations

import argparse
import compileall
import datetime
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("gradc_eager", "gradc_compiled", "numpy", "torch_eager", "torch_compile")
TORCH_SYSTEMS = ("torch_eager", "torch_compile")
COMPILERS = ("gradc_compiled", "torch_compile")  # the systems with a compile latency

# workload -> group; one steady-state worker per (system, group), startup ones are fresh processes
GROUPS = {"gelu": "kernels", "softmax": "kernels", "layernorm": "kernels", "small_call": "kernels",
          "mlp_step": "training", "block_step": "training", "cold_compile": "startup", "warm_start": "startup"}
WORKLOADS = tuple(GROUPS)
STEADY = tuple(w for w in WORKLOADS if GROUPS[w] != "startup")
NUMPY_WORKLOADS = ("gelu", "softmax", "layernorm", "small_call")

# targets: gradc compiled / best of torch eager and torch.compile (issue 7)
TARGETS = {"gelu": 0.6, "softmax": 1.0, "layernorm": 1.0, "mlp_step": 1.0, "block_step": 1.1, "small_call": 0.25,
           "cold_compile": 0.05, "warm_start": 0.15}
EAGER_TARGETS = {"mlp_step": 1.5}  # gradc eager / torch eager

GELU_SIZE = 4 * 1024 * 1024
ROWS, COLS = 4096, 1024
SMALL_SIZE = 1024
MLP_BATCH, MLP_SIZES = 256, (784, 512, 512, 10)
BLOCK_SHAPE, BLOCK_HEADS = (8, 128, 256), 4
FLOAT_BYTES = 4
# bytes each memory-bound workload must move: its float32 input read once, its output written once
MOVED_BYTES = {"gelu": 2 * GELU_SIZE * FLOAT_BYTES, "softmax": 2 * ROWS * COLS * FLOAT_BYTES,
               "layernorm": 2 * ROWS * COLS * FLOAT_BYTES}

SETTLE_S = 0.05  # pause between two workers' turns: the last one's OpenMP threads stop spinning
REQUEST_TIMEOUT_S = 900.0
WORKER_ENV = {"OMP_NUM_THREADS": "2", "PYTHONHASHSEED": "0"}


def workload_systems(workload: str, systems: tuple[str, ...]) -> tuple[str, ...]:
    """The systems among `systems` that run `workload` (numpy: no training; startup: compilers)."""
    if GROUPS[workload] == "startup":
        return tuple(s for s in systems if s in COMPILERS)
    return tuple(s for s in systems if s != "numpy" or workload in NUMPY_WORKLOADS)


# ---- the workloads, written once for gradc and torch (their APIs agree) and for numpy ----

def gelu(x: Any, tanh: Callable) -> Any:
    """The pointwise chain of WORKLOADS.md, with the library's tanh (numpy, gradc or torch)."""
    return 0.5 * x * (1 + tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def small_chain(x: Any, exp: Callable, tanh: Callable) -> Any:
    """10 chained pointwise ops (add, mul, exp, tanh, sub) on a tiny input: per-call overhead."""
    y = exp((x + 1.0) * 0.5) - x
    y = tanh(tanh(y) * x + 0.25) - 0.125
    return exp(y)


def numpy_softmax(x: Any) -> Any:
    """Row softmax as a numpy user writes it (max subtracted for stability)."""
    import numpy as np

    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_layernorm(x: Any, eps: float = 1e-5) -> Any:
    """Row layer norm without affine as a numpy user writes it (biased variance, like torch)."""
    import numpy as np

    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + eps)


def block_class(nn: ModuleType) -> type:
    """The transformer block of WORKLOADS.md for `nn` (gradc.nn or torch.nn): pre-LN causal
    self-attention, then a 4x GELU MLP, each with a residual (examples/char_transformer.py's
    Block, written once here so that gradc and torch run the same source)."""

    class Block(nn.Module):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(dim)
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.ln2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x: Any, causal_mask: Any) -> Any:
            h = self.ln1(x)
            x = x + self.attn(h, h, h, attn_mask=causal_mask, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))

    return Block


def make_inputs(workload: str) -> tuple:
    """The workload's inputs as numpy arrays, from a fixed seed (the same for every system)."""
    import numpy as np

    rng = np.random.default_rng(0)
    if workload == "mlp_step":
        return (rng.standard_normal((MLP_BATCH, MLP_SIZES[0]), dtype=np.float32),
                rng.integers(0, MLP_SIZES[-1], MLP_BATCH))
    shape = {"gelu": (GELU_SIZE,), "softmax": (ROWS, COLS), "layernorm": (ROWS, COLS), "small_call": (SMALL_SIZE,),
             "block_step": BLOCK_SHAPE}[workload]
    return (rng.standard_normal(shape, dtype=np.float32),)


def library(system: str) -> ModuleType:
    """The module a system's code calls: gradc, torch (2 threads) or numpy."""
    if system.startswith("gradc"):
        import gradc

        return gradc
    if system.startswith("torch"):
        import torch

        torch.set_num_threads(2)
        return torch
    import numpy

    return numpy


def make_call(system: str, workload: str) -> Callable[[], object]:
    """A zero-argument callable that runs `workload` once on `system` (a training step for
    mlp_step and block_step); nothing has been called yet, so the first call compiles."""
    lib = library(system)
    arrays = make_inputs(workload)
    if system == "numpy":
        fn = {"gelu": lambda x: gelu(x, lib.tanh), "softmax": numpy_softmax, "layernorm": numpy_layernorm,
              "small_call": lambda x: small_chain(x, lib.exp, lib.tanh)}[workload]
        return lambda: fn(*arrays)
    compile_fn = lib.compile if system in COMPILERS else None
    inputs = tuple(lib.from_numpy(a) for a in arrays)
    F = lib.nn.functional
    lib.manual_seed(0)
    if workload in ("mlp_step", "block_step"):
        return training_step(lib, workload, inputs, compile_fn)
    fn = {"gelu": lambda x: gelu(x, lib.tanh), "softmax": lambda x: F.softmax(x, dim=-1),
          "layernorm": lambda x: F.layer_norm(x, (COLS,), eps=1e-5),
          "small_call": lambda x: small_chain(x, lib.exp, lib.tanh)}[workload]
    if compile_fn is not None:
        fn = compile_fn(fn)
    return lambda: fn(*inputs)


def training_step(lib: ModuleType, workload: str, inputs: tuple, compile_fn: Callable | None) -> Callable[[], object]:
    """One step of mlp_step (cross-entropy, backward, SGD lr 0.01) or block_step (mean of the
    block's output, backward): the loss function is compiled when `compile_fn` is given."""
    nn, F = lib.nn, lib.nn.functional
    if workload == "mlp_step":
        sizes = MLP_SIZES
        layers = [nn.Linear(sizes[0], sizes[1]), nn.ReLU(), nn.Linear(sizes[1], sizes[2]), nn.ReLU(),
                  nn.Linear(sizes[2], sizes[3])]
        model = nn.Sequential(*layers)
        optimizer = lib.optim.SGD(model.parameters(), lr=0.01)

        def loss_fn(x, y):
            return F.cross_entropy(model(x), y)
    else:
        model = block_class(nn)(BLOCK_SHAPE[-1], BLOCK_HEADS)
        optimizer = None
        seq = BLOCK_SHAPE[1]
        inputs = (*inputs, lib.ones(seq, seq, dtype=lib.bool).triu(1))

        def loss_fn(x, mask):
            return model(x, mask).mean()
    step_fn = compile_fn(loss_fn) if compile_fn is not None else loss_fn

    def step() -> Any:
        model.zero_grad()
        loss = step_fn(*inputs)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        return loss

    return step


def compile_counters(system: str) -> dict[str, int]:
    """The compiler's event counts so far in this process (a fallback or a graph break would
    make a compiled cell measure eager code)."""
    if system == "gradc_compiled":
        from gradc import compiler

        return dict(compiler.counters)
    if system == "torch_compile":
        from torch._dynamo.utils import counters

        return {"graph_breaks": sum(counters["graph_break"].values()),
                "unique_graphs": counters["stats"]["unique_graphs"]}
    return {}


class Prepared:
    """A workload ready to time on this worker's system: called once (compile), then sized."""

    def __init__(self, system: str, workload: str, min_sample_s: float) -> None:
        before = compile_counters(system)
        self.call = make_call(system, workload)
        start = time.perf_counter()
        self.call()
        self.setup_s = time.perf_counter() - start
        start = time.perf_counter()
        self.call()
        once = time.perf_counter() - start
        self.calls = max(1, round(min_sample_s / max(once, 1e-9)))
        self.notes = {k: v - before.get(k, 0) for k, v in compile_counters(system).items()}

    def sample(self) -> float:
        """Seconds per call, over `self.calls` back-to-back calls with the garbage collector off."""
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(self.calls):
                self.call()
            return (time.perf_counter() - start) / self.calls
        finally:
            gc.enable()


def protocol_stream() -> TextIO:
    """This process's real stdout, reserved for JSON replies; fd 1 then points at stderr, so
    anything a library prints (C code included) cannot corrupt the protocol."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def serve(system: str) -> None:
    """Worker loop: each stdin line {"workload", "samples", "min_sample_s"} gets one JSON line
    {"times", "setup_s", "calls", "notes"} or {"error"}; a workload is prepared on first use."""
    out = protocol_stream()
    prepared: dict[str, Prepared | str] = {}
    for line in sys.stdin:
        request = json.loads(line)
        workload = request["workload"]
        if workload not in prepared:
            try:
                prepared[workload] = Prepared(system, workload, request["min_sample_s"])
            except Exception as exc:  # reported in the table's cell; the worker keeps serving
                prepared[workload] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
        job = prepared[workload]
        if isinstance(job, str):
            reply = {"error": job}
        else:
            try:
                reply = {"times": [job.sample() for _ in range(request["samples"])], "setup_s": job.setup_s,
                         "calls": job.calls, "notes": job.notes}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
        print(json.dumps(reply), file=out)


def first_call(system: str) -> None:
    """Fresh-process child of cold_compile / warm_start: time the first call of the compiled
    gelu (its own cache directory comes from the environment) and print it as JSON."""
    out = protocol_stream()
    call = make_call(system, "gelu")
    start = time.perf_counter()
    call()
    print(json.dumps({"first_call_s": time.perf_counter() - start, "notes": compile_counters(system)}), file=out)


# ---- the parent: workers, fresh processes, the copy kernel, the report ----

class Worker:
    """A steady-state worker process; `ask` never raises: a crash or a hang becomes
    {"error": ...} for this and every later request."""

    def __init__(self, system: str, log_dir: Path) -> None:
        self.system = system
        self.log = log_dir / f"{system}-{id(self)}.stderr"
        self.failed: str | None = None
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, __file__, "--worker", system], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True, env=worker_env())
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def ask(self, request: dict) -> dict:
        """Send one command and wait for its reply (up to REQUEST_TIMEOUT_S)."""
        if self.failed:
            return {"error": self.failed}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=REQUEST_TIMEOUT_S)
        except (OSError, queue.Empty) as exc:
            line = None
            if isinstance(exc, queue.Empty):
                self.proc.kill()
                self.failed = f"no reply in {REQUEST_TIMEOUT_S:.0f} s"
        if line is None:
            self.proc.wait()
            self.failed = self.failed or f"worker exited ({self.proc.returncode}): {stderr_tail(self.log)}"
            return {"error": self.failed}
        return json.loads(line)

    def close(self) -> None:
        """End the worker: EOF on its stdin, then a kill if it does not exit."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stderr_tail(path: Path, lines: int = 3) -> str:
    """The last lines of a child's stderr, for a cell that reports its failure."""
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:]) or "no stderr"


def worker_env(**extra: str) -> dict[str, str]:
    """A child's environment: 2 threads, fixed hash seed, never GRADC_EAGER, plus `extra`."""
    env = dict(os.environ, **WORKER_ENV, **extra)
    env.pop("GRADC_EAGER", None)
    return env


def fresh_first_call(system: str, cache: Path | None, log_dir: Path) -> dict:
    """Spawn a fresh child on cache directory `cache` (None: the systems' default caches);
    {"wall_s" (spawn to result, imports included), "first_call_s", "notes"} or {"error"}."""
    dirs = {"GRADC_CACHE_DIR": "gradc", "TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}
    env = worker_env(**({} if cache is None else {name: str(cache / sub) for name, sub in dirs.items()}))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # imports read bytecode, as from any installed package
    log = log_dir / f"first-{system}-{time.monotonic_ns()}.stderr"
    with open(log, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--first-call", system], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env)
        line = proc.stdout.readline()
        wall = time.perf_counter() - start
        proc.stdout.close()
        try:
            proc.wait(timeout=REQUEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if not line:
        return {"error": f"child exited ({proc.returncode}): {stderr_tail(log)}"}
    return {"wall_s": wall, **json.loads(line)}


STREAM_C = r"""
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

/* Copy bandwidth in GB/s (bytes read + bytes written), best of PASSES passes over arrays far
   larger than the last-level cache; first-touch initialisation in the same threads. */
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1L << 26;
    int passes = argc > 2 ? atoi(argv[2]) : 10;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) return 1;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) { a[i] = (float)i; b[i] = 0.0f; }
    double best = 0.0;
    for (int p = 0; p < passes; p++) {
        double t = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) b[i] = a[i];
        t = omp_get_wtime() - t;
        double gbs = 2.0 * n * sizeof *a / t / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("%.3f %g\n", best, (double)b[n / 2]);
    return 0;
}
"""


def build_stream(directory: Path) -> Path:
    """Compile the copy kernel into `directory`; returns the executable."""
    source, binary = directory / "stream.c", directory / "stream"
    source.write_text(STREAM_C)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O3", "-march=native", "-fopenmp", str(source), "-o", str(binary)], check=True,
                   capture_output=True, text=True)
    return binary


def copy_bandwidth(binary: Path) -> float:
    """GB/s of one run of the copy kernel (2 threads, 256 MiB per array)."""
    done = subprocess.run([str(binary)], capture_output=True, text=True, check=True, env=worker_env(),
                          timeout=120)
    return float(done.stdout.split()[0])


def median_or_none(values: list[float]) -> float | None:
    """The median, or None for no values (a cell that never got a sample)."""
    return statistics.median(values) if values else None


def rotated(order: tuple[str, ...], turn: int) -> tuple[str, ...]:
    """`order` started at its turn-th element: who goes first changes every round."""
    k = turn % len(order) if order else 0
    return order[k:] + order[:k]


def measure_steady(systems: tuple[str, ...], workloads: tuple[str, ...], rounds: int, samples: int,
                   min_sample_s: float, stream: Path | None, log_dir: Path) -> tuple[dict, list[float]]:
    """Setup pass then `rounds` alternating rounds; returns ({workload: {system: cell}}, the
    copy bandwidths in GB/s, one per round when `stream` is given)."""
    workers: dict[tuple[str, str], Worker] = {}
    cells: dict[str, dict[str, dict]] = {w: {} for w in workloads}
    bandwidths: list[float] = []

    def ask(system: str, workload: str, count: int) -> dict:
        key = (system, GROUPS[workload])
        if key not in workers:
            workers[key] = Worker(system, log_dir)
        reply = workers[key].ask({"workload": workload, "samples": count, "min_sample_s": min_sample_s})
        time.sleep(SETTLE_S)
        return reply

    try:
        for workload in workloads:
            for system in workload_systems(workload, systems):
                reply = ask(system, workload, 0)
                cells[workload][system] = {"samples": [], "round_medians": [], **reply}
                print(f"  setup {workload:<11} {system:<15} " +
                      (f"error: {reply['error']}" if "error" in reply else f"{reply['setup_s']:.2f} s"), flush=True)
        for r in range(rounds):
            for workload in workloads:
                order = workload_systems(workload, systems)
                for system in rotated(order, r):
                    cell = cells[workload][system]
                    if "error" in cell:
                        continue
                    reply = ask(system, workload, samples)
                    if "error" in reply:
                        cell["error"] = reply["error"]
                        continue
                    cell["samples"] += reply["times"]
                    cell["round_medians"].append(statistics.median(reply["times"]))
            if stream is not None:
                try:
                    bandwidths.append(copy_bandwidth(stream))
                except (subprocess.SubprocessError, ValueError, IndexError) as exc:
                    print(f"  copy kernel failed: {exc}", flush=True)
            print(f"  round {r + 1}/{rounds} done", flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    for row in cells.values():
        for cell in row.values():
            cell.pop("times", None)
            cell["median_s"] = median_or_none(cell["samples"])
            cell["min_s"] = min(cell["samples"], default=None)
    return cells, bandwidths


def measure_startup(systems: tuple[str, ...], workloads: tuple[str, ...], repeats: int, warm_only: set[str],
                    log_dir: Path) -> dict:
    """cold_compile and warm_start cells: per repeat and system, a cold then a warm fresh
    process on one new cache directory, the systems alternating. Systems in `warm_only` skip
    the cold process and start warm on their default cache (filled by the steady-state run)."""
    order = workload_systems("cold_compile", systems)
    compileall.compile_dir(ROOT / "gradc", quiet=1)  # what pip does on install (an editable checkout has no .pyc)
    runs: dict[str, dict[str, list[dict]]] = {w: {s: [] for s in order} for w in ("cold_compile", "warm_start")}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gradc-run-cache-") as tmp:
        for r in range(repeats):
            for system in rotated(order, r):
                cache = None if system in warm_only else Path(tmp) / f"{system}-{r}"
                for workload in ("warm_start",) if system in warm_only else ("cold_compile", "warm_start"):
                    if system in errors:
                        break
                    result = fresh_first_call(system, cache, log_dir)
                    if "error" in result:
                        errors[system] = result["error"]
                        break
                    runs[workload][system].append(result)
                    print(f"  {workload:<12} {system:<15} {result['wall_s']:.2f} s "
                          f"(first call {result['first_call_s']:.2f} s)", flush=True)
    cells: dict[str, dict] = {}
    for workload in workloads:
        cells[workload] = {}
        for system in order:
            if workload == "cold_compile" and system in warm_only:
                cells[workload][system] = {"skipped": "--quick"}
                continue
            done = runs[workload][system]
            walls = [x["wall_s"] for x in done]
            cells[workload][system] = {"median_s": median_or_none(walls), "min_s": min(walls, default=None),
                                       "samples": walls,
                                       "first_call_s": median_or_none([x["first_call_s"] for x in done]),
                                       "notes": done[-1]["notes"] if done else {},
                                       **({"error": errors[system]} if system in errors else {})}
    return cells


def summarise(cells: dict, bandwidth_gbs: float | None) -> dict:
    """Per workload: ratio to the best torch, targets met, time over the bandwidth bound."""
    summary = {}
    for workload, row in cells.items():
        median = {system: cell.get("median_s") for system, cell in row.items()}
        torch_times = [t for t in (median.get("torch_eager"), median.get("torch_compile")) if t]
        ours = median.get("gradc_compiled")
        ratio = ours / min(torch_times) if ours and torch_times else None
        entry = {"ratio": ratio, "target": TARGETS.get(workload),
                 "met": None if ratio is None else ratio <= TARGETS[workload]}
        if workload in EAGER_TARGETS:
            eager, torch_eager = median.get("gradc_eager"), median.get("torch_eager")
            entry["eager_ratio"] = eager / torch_eager if eager and torch_eager else None
            entry["eager_target"] = EAGER_TARGETS[workload]
            entry["eager_met"] = None if entry["eager_ratio"] is None else entry["eager_ratio"] <= entry["eager_target"]
        if workload in MOVED_BYTES and bandwidth_gbs:
            bound = MOVED_BYTES[workload] / (bandwidth_gbs * 1e9)
            entry["bound_s"] = bound
            entry["bound_ratios"] = {s: c["median_s"] / bound for s, c in row.items() if c.get("median_s")}
        summary[workload] = entry
    return summary


def fmt_time(seconds: float | None) -> str:
    """Seconds in the unit that keeps 3-4 significant digits readable (µs, ms, s)."""
    if seconds is None:
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_cell(cell: dict | None) -> str:
    """One system's table cell: its median, or why there is none, and any compiler fallbacks."""
    if cell is None:
        return "n/a"
    if "skipped" in cell:
        return f"skipped ({cell['skipped']})"
    if cell.get("median_s") is None:
        return "error: " + cell.get("error", "no samples").replace("|", "/")[:160]
    text = fmt_time(cell["median_s"])
    if cell.get("first_call_s") is not None:
        text += f" (in-process {fmt_time(cell['first_call_s'])})"
    notes = cell.get("notes", {})
    if notes.get("fallbacks") or notes.get("graph_breaks"):
        text += f" [fallbacks {notes.get('fallbacks', 0)}, graph breaks {notes['graph_breaks']}]"
    return text


def fmt_ratio(value: float | None, target: float | None = None, met: bool | None = None) -> str:
    """A ratio, with its target and verdict when given."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" + ("" if target is None else f" (<= {target:g}: {'yes' if met else 'no'})")


def markdown(report: dict) -> str:
    """The report as markdown: a header, one row per workload, then the notes."""
    systems, cells, summary, v = report["systems"], report["cells"], report["summary"], report["versions"]
    head = ["workload", *systems, "gradc compiled / best torch", "target", "met?", "gradc compiled / bound",
            "gradc eager / torch eager"]
    lines = [f"# gradc benchmarks ({report['date']})", "",
             f"`{report['command']}` on {report['machine']['cpu']} ({report['machine']['cores']} cores), python "
             f"{v.get('python')}, numpy {v.get('numpy')}, torch {v.get('torch')}, gradc {v.get('gradc')} at "
             f"{report['gradc_commit']}; wall time {report['wall_s']:.0f} s.",
             "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for workload, row in cells.items():
        s = summary[workload]
        bound = s.get("bound_ratios", {}).get("gradc_compiled")
        eager = fmt_ratio(s["eager_ratio"], s["eager_target"], s["eager_met"]) if "eager_ratio" in s else ""
        lines.append("| " + " | ".join([workload, *(fmt_cell(row.get(x)) if x in row else "—" for x in systems),
                                        fmt_ratio(s["ratio"]), f"<= {s['target']:g}",
                                        "n/a" if s["met"] is None else ("yes" if s["met"] else "no"),
                                        "" if bound is None else f"{bound:.2f}", eager]) + " |")
    lines += ["", *(f"- {note}" for note in report["notes"])]
    return "\n".join(lines) + "\n"


def machine() -> dict:
    """CPU model (from /proc/cpuinfo), core count and platform of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


def busy_fraction(seconds: float = 1.0) -> float | None:
    """Share of all cores busy over the next `seconds` (from /proc/stat), taken while this run
    has no process of its own: other users' load, which slows 2-thread timings a lot."""
    def ticks() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = ticks()
        time.sleep(seconds)
        total1, idle1 = ticks()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def versions() -> dict:
    """Installed versions, read from package metadata so this process imports none of them."""
    found = {"python": platform.python_version()}
    for name in ("numpy", "torch", "gradc"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> str:
    """HEAD of the checkout, "+dirty" when tracked files differ (read-only: no index refresh)."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              env=env, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, env=env, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def parse_list(value: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list of names from `allowed`, in `allowed`'s order (argparse rejects unknown names)."""
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
    return tuple(n for n in allowed if n in names)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (`--worker` and `--first-call` are the children's)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer, shorter samples; no torch.compile cold compile "
                   "(under 2 minutes)")
    p.add_argument("--systems", type=lambda v: parse_list(v, SYSTEMS), default=SYSTEMS,
                   help=f"comma list of {', '.join(SYSTEMS)}")
    p.add_argument("--workloads", type=lambda v: parse_list(v, WORKLOADS), default=WORKLOADS,
                   help=f"comma list of {', '.join(WORKLOADS)}")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--first-call", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run a child role, or the whole benchmark: measure, print the table, write the files."""
    args = parse_args(argv)
    if args.worker:
        serve(args.worker)
        return 0
    if args.first_call:
        first_call(args.first_call)
        return 0
    began = time.perf_counter()
    busy_before = busy_fraction()
    has_torch = importlib.util.find_spec("torch") is not None
    systems = tuple(s for s in args.systems if has_torch or s not in TORCH_SYSTEMS)
    rounds, samples, min_sample_s, startup_repeats = (3, 2, 0.02, 1) if args.quick else (5, 3, 0.05, 3)
    steady = tuple(w for w in args.workloads if w in STEADY)
    startup = tuple(w for w in args.workloads if w not in STEADY)
    warm_only = {"torch_compile"} if args.quick else set()
    cells: dict[str, dict] = {}
    bandwidths: list[float] = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="gradc-run-") as tmp:
        log_dir = Path(tmp)
        if steady:
            print("steady state (persistent workers)", flush=True)
            stream = None
            if any(w in MOVED_BYTES for w in steady):
                try:
                    stream = build_stream(log_dir)
                except (OSError, subprocess.CalledProcessError) as exc:
                    notes.append(f"The copy kernel did not build ({exc}): no bound column.")
            cells, bandwidths = measure_steady(systems, steady, rounds, samples, min_sample_s, stream, log_dir)
        if startup:
            print("startup (fresh processes)", flush=True)
            cells.update(measure_startup(systems, startup, startup_repeats, warm_only, log_dir))
    busy_after = busy_fraction()
    bandwidth = median_or_none(bandwidths)
    notes += run_notes(rounds, samples, min_sample_s, startup_repeats, args.quick, has_torch)
    if bandwidth:
        notes.append(f"Copy bandwidth: median {bandwidth:.1f} GB/s over {len(bandwidths)} rounds "
                     f"(min {min(bandwidths):.1f}, max {max(bandwidths):.1f}). A memory-bound call moves 32 MiB, "
                     "the size of the L3 cache, so time / bound can go below 1.")
    if max(busy_before or 0, busy_after or 0) > 0.1:
        notes.append(f"Other processes kept {busy_before or 0:.0%} of the cores busy in the second before the run "
                     f"and {busy_after or 0:.0%} in the second after: 2-thread timings slow down several times under "
                     "contention (a thread waits at each barrier for a descheduled peer); trust ratios only from a "
                     "quiet machine.")
    cells = {w: cells[w] for w in WORKLOADS if w in cells}
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
              "versions": versions(), "gradc_commit": git_commit(),
              "command": " ".join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
              "quick": args.quick, "systems": systems, "rounds": rounds, "samples_per_round": samples,
              "min_sample_s": min_sample_s, "busy_before": busy_before, "busy_after": busy_after,
              "copy_bandwidth_gbs": bandwidth, "copy_bandwidths_gbs": bandwidths,
              "cells": cells, "summary": summarise(cells, bandwidth), "notes": notes,
              "wall_s": time.perf_counter() - began}
    text = markdown(report)
    print("\n" + text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "latest.md").write_text(text)
    (args.output_dir / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


def run_notes(rounds: int, samples: int, min_sample_s: float, startup_repeats: int, quick: bool,
              has_torch: bool) -> list[str]:
    """How the cells were measured, printed under the table."""
    notes = [f"Steady-state cells: median of {rounds} rounds x {samples} samples, systems alternating; a sample is "
             f"the time per call over enough back-to-back calls to last {min_sample_s * 1e3:.0f} ms.",
             "Training steps: the loss function is compiled (gradc.compile or torch.compile; backward() runs the "
             "compiled backward), zero_grad and the SGD step run eagerly. numpy has no training rows.",
             f"cold_compile / warm_start: wall time from spawning a fresh process to its result, imports included "
             f"(median of {startup_repeats}; imports from bytecode, gradc's byte-compiled first as pip does); "
             f"'in-process' is the first call alone. Their ratio is to torch.compile.",
             "Steady-state workers use each system's default compile cache (~/.cache/gradc, torch's inductor "
             "cache); compiles are untimed there (setup_s in the JSON)."]
    if quick:
        notes.append("--quick: 3 rounds x 2 samples of >= 20 ms, one cold/warm repeat; torch.compile's cold_compile "
                     "is skipped (10-15 s) and its warm_start uses torch's default cache, which the steady-state gelu "
                     "worker has just filled.")
    if not has_torch:
        notes.append("torch is not installed: its columns and the ratios read n/a.")
    return notes


if __name__ == "__main__":
    raise SystemExit(main())
