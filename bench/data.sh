#!/usr/bin/env bash
# Data benchmarks: Tailor's clean vs HF datatrove, Tailor's format vs HF tokenizers.
#
#   bash bench/data.sh
#
# Input: peer-data/rec/records.jsonl (100k records from ../shared/bench/make_records.py) and
# peer-data/tok.json (the byte-level BPE that peer_tokenizers.py trains). Venv: peer-data/venv
# with datatrove, spacy, "xxhash<4", regex, tokenizers (see bench/README.md).
# Everything runs in one sitting; ratios are what to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/bench}
export PEER_DIR=${PEER_DIR:-$(realpath peer-data)}
PY=$PEER_DIR/venv/bin/python
REC=$PEER_DIR/rec/records.jsonl
cargo build --release --quiet
T=$(realpath target/release/tailor)
WORK=$(realpath "$(mktemp -d "$PEER_DIR/databench.XXXXXX")")
ln -s "$REC" "$WORK/records.jsonl"
cp "$PEER_DIR/tok.json" "$WORK/tokenizer.json"
cat > "$WORK/tailor.yaml" <<'YAML'
version: 1
name: data-bench
stages:
  raw:
    kind: collect
    sources: [{path: records.jsonl}]
  cleaned:
    kind: clean
    input: raw
    steps:
      - normalize: {nfkc: true, collapse_whitespace: false, trim: false, strip_control: false}
      - dedup: {exact: true, near: {ngram: 5, bands: 25, rows: 8, threshold: 0.75}}
  formatted:
    kind: format
    input: raw
    tokenizer: tokenizer.json
    template: completion
    max_tokens: 100000
YAML
secs() { python3 -c 'import json,sys; d=json.load(sys.stdin); print([s[1]["seconds"] for s in d["stages"] if s[0]==sys.argv[1]][0])' "$1"; }
echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg) nproc=$(nproc)"
cd "$WORK"
"$T" run raw > /dev/null 2>&1
for th in 1 2; do
  for i in 1 2 3; do
    /usr/bin/time -f "%e" -o .t env RAYON_NUM_THREADS=$th "$T" run raw cleaned --force --json > .json 2> .err || { cat .err; exit 1; }
    echo "$(cat .t) $(secs raw < .json) $(secs cleaned < .json)"
  done | sort -g | sed -n 2p | awk -v th=$th '{printf "tailor clean threads=%d: wall_s=%s (collect %.2f + clean %.2f) records_per_s=%.0f\n", th, $1, $2, $3, 100000/$1}'
done | tee .clean
"$T" show cleaned.rejects --path > .rejpath
python3 "$OLDPWD/bench/clean_quality.py" "$(cat .rejpath)/rejects.jsonl" "$PEER_DIR/rec/records.truth.jsonl"
for th in 1 2; do
  for i in 1 2 3; do
    RAYON_NUM_THREADS=$th "$T" run formatted --force --json > .json 2> .err || { cat .err; exit 1; }
    secs formatted < .json
  done | sort -g | sed -n 2p | awk -v th=$th '{printf "tailor format threads=%d: stage_s=%s records_per_s=%.0f\n", th, $1, 100000/$1}'
done | tee .format
"$T" show formatted --limit 0 | sed -n 1,8p
cd "$OLDPWD"
echo "== peer: datatrove"
"$PY" "$SHARED/peer_datatrove.py" "$REC" --truth "$PEER_DIR/rec/records.truth.jsonl" --workers 1 2 --runs 1 2>/dev/null | grep -E "SUMMARY|recall|false|kept:|workers=" | tee "$WORK/.dt"
echo "== peer: tokenizers"
"$PY" "$SHARED/peer_tokenizers.py" "$REC" --tok "$PEER_DIR/tok.json" --threads 1 2 --runs 3 2>/dev/null | tee "$WORK/.tk"
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "work dir: $WORK"
