#!/usr/bin/env bash
# The CUDA-enabled build, checked where there is no GPU: install the CUDA
# libtorch from PyPI (TAILOR_CUDA=1 scripts/setup.sh: ~4.8 GB once), build
# tailor-train against it into target/cuda, and show that it links
# torch_cuda, starts, reports no device and trains on the CPU.
#   bash scripts/check-cuda-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TAILOR_CUDA=1
source scripts/setup.sh
CARGO_TARGET_DIR=target/cuda cargo build -p tailor-train --bin tailor-train
T=target/cuda/debug/tailor-train
ldd "$T" | grep -q libtorch_cuda.so || { echo "error: $T does not link libtorch_cuda.so" >&2; exit 1; }
"$T" info
"$T" bench --model train/tests/fixtures/llama_gqa_tied --method lora --steps 3 --warmup 1 --seq 32 --batch 2 \
  | python3 -c 'import json, sys; d = json.load(sys.stdin); print("trained: losses", [round(x, 3) for x in d["losses"]], "tokens/s", round(d["tokens_per_s"]))'
