#!/usr/bin/env bash
# One command: the whole test suite (unit, integration, golden, parity).
#   ./scripts/test.sh
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --workspace --all-targets --no-fail-fast 2>&1
