#!/usr/bin/env bash
# Training throughput of the SmolLM2 example's LoRA (r 16, all linear
# layers, float32, 2 threads) on its own replies, by data layout, against
# the fixed-length benchmark workload with the same adapters:
#   padded   batch_size 8, rows padded to the longest in the batch
#   grouped  batch_size 8, group_by_length (what the example uses)
#   packed   batch_size 4, packing: true (rows of up to 128 tokens, attention per sample)
#   masked   the same, attention through a dense block-diagonal mask, and padded/grouped rows
#            computed with their padding (TAILOR_PACKED_ATTENTION=mask: the path before 2026-12-03)
#   bench    tailor-train bench: 4 × 128-token rows of a token stream, no padding
# Tokens/s counts real (non-padding) tokens; rounds alternate.
#   bash bench/packing.sh [ROUNDS]    (STEPS=10 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
STEPS=${STEPS:-10}
source scripts/setup.sh
cargo build --release --quiet --workspace
T=$(realpath target/release/tailor)
TT=$(realpath target/release/tailor-train)
GGUF=$(realpath .models/SmolLM2-135M-Instruct.Q4_1.gguf)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$T" import "$GGUF" --out "$W/hf" >/dev/null
source bench/smollm2_lora.sh
project() { # NAME FORMAT-EXTRA TRAIN-EXTRA BATCH
  lora_project "$W/$1" "packing-$1" "$2" "    batch_size: $4
    threads: 2$3"
}
train_tps() { # NAME [ENV=VALUE]
  read -r tps _ < <(train_run "$W/$1" "${2:-}")
  echo "$tps"
}
bench_tps() {
  "$TT" bench --model "$W/hf" --method lora --seq 128 --batch 4 --steps "$STEPS" --threads 2 --r 16 --alpha 32 --targets all-linear \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["tokens_per_s"])'
}
project padded "" "" 8
project grouped "" $'\n    group_by_length: true' 8
project packed ", packing: true" "" 4
echo "date=$(date -u +%FT%TZ) load=$(cut -d' ' -f1-3 /proc/loadavg) nproc=$(nproc) steps=$STEPS"
echo "round   padded  grouped   packed   masked    bench   packed/bench"
for i in $(seq "$ROUNDS"); do
  p=$(train_tps padded); g=$(train_tps grouped); k=$(train_tps packed); m=$(train_tps packed TAILOR_PACKED_ATTENTION=mask); b=$(bench_tps)
  printf "%-5s %8.1f %8.1f %8.1f %8.1f %8.1f   %.2f\n" "$i" "$p" "$g" "$k" "$m" "$b" "$(echo "$k / $b" | bc -l)"
done
