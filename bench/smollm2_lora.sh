# Sourced by bench scripts that train the SmolLM2 example's LoRA (r 16, all
# linear layers, float32, 2 threads) on its replies in a throwaway project.
# Needs T (the tailor binary), GGUF (the model) and STEPS set by the caller.

# lora_project DIR NAME FORMAT_EXTRA TRAIN_LINES: a project whose `tuned`
# stage ends with TRAIN_LINES (YAML lines indented four spaces), formatted.
lora_project() {
  mkdir -p "$1/data"
  cp pipelines/smollm2/data/replies.jsonl "$1/data/"
  cat > "$1/tailor.yaml" <<YAML
version: 1
name: bench-$2
outside_paths: allow
stages:
  raw: {kind: collect, sources: [{path: data/replies.jsonl}]}
  formatted: {kind: format, input: raw, tokenizer: $GGUF, template: tokenizer, max_tokens: 128$3}
  tuned:
    kind: train
    data: formatted
    base: $GGUF
    method: lora
    lora: {r: 16, alpha: 32, targets: [all-linear]}
    lr: 2.0e-3
    max_steps: $STEPS
$4
YAML
  (cd "$1" && "$T" run formatted >/dev/null 2>&1) || { echo "formatting failed in $1" >&2; exit 1; }
}

# train_run DIR [ENV=VALUE]: retrain `tuned`; prints "tokens/s peak-RSS-MiB"
# from the stage's "training finished" line.
train_run() {
  (cd "$1" && env ${2:-} "$T" -v run --force tuned 2>&1) > "$1/.out" || { cat "$1/.out"; exit 1; }
  sed 's/\x1b\[[0-9;]*m//g' "$1/.out" | grep "training finished" | tail -1 | sed -E 's/.*tokens_per_s=([0-9.]+).*peak_rss_mib=([0-9.]+).*/\1 \2/'
}
