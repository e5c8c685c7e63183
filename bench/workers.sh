#!/usr/bin/env bash
# One training process against two data-parallel workers on this machine:
# SmolLM2-135M LoRA (r 16, all-linear, float32) on the SmolLM2 example's
# replies, the same global batch both ways (batch_size 4 × grad_accum 2 in
# one process with 2 threads; batch_size 4 × 2 workers with 1 thread each),
# alternating, PAIRS times. 2 cores cannot make two ranks faster than one
# process with 2 threads; this measures what the ranks cost (gradient sums
# over Gloo, a second copy of the model) and shows the loss curves agree.
#   bash bench/workers.sh [PAIRS]    (STEPS=8 by default)
# Prints per run: trainer tokens/s and rank 0's peak RSS (each rank holds
# the same), and the largest loss difference between the two curves.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
STEPS=${STEPS:-8}
source scripts/setup.sh
cargo build --release --quiet --workspace
T=$(realpath target/release/tailor)
GGUF=$(realpath .models/SmolLM2-135M-Instruct.Q4_1.gguf)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
source bench/smollm2_lora.sh
project() { # DIR WORKERS GRAD_ACCUM
  lora_project "$1" "workers-$2" "" "    batch_size: 4
    grad_accum: $3
    workers: $2
    threads: 2"
}
one_run() { train_run "$1"; }
losses() { (cd "$1" && cat "$("$T" show tuned --path)/log.jsonl") | python3 -c 'import sys, json; print(" ".join(str(json.loads(l)["loss"]) for l in sys.stdin))'; }
project "$W/one" 1 2
project "$W/two" 2 1
echo "date=$(date -u +%FT%TZ) load=$(cut -d' ' -f1-3 /proc/loadavg) nproc=$(nproc) steps=$STEPS"
echo "pair  1 process (tok/s MiB)  2 workers (tok/s MiB)  speed ratio"
for i in $(seq "$PAIRS"); do
  read -r a am < <(one_run "$W/one")
  read -r b bm < <(one_run "$W/two")
  printf "%-5s %10.1f %7.0f      %10.1f %7.0f      %.2f\n" "$i" "$a" "$am" "$b" "$bm" "$(echo "$b / $a" | bc -l)"
done
python3 - "$(losses "$W/one")" "$(losses "$W/two")" <<'PY'
import sys
a, b = [list(map(float, s.split())) for s in sys.argv[1:3]]
assert len(a) == len(b), (a, b)
print(f"loss curves: {len(a)} steps, max |difference| {max(abs(x - y) for x, y in zip(a, b)):.2e}")
PY
