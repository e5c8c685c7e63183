#!/usr/bin/env bash
# First run over 10,000 JSONL files (~1 GB): Tailor's `tailor run` (hash the
# files, collect 1.6 M records, store them) against DVC's first `dvc repro` of
# ../shared/bench/peer_dvc.sh's project (hash the files, run count.py, cache
# its output), alternating, each in a fresh directory, PAIRS times.
#   bash bench/first_run.sh [PAIRS]
# Input and DVC venv as bench/noop.sh makes them (peer-data/files, peer-data/venv).
# Prints each pair (wall s, user+sys s, peak RSS MiB) and the median ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-5}
PEER_DIR=$(realpath "${PEER_DIR:-peer-data}")
DATA=$PEER_DIR/files
[ -d "$DATA" ] || python3 ../shared/bench/make_files.py "$DATA"
[ -x "$PEER_DIR/venv/bin/dvc" ] || { python3 -m venv "$PEER_DIR/venv" && "$PEER_DIR/venv/bin/pip" install -q dvc; }
cargo build --release --quiet -p tailor
T=$(realpath "${TAILOR_BIN:-target/release/tailor}")
export PATH="$PEER_DIR/venv/bin:$PATH" DVC_NO_ANALYTICS=1 GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid \
       GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
timed() { /usr/bin/time -f "%e %U %S %M" -o "$1/.t" "${@:2}" > "$1/.out" 2>&1 || { cat "$1/.out"; exit 1; }; awk '{printf "%.2f %.2f %.0f", $1, $2 + $3, $4 / 1024}' "$1/.t"; }
tailor_first() {
  local w; w=$(mktemp -d "$PEER_DIR/first.XXXXXX")
  cp -al "$DATA" "$w/data"
  printf 'version: 1\nname: first-run\nstages:\n  raw:\n    kind: collect\n    sources: [{path: "data/**/*.jsonl"}]\n' > "$w/tailor.yaml"
  sync; sleep 2
  (cd "$w" && timed "$w" "$T" run)
  rm -rf "$w"
}
dvc_first() {
  local w; w=$(mktemp -d "$PEER_DIR/first.XXXXXX")
  (cd "$w" && git init -q . && dvc init -q && dvc config core.analytics false && cp -al "$DATA" data \
    && printf 'import os\nn = 0\nfor d, _, fs in os.walk("data"):\n    for f in fs:\n        with open(os.path.join(d, f), "rb") as fh:\n            n += sum(1 for _ in fh)\nwith open("count.txt", "w") as out:\n    out.write(f"{n}\\n")\n' > count.py \
    && printf 'stages:\n  count:\n    cmd: python3 count.py\n    deps:\n      - count.py\n      - data\n    outs:\n      - count.txt\n' > dvc.yaml \
    && echo /data >> .gitignore && git add -A && git commit -qm setup)
  sync; sleep 2
  (cd "$w" && timed "$w" dvc repro)
  rm -rf "$w"
}
echo "date=$(date -u +%FT%TZ) load=$(cut -d' ' -f1-3 /proc/loadavg) dvc=$(dvc --version) nproc=$(nproc)"
echo "pair  tailor(wall cpu MiB)  dvc(wall cpu MiB)  wall ratio"
for i in $(seq "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then a=$(tailor_first); b=$(dvc_first); else b=$(dvc_first); a=$(tailor_first); fi
  echo "$i  $a  $b  $(echo "$a $b" | awk '{printf "%.2f", $1 / $4}')"
done | tee "$PEER_DIR/first_run.txt"
python3 - "$PEER_DIR/first_run.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.split() and l.split()[0].isdigit()]
t = statistics.median(float(r[1]) for r in rows); d = statistics.median(float(r[4]) for r in rows)
tc = statistics.median(float(r[2]) for r in rows); dc = statistics.median(float(r[5]) for r in rows)
r = statistics.median(float(r[7]) for r in rows)
print(f"median first run: tailor {t:.2f} s (cpu {tc:.2f} s), dvc {d:.2f} s (cpu {dc:.2f} s); ratio of medians {t / d:.2f}, median of pair ratios {r:.2f} (target <= 1)")
PY
