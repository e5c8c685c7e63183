#!/usr/bin/env bash
# GPU numbers for the README, to run the moment a machine with an NVIDIA GPU
# is available: SmolLM2-135M LoRA / QLoRA / full fine-tuning on CUDA bf16,
# with and without activation checkpointing — tokens/s, peak GPU memory
# (nvidia-smi, sampled), model-FLOPs utilisation — and the logits of GPU
# bf16 against CPU float32 on the same token ids.
#   bash bench/gpu.sh [STEPS]
# Prints a Markdown table ready for the README; raw JSON goes to target/gpu-bench/.
# Without a GPU, `DEVICE=cpu PROFILE=debug bash bench/gpu.sh 2` runs the same
# script on the CPU (bf16) to check it, without memory or MFU figures.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-20}
DEVICE=${DEVICE:-cuda}
PROFILE=${PROFILE:-release}
OUT=target/gpu-bench
mkdir -p "$OUT"
source scripts/setup.sh   # with a GPU: the CUDA libtorch (.libtorch-cuda/)
if [ "$PROFILE" = release ]; then cargo build --release -p tailor -p tailor-train; else cargo build -p tailor -p tailor-train; fi
BIN=target/$PROFILE
T=$BIN/tailor-train
M=$OUT/smollm2
[ -f "$M/config.json" ] || "$BIN/tailor" import .models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$M" >/dev/null
"$T" info | tee "$OUT/info.json"
if [ "$DEVICE" = cuda ] && ! grep -q '"cuda_available":true' "$OUT/info.json"; then
  echo "error: libtorch sees no CUDA device (see $OUT/info.json); on a CPU machine use DEVICE=cpu PROFILE=debug" >&2
  exit 1
fi
GPU_NAME=$( [ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name --format=csv,noheader | head -1 || echo cpu)

run() { # name method seq batch [--checkpointing]
  local name=$1 method=$2 seq=$3 batch=$4; shift 4
  local mem="$OUT/$name.mem"
  : > "$mem"
  if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 200 > "$mem" &
    local sampler=$!
  fi
  "$T" bench --model "$M" --method "$method" --device "$DEVICE" --dtype bfloat16 --seq "$seq" --batch "$batch" \
    --steps "$STEPS" --warmup 3 --targets all-linear --r 16 --alpha 32 "$@" > "$OUT/$name.json"
  if [ "$DEVICE" = cuda ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
}

for method in lora qlora full; do
  run "$method" "$method" 512 8
  run "$method-ckpt" "$method" 512 8 --checkpointing
done
"$T" logits --model "$M" --device "$DEVICE" --dtype bfloat16 --seq 512 --batch 2 > "$OUT/logits.json"

python3 - "$OUT" "$GPU_NAME" "$M" <<'PY'
import json, os, sys
out, gpu, model = sys.argv[1], sys.argv[2], sys.argv[3]
# Dense bf16 peak TFLOP/s (override with GPU_TFLOPS).
peaks = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10G": 125, "A10": 125, "RTX 4090": 165, "T4": 65}
peak = float(os.environ.get("GPU_TFLOPS", 0)) or next((v for k, v in peaks.items() if k in gpu), 0)
params = os.path.getsize(os.path.join(model, "model.safetensors")) / 4  # float32 import
print(f"\n{gpu}, SmolLM2-135M, bf16, 8 × 512 tokens, all-linear r 16 (`bash bench/gpu.sh`):\n")
print("| method | checkpointing | tokens/s | peak GPU memory | MFU |")
print("|---|---|---|---|---|")
for method in ["lora", "qlora", "full"]:
    for suffix, ck in [("", "off"), ("-ckpt", "on")]:
        d = json.load(open(f"{out}/{method}{suffix}.json"))
        mem = [int(x) for x in open(f"{out}/{method}{suffix}.mem").read().split() if x.strip().isdigit()]
        mem_s = f"{max(mem) / 1024:.2f} GiB" if mem else "—"
        flops = (6 if method == "full" else 4) * params * d["tokens_per_s"]
        mfu = f"{100 * flops / (peak * 1e12):.1f} %" if peak else "—"
        print(f"| {method} | {ck} | {d['tokens_per_s']:.0f} | {mem_s} | {mfu} |")
l = json.load(open(f"{out}/logits.json"))
print(f"\nLogits, {l['dtype']} on {l['device']} vs CPU float32, {l['tokens']} random tokens: top-1 agreement "
      f"{100 * l['top1_agreement']:.1f} %, mean |Δ| = {l['mean_abs_diff_over_std']:.3f} × the logits' std "
      f"(stated tolerance: top-1 ≥ 85 %, mean |Δ| ≤ 0.1 std; CPU bf16 gives 90.6 % and 0.060).")
ok = l["top1_agreement"] >= 0.85 and l["mean_abs_diff_over_std"] <= 0.1
print("within tolerance" if ok else "OUTSIDE the stated tolerance")
PY
