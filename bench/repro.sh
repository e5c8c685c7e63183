#!/usr/bin/env bash
# Reproducibility of training bytes: the `tuned` stage of pipelines/loop per
# method (full, LoRA, QLoRA on the tiny model), trained with 1 and 2 libtorch
# threads under the pinned kernels (what Tailor runs), and with this CPU's
# own kernels (AVX-512 here, MKL's automatic path) to stand in
# for another CPU model. Prints one table row per method: the largest
# |Δweight| between the 1- and 2-thread models and between pinned and
# native kernels, over every float32 tensor the model artifact holds
# (0 = bit-identical weights; the artifact digests differ regardless,
# because train.json records the settings, the thread count among them).
#
#   bash bench/repro.sh [STEPS]        (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-100}
cargo build --release --quiet --workspace --bins
T=$(realpath target/release/tailor)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r pipelines/loop "$WORK/loop"
rm -rf "$WORK/loop/.tailor" "$WORK/loop/tailor.lock"
cd "$WORK/loop"
digest() { # method threads [env...] → artifact digest and its directory
  local m=$1 t=$2; shift 2
  env "$@" "$T" run tuned -p steps="$STEPS" --set stages.tuned.method="$m" --set stages.tuned.threads="$t" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  local d
  d=$("$T" show tuned --path -p steps="$STEPS" --set stages.tuned.method="$m" --set stages.tuned.threads="$t")
  echo "$(basename "$d") $d"
}
maxdiff() { python3 - "$1" "$2" <<'PY'
import json, struct, sys, glob, os
def load(d):
    out = {}
    for f in glob.glob(os.path.join(d, "**", "*.safetensors"), recursive=True):
        b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k == "__metadata__" or v["dtype"] != "F32": continue
            s, e = v["data_offsets"]; raw = b[8 + n + s: 8 + n + e]
            out[os.path.relpath(f, d) + ":" + k] = struct.unpack(f"<{len(raw)//4}f", raw)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
print(max((abs(x - y) for k in a if k in b for x, y in zip(a[k], b[k])), default=float("nan")))
PY
}
printf "| method | max abs diff, 1 vs 2 threads | max abs diff, pinned vs native kernels (2 threads) |\n|---|---|---|\n"
for m in full lora qlora; do
  read -r _ p1 < <(digest "$m" 1)
  read -r _ p2 < <(digest "$m" 2)
  read -r _ pn < <(digest "$m" 2 MKL_CBWR=AUTO ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=ALL)
  printf "| %s | %s | %s |\n" "$m" "$(maxdiff "$p1" "$p2")" "$(maxdiff "$p2" "$pn")"
done
