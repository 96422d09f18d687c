#!/usr/bin/env bash
# The CUDA checks, for a machine with a GPU: the tests marked gpu, then the comparison with the
# ports on CUDA (training, sampling, peak memory). About ten minutes on one GPU.
# Usage: bash benchmarks/gpu_check.sh [PEERS_ROOT]   (PEERS_ROOT: the ports' checkouts, optional)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.version.cuda)"
timeout 300 python -m pytest -q -m gpu tests | tee "$out/gpu_tests.txt"
peers=()
[ -n "${1:-}" ] && peers=(--peers-root "$1")
timeout 300 python benchmarks/bench_ports.py --device cuda "${peers[@]}" --repeats 2 \
    --out "$out/ports_cuda.json"
