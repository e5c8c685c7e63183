#!/usr/bin/env bash
# The SmolLM2 example's LoRA training (`tuned` in pipelines/smollm2: r 16,
# all linear layers, batches of 8 grouped by length, 60 steps, validation
# every 20) against `tailor-train bench` on unpadded 4 × 128-token rows:
#   bench-qv    q,v r 8 — the README's benchmark row (its "233 tokens/s")
#   bench-same  the example's adapter (all linear, r 16)
# The example's figure is the stage's own "training finished" tokens/s
# (real tokens over the time in training steps; validation and checkpoints
# excluded), the bench's the median step. Rounds alternate.
#   bash bench/example.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
source scripts/setup.sh
cargo build --release --quiet --workspace
T=$(realpath target/release/tailor)
TT=$(realpath target/release/tailor-train)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/pipelines"
cp -r pipelines/smollm2 "$W/pipelines/"
rm -rf "$W/pipelines/smollm2/.tailor" "$W/pipelines/smollm2/tailor.lock"
ln -s "$(realpath .models)" "$W/.models"
"$T" import .models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$W/hf" >/dev/null
(cd "$W/pipelines/smollm2" && "$T" run formatted >/dev/null 2>&1) || { echo "formatting failed in $W" >&2; exit 1; }
source bench/smollm2_lora.sh
example_tps() { read -r tps _ < <(train_run "$W/pipelines/smollm2"); echo "$tps"; }
bench_tps() { # extra flags
  "$TT" bench --model "$W/hf" --method lora --seq 128 --batch 4 --steps 20 --threads 2 "$@" \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["tokens_per_s"])'
}
echo "date=$(date -u +%FT%TZ) load=$(cut -d' ' -f1-3 /proc/loadavg) nproc=$(nproc) cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "round  example  bench-qv  bench-same   example/qv  example/same"
for i in $(seq "$ROUNDS"); do
  e=$(example_tps); q=$(bench_tps); s=$(bench_tps --r 16 --alpha 32 --targets all-linear)
  printf "%-5s %8.1f %9.1f %11.1f   %10.2f  %12.2f\n" "$i" "$e" "$q" "$s" "$(echo "$e / $q" | bc -l)" "$(echo "$e / $s" | bc -l)"
done
