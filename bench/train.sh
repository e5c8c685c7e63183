#!/usr/bin/env bash
# Training throughput and memory: Tailor's trainer (`tailor-train bench`,
# release build) against PyTorch 2.13 + transformers + PEFT in Python
# (`../shared/bench/peer_lora.py`) on the same model, token stream, batch,
# sequence length and threads, alternating in one sitting.
#   bash bench/train.sh [STEPS]
# Needs: the reference venv (.venv with torch==2.13.0 transformers peft
# safetensors numpy), .models/ from scripts/setup.sh, and the peer's HF copy
# of SmolLM2 (peer-train/smollm2-hf, made by ../shared/bench/gguf_to_hf.py).
# Tailor runs each workload in float32 and in bfloat16 (weights and matmuls in
# bf16, float32 master weights, norms, softmax and loss in float32); the bf16
# row's last column is the largest difference of its per-step loss from
# Tailor's float32 run, relative to the loss (stated tolerance: 1 %).
# Writes peer-train/bench-*.json; prints a table of ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-12}
PEER=../shared/bench/peer_lora.py
PY=.venv/bin/python
T=target/release/tailor-train
OUT=peer-train
mkdir -p "$OUT"
[ -x "$T" ] || cargo build --release -p tailor-train
[ -d "$OUT/tiny-llama" ] || $PY $PEER --make-tiny "$OUT/tiny-llama" >/dev/null
[ -d "$OUT/smollm2-hf" ] || $PY ../shared/bench/gguf_to_hf.py .models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$OUT/smollm2-hf" >/dev/null

run() { # name model method extra-args
  local name=$1 model=$2 method=$3; shift 3
  $PY $PEER --model "$model" --method "$method" --steps "$STEPS" --seq 128 --batch 4 --threads 2 --dump-data "$OUT/stream-$name.u32" "$@" > "$OUT/bench-$name-peer.json"
  $T bench --model "$model" --method "$method" --steps "$STEPS" --seq 128 --batch 4 --threads 2 --data "$OUT/stream-$name.u32" > "$OUT/bench-$name-tailor.json"
  $T bench --model "$model" --method "$method" --steps "$STEPS" --seq 128 --batch 4 --threads 2 --data "$OUT/stream-$name.u32" --dtype bfloat16 > "$OUT/bench-$name-tailor-bf16.json"
  if [ "$method" = lora ]; then
    $T bench --model "$model" --method qlora --steps "$STEPS" --seq 128 --batch 4 --threads 2 --data "$OUT/stream-$name.u32" > "$OUT/bench-$name-tailor-qlora.json"
    $T bench --model "$model" --method qlora --steps "$STEPS" --seq 128 --batch 4 --threads 2 --data "$OUT/stream-$name.u32" --dtype bfloat16 > "$OUT/bench-$name-tailor-qlora-bf16.json"
  fi
}
run tiny-lora "$OUT/tiny-llama" lora
run tiny-full "$OUT/tiny-llama" full
run smollm2-lora "$OUT/smollm2-hf" lora
run smollm2-full "$OUT/smollm2-hf" full

$PY - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
print(f"{'run':<14} {'peer tok/s':>11} {'tailor tok/s':>13} {'ratio':>6}   {'peer MiB':>9} {'tailor MiB':>11} {'ratio':>6}   {'loss peer→tailor (first, last)'}")
for name in ["tiny-lora", "tiny-full", "smollm2-lora", "smollm2-full"]:
    p = json.load(open(f"{out}/bench-{name}-peer.json")); t = json.load(open(f"{out}/bench-{name}-tailor.json"))
    print(f"{name:<14} {p['tokens_per_s']:>11.0f} {t['tokens_per_s']:>13.0f} {t['tokens_per_s']/p['tokens_per_s']:>6.2f}   {p['peak_rss_mib']:>9.0f} {t['peak_rss_mib']:>11.0f} {t['peak_rss_mib']/p['peak_rss_mib']:>6.2f}   "
          f"{p['first_loss']:.4f}/{t['first_loss']:.4f}, {p['final_loss']:.4f}/{t['final_loss']:.4f}")
    b = json.load(open(f"{out}/bench-{name}-tailor-bf16.json"))
    rel = max(abs(x - y) / abs(y) for x, y in zip(b["losses"], t["losses"]))
    print(f"{name+' bf16':<14} {'':>11} {b['tokens_per_s']:>13.0f} {b['tokens_per_s']/p['tokens_per_s']:>6.2f}   {'':>9} {b['peak_rss_mib']:>11.0f} {b['peak_rss_mib']/p['peak_rss_mib']:>6.2f}   "
          f"loss vs float32: max rel. diff {rel:.2%} over {len(t['losses'])} steps{'' if rel <= 0.01 else '  (over the 1 % tolerance)'}")
    q = f"{out}/bench-{name}-tailor-qlora.json"
    if os.path.exists(q):
        q = json.load(open(q))
        print(f"{name+' qlora':<14} {'':>11} {q['tokens_per_s']:>13.0f} {q['tokens_per_s']/p['tokens_per_s']:>6.2f}   {'':>9} {q['peak_rss_mib']:>11.0f} {q['peak_rss_mib']/p['peak_rss_mib']:>6.2f}   weights {q['weight_bytes']/2**20:.0f} MiB vs {t['weight_bytes']/2**20:.0f} MiB float32")
        q = json.load(open(f"{out}/bench-{name}-tailor-qlora-bf16.json"))
        print(f"{name+' qlora bf16':<14} {'':>11} {q['tokens_per_s']:>13.0f} {q['tokens_per_s']/p['tokens_per_s']:>6.2f}   {'':>9} {q['peak_rss_mib']:>11.0f} {q['peak_rss_mib']/p['peak_rss_mib']:>6.2f}")
PY
