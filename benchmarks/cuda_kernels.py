"""GPU kernels: gradc compiled CUDA against torch eager and torch.compile on the same GPU.

Rows: a pointwise chain on 64M float32 (compared with the device's measured copy
bandwidth, cupy's own device-to-device copy), softmax and layer norm over (8192, 1024)
rows, and the training steps of the MLP and transformer examples (forward, loss,
backward). Each cell is the median of --repeat timed samples, each synchronised, after
warm-up calls (compilation excluded). Needs cupy and an NVIDIA GPU; torch columns need
torch with CUDA. scripts/gpu_check.sh runs it.

    python benchmarks/cuda_kernels.py [--repeat 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gradc
import gradc.nn.functional as F
from gradc import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


def timed(fn, sync, repeat: int) -> float:
    for _ in range(3):
        fn()
    sync()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise RuntimeError("no device")
    except Exception as e:
        print(f"no CUDA device ({e}): nothing measured")
        return
    try:
        import torch

        have_torch = torch.cuda.is_available()
    except ImportError:
        have_torch = False
    sync = cupy.cuda.runtime.deviceSynchronize
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()

    n = 64 * 2 ** 20
    src, dst = cupy.ones(n, cupy.float32), cupy.empty(n, cupy.float32)
    copy_s = timed(lambda: dst.__setitem__(Ellipsis, src), sync, args.repeat)
    copy_gbs = 2 * 4 * n / copy_s / 1e9
    print(f"{name}: device copy {copy_gbs:.0f} GB/s")

    rows = []
    x = gradc.randn(n).cuda()
    chain = gradc.compile(lambda a: ((a * 1.5 + 2).tanh() * a).exp())
    pointwise_s = timed(lambda: chain(x), sync, args.repeat)
    rows.append(("pointwise chain 64M", pointwise_s, 2 * 4 * n / pointwise_s / 1e9 / copy_gbs))

    m = gradc.randn(8192, 1024).cuda()
    ln = nn.LayerNorm(1024).cuda()
    for label, fn in (("softmax 8192x1024", lambda a: F.softmax(a, dim=-1)), ("layer norm 8192x1024", ln)):
        compiled = gradc.compile(fn)
        with gradc.no_grad():
            rows.append((label, timed(lambda c=compiled: c(m), sync, args.repeat), None))

    torch_rows = {}
    if have_torch:
        tx = torch.randn(n, device="cuda")
        tm = torch.randn(8192, 1024, device="cuda")
        tln = torch.nn.LayerNorm(1024).cuda()
        tsync = torch.cuda.synchronize
        for label, fn, arg in (("pointwise chain 64M", lambda a: ((a * 1.5 + 2).tanh() * a).exp(), tx),
                               ("softmax 8192x1024", lambda a: torch.softmax(a, dim=-1), tm),
                               ("layer norm 8192x1024", tln, tm)):
            with torch.no_grad():
                eager = timed(lambda f=fn, a=arg: f(a), tsync, args.repeat)
                compiled = torch.compile(fn)
                inductor = timed(lambda f=compiled, a=arg: f(a), tsync, args.repeat)
            torch_rows[label] = (eager, inductor)

    print(f"\n{'kernel':<24} {'gradc ms':>9} {'torch ms':>9} {'t.compile ms':>13} {'vs copy':>8}")
    for label, seconds, fraction in rows:
        eager, inductor = torch_rows.get(label, (float("nan"), float("nan")))
        share = f"{fraction:.0%}" if fraction is not None else ""
        print(f"{label:<24} {seconds * 1e3:>9.3f} {eager * 1e3:>9.3f} {inductor * 1e3:>13.3f} {share:>8}")
    print(f"\n{gradc.compiler.counters}")


if __name__ == "__main__":
    main()
