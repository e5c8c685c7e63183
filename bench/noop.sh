#!/usr/bin/env bash
# No-op rerun benchmark: Tailor vs DVC on 10,000 JSONL files (~1 GB).
#
#   bash bench/noop.sh [RUNS]
#
# Uses ../shared/bench/make_files.py for the input (into peer-data/files, once) and
# ../shared/bench/peer_dvc.sh for DVC (venv peer-data/venv with `pip install dvc`).
# Tailor's pipeline has one `collect` stage over data/**/*.jsonl (all 10,000 files are
# dependencies, hashed on the first run and then found unchanged through the stat cache).
# Prints wall times (median of RUNS) and the ratios, measured in one sitting.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SHARED=${SHARED:-../shared/bench}
PEER_DIR=$(realpath "${PEER_DIR:-peer-data}")
DATA=$PEER_DIR/files
[ -d "$DATA" ] || python3 "$SHARED/make_files.py" "$DATA"
[ -x "$PEER_DIR/venv/bin/dvc" ] || { python3 -m venv "$PEER_DIR/venv" && "$PEER_DIR/venv/bin/pip" install -q dvc; }
cargo build --release --quiet
T=$(realpath target/release/tailor)
WORK=$(realpath "$(mktemp -d "$PEER_DIR/tailorbench.XXXXXX")")
cp -al "$DATA" "$WORK/data" 2>/dev/null || cp -a "$DATA" "$WORK/data"
cat > "$WORK/tailor.yaml" <<'YAML'
version: 1
name: noop-bench
stages:
  raw:
    kind: collect
    sources: [{path: "data/**/*.jsonl"}]
YAML
t() { /usr/bin/time -f "%e %M" -o "$WORK/.t" "$@" > "$WORK/.out" 2>&1 || { cat "$WORK/.out"; exit 1; }; cat "$WORK/.t"; }
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg) files=$(find "$DATA" -type f | wc -l) bytes=$(du -sb "$DATA" | cut -f1)"
cd "$WORK"
echo "tailor first run (hash 10k files, collect 1 GB): $(t "$T" run) (wall_s maxrss_kB)"
sleep 2   # let the files age past the stat cache's 2 s racy window
"$T" run > /dev/null 2>&1
for i in $(seq "$RUNS"); do t "$T" run; grep -q "Nothing to do" .out || { cat .out; exit 1; }; done > .run
for i in $(seq "$RUNS"); do t "$T" status; done > .status
f=$(find data -type f -name 'shard-05000.jsonl'); { cat "$f"; echo '{"id":"changed","prompt":"p","completion":"c"}'; } > "$f.new" && mv "$f.new" "$f"
for i in 1 2 3; do t "$T" status; grep -q "changed" .out || { cat .out; exit 1; }; done > .changed
TR=$(awk '{print $1}' .run | median); TS=$(awk '{print $1}' .status | median); TC=$(awk '{print $1}' .changed | median)
echo "tailor median_noop_run_s=$TR median_status_s=$TS median_status_1changed_s=$TC maxrss_kB=$(awk '{print $2}' .run | median)"
cd - > /dev/null
VENV=$(realpath "$PEER_DIR/venv") PEER_DIR=$PEER_DIR bash "$SHARED/peer_dvc.sh" "$DATA" "$RUNS" | tee "$WORK/dvc.txt"
DR=$(grep -o 'median_noop_repro_s=[0-9.]*' "$WORK/dvc.txt" | cut -d= -f2)
DS=$(grep -o 'median_noop_status_s=[0-9.]*' "$WORK/dvc.txt" | cut -d= -f2)
DC=$(grep -o 'median_status_1changed_s=[0-9.]*' "$WORK/dvc.txt" | cut -d= -f2)
awk -v tr="$TR" -v dr="$DR" -v ts="$TS" -v ds="$DS" -v tc="$TC" -v dc="$DC" 'BEGIN {
  printf "ratio no-op run: tailor/dvc = %.3f   (target <= 0.1)\n", tr/dr
  printf "ratio no-op status: tailor/dvc = %.3f\n", ts/ds
  printf "ratio status after 1 changed file: tailor/dvc = %.3f\n", tc/dc }'
rm -rf "$WORK"
