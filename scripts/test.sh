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
# A real single-node Slurm for the Slurm executor's tests (tests/cluster.rs).
# Where it cannot start (not root, no Debian packages) those tests say so
# and skip; where it started they must run (TAILOR_REQUIRE_SLURM=1).
if [ -z "${SLURM_CONF:-}" ]; then
  if [ "$(id -u)" = 0 ] && bash scripts/slurm.sh up; then
    export SLURM_CONF="$PWD/target/slurm/slurm.conf" TAILOR_REQUIRE_SLURM=1
    trap 'bash scripts/slurm.sh down' EXIT
  else
    echo "note: Slurm could not be started here; the Slurm executor's tests will skip" >&2
  fi
fi
cargo test --workspace --all-targets --no-fail-fast 2>&1
