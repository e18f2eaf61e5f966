#!/usr/bin/env bash
# The whole test suite: installs missing dependencies, then runs the Rust
# tests (unit, differential against a real redis-server, end to end) and the
# client-library tests (redis-py, redis-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads=2
python3 -m pytest -q tests/clients
