#!/usr/bin/env bash
# Scale benchmark of the data stages: collect → clean → format on N records
# (default 5,000,000, ~2.3 GB of JSONL) in bounded memory.
#
#   bash bench/scale_data.sh [N]
#
# The records come from bench/make_many_records.py (made once, kept in
# peer-data/many/). The pipeline cleans with normalize, filter, exact and
# near dedup (the defaults: character 3-grams, 40 × 5 bands, Jaccard ≥ 0.6),
# PII redaction and the majority register, then tokenizes with the
# quickstart's tokenizer (ChatML, split 1 % validation). Each stage is run on
# its own, so each line's peak RSS (/usr/bin/time's maximum resident set
# size, which counts mapped file pages too) is that stage's.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000000}
DATA=$(realpath -m "peer-data/many/records-$N.jsonl")
mkdir -p "$(dirname "$DATA")"
[ -s "$DATA" ] || python3 bench/make_many_records.py "$DATA" --n "$N"
cargo build --release --quiet -p tailor
T=$(realpath target/release/tailor)
WORK=$(mktemp -d "$(realpath peer-data)/scale.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ln -s "$DATA" "$WORK/records.jsonl"
cp -r pipelines/quickstart/models "$WORK/models"
cat > "$WORK/tailor.yaml" <<'YAML'
version: 1
name: scale
outside_paths: allow
stages:
  raw:
    kind: collect
    sources: [{path: records.jsonl}]
  cleaned:
    kind: clean
    input: raw
    steps:
      - normalize: {nfkc: true}
      - filter: {min_chars: 2, max_chars: 4000}
      - dedup: {exact: true, near: {}}
      - pii: {action: redact}
      - style: {politeness: majority, action: report}
  formatted:
    kind: format
    input: cleaned
    tokenizer: models/tiny
    template: chatml
    max_tokens: 512
    split: {validation: 0.01, seed: 0}
YAML
cd "$WORK"
echo "records=$N bytes=$(stat -L -c %s records.jsonl) cpus=$(nproc) load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| stage | wall | peak RSS | result |\n|---|---:|---:|---|\n'
for s in raw cleaned formatted; do
  /usr/bin/time -f "%e %M" -o .t "$T" run "$s" > .out 2>&1 || { cat .out; exit 1; }
  read -r wall kb < .t
  res=$(grep -o "ok *$s in [0-9.]*s *.*" .out | sed "s/ok *$s in [0-9.]*s *//")
  printf '| %s | %.1f s | %.0f MiB | %s |\n' "$s" "$wall" "$((kb / 1024))" "$res"
done
