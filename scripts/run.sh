#!/usr/bin/env bash
# The main job: build and run the Ferrite server in the foreground.
# Listens on 127.0.0.1:${FERRITE_PORT:-6379}; stop with Ctrl-C (SIGINT) or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ferrite
exec target/release/ferrite --bind "${FERRITE_BIND:-127.0.0.1}" --port "${FERRITE_PORT:-6379}" "$@"
