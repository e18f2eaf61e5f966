#!/usr/bin/env bash
# The main job.
#   scripts/run.sh            the gateway: ferrite-proxy serving its embedded Ferrite store on
#                             127.0.0.1:${FERRITE_PROXY_PORT:-6380} (redis-cli -p 6380); extra args go to ferrite-proxy
#   scripts/run.sh demo       the scripted live migration demo (scripts/demo.sh)
#   scripts/run.sh store ...  only the Ferrite store on 127.0.0.1:${FERRITE_PORT:-6379}; extra args go to ferrite
# Stop with Ctrl-C (SIGINT) or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-gateway}" in
  demo)
    shift
    exec scripts/demo.sh "$@"
    ;;
  store)
    shift
    cargo build --release --bin ferrite
    exec target/release/ferrite --bind "${FERRITE_BIND:-127.0.0.1}" --port "${FERRITE_PORT:-6379}" "$@"
    ;;
  gateway)
    [ $# -gt 0 ] && shift
    cargo build --release --bin ferrite-proxy
    exec target/release/ferrite-proxy --listen "${FERRITE_PROXY_BIND:-127.0.0.1}:${FERRITE_PROXY_PORT:-6380}" "$@"
    ;;
  *)
    cargo build --release --bin ferrite-proxy
    exec target/release/ferrite-proxy --listen "${FERRITE_PROXY_BIND:-127.0.0.1}:${FERRITE_PROXY_PORT:-6380}" "$@"
    ;;
esac
