# Sourced by the two top-level scripts: installs what the build and tests need,
# only from the package registries, and only when it is missing. Idempotent.
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup first" >&2; exit 1; }
