#!/usr/bin/env bash
# Engine scaling: validate + plan, and a no-op run, by number of stages.
#
#   bash bench/scale.sh [COUNTS...]      (default: 100 400 1000 10000)
#
# Each pipeline is one `collect` of a 3-record file followed by a chain of
# N-1 `clean` stages (each reads the previous one). For every count it
# times `tailor validate`, `tailor plan` (nothing cached) and — up to 1,000
# stages, where the first run is cheap enough — the first `tailor run` and
# a no-op `tailor run` (every stage cached), with peak RSS. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${*:-100 400 1000 10000}
cargo build --release --quiet --bin tailor
T=$(realpath target/release/tailor)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
measure() { # prints "seconds peak_MiB" of a command run in $dir
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  awk '{printf "%.3f %.0f", $1, $2/1024}' "$WORK/time"
}
printf "| stages | validate s | plan s | first run s | no-op run s | no-op peak MiB |\n|---:|---:|---:|---:|---:|---:|\n"
for n in $COUNTS; do
  dir=$WORK/p$n
  mkdir -p "$dir/data"
  printf '{"prompt":"a","completion":"b"}\n{"prompt":"c","completion":"d"}\n{"prompt":"e","completion":"f"}\n' > "$dir/data/r.jsonl"
  {
    printf 'version: 1\nname: scale\nstages:\n  s0: {kind: collect, sources: [{path: data/r.jsonl}]}\n'
    for ((i = 1; i < n; i++)); do printf '  s%d: {kind: clean, input: s%d, steps: [{normalize: {nfkc: true}}]}\n' "$i" "$((i - 1))"; done
  } > "$dir/tailor.yaml"
  cd "$dir"
  v=$(measure "$T" validate); p=$(measure "$T" plan)
  if [ "$n" -le 1000 ]; then
    f=$(measure "$T" run -j 2); r=$(measure "$T" run -j 2)
    printf "| %d | %s | %s | %s | %s | %s |\n" "$n" "${v% *}" "${p% *}" "${f% *}" "${r% *}" "${r#* }"
  else
    printf "| %d | %s | %s | — | — | — |\n" "$n" "${v% *}" "${p% *}"
  fi
  cd - >/dev/null
done
