#!/usr/bin/env bash
# Greedy generation throughput of the evaluate stage's generator (KV cache,
# batched) against transformers' generate on SmolLM2-135M (bench/generate.py
# says what is held equal).
#   bash bench/generate.sh [NEW_TOKENS] [PROMPTS]
# Needs: .models/ from scripts/setup.sh and the reference venv (.venv with
# torch==2.13.0 transformers; README, "reference stack").
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${1:-64}
N=${2:-32}
T=${TRAINER:-target/release/tailor-train}
[ -x "$T" ] || cargo build --release -p tailor-train
HF=peer-train/smollm2-import
[ -f "$HF/model.safetensors" ] || target/debug/tailor import .models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$HF" >/dev/null
HF_HUB_OFFLINE=1 .venv/bin/python bench/generate.py "$HF" pipelines/smollm2/data/replies.jsonl peer-train/generate "$T" "$NEW" "$N" 8
