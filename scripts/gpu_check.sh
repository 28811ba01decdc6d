#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (cupy-cuda13x, torch, numpy, jinja2, networkx and cffi
# preinstalled, no registry): install gradc itself, run the GPU tests, the nvcc test and
# the CUDA benchmarks, and print one summary. Finishes in a few minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1 GRADC_CACHE_DIR="${GRADC_CACHE_DIR:-$(mktemp -d)}"
python3 -m pip install -q --no-deps -e . >/tmp/gradc_pip.log 2>&1 || { echo "pip install failed:"; tail -5 /tmp/gradc_pip.log; }
python3 - <<'PY'
import cupy
n = cupy.cuda.runtime.getDeviceCount()
props = cupy.cuda.runtime.getDeviceProperties(0) if n else {}
print(f"GPUs: {n}; device 0: {props.get('name', b'?').decode()}; NVRTC {cupy.cuda.nvrtc.getVersion()}")
PY
start=$SECONDS
timeout 300 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda_gpu.py 2>&1 | tail -25
gpu_status=${PIPESTATUS[0]}
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_render.py tests/test_cuda_device.py 2>&1 | tail -3
render_status=${PIPESTATUS[0]}
timeout 180 python3 benchmarks/cuda_kernels.py --repeat 10 2>&1 | tail -12
echo "summary: GPU tests exit ${gpu_status}, render/device tests exit ${render_status}, $((SECONDS - start)) s"
