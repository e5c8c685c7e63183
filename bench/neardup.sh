#!/usr/bin/env bash
# Near-duplicate detection at the default settings: recall by edit rate and false removals on
# distinct-but-similar records (generated English and Japanese, libs/text/tests/near_dup.rs), then
# throughput of the defaults against the previous defaults (5-grams, 20 × 10, Jaccard ≥ 0.8) on the
# same 100,000 generated records, in one run.
#
#   bash bench/neardup.sh                       # the defaults
#   TAILOR_NEAR=4,40,5,0.7 bash bench/neardup.sh  # other settings: ngram,bands,rows,threshold
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -q -p tailor-text --test near_dup -- --include-ignored --nocapture --test-threads 1 2>&1 | grep -v '^\s*removed\|^\s*as a copy\|^running\|^test \|^$'
