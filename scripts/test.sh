#!/usr/bin/env bash
# One command: formatting and lint checks, then the whole test suite (unit,
# integration, golden, parity, fault injection, property tests).
#   ./scripts/test.sh
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Habits first, failing fast: formatting and lints (rustfmt.toml, clippy.toml).
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets --no-fail-fast 2>&1
