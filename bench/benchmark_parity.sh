#!/usr/bin/env bash
# Agreement of the `benchmark` stage with transformers on SmolLM2-135M: the
# base model's per-choice log-probabilities and picks on the SmolLM2
# example's cloze tasks, scored again in Python (bench/benchmark_parity.py)
# on the same imported weights, prompts rebuilt independently.
#   bash bench/benchmark_parity.sh
# Needs: a finished run of pipelines/smollm2 (its `general` stage), and the
# reference venv (.venv with torch==2.13.0 transformers; README, "reference stack").
set -euo pipefail
cd "$(dirname "$0")/.."
T=${TAILOR:-target/debug/tailor}
HF=peer-train/smollm2-import
[ -f "$HF/model.safetensors" ] || $T import .models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$HF" >/dev/null
ITEMS=$(cd pipelines/smollm2 && "../../$T" show general.results --path)/items.jsonl
HF_HUB_OFFLINE=1 .venv/bin/python bench/benchmark_parity.py "$HF" pipelines/smollm2 "$ITEMS" base \
  cloze-en=benchmarks/cloze-en.jsonl cloze-ja=benchmarks/cloze-ja.jsonl:none
