#!/usr/bin/env bash
# One command: build Tailor and run the quickstart pipeline end to end.
#   ./scripts/quickstart.sh
# Installs what is missing (nothing outside the package registries), builds the
# release binary, then validates, plans, runs and shows pipelines/quickstart.
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
echo
echo "Artifacts: pipelines/quickstart/.tailor/   lock file: pipelines/quickstart/tailor.lock"
echo "Report: pipelines/quickstart/report.html   review page: $($T -f $P show scored --path)/review.html"
