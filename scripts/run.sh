#!/usr/bin/env bash
# The main job.
#   scripts/run.sh            the scripted live migration demo (scripts/demo.sh): Redis Cluster -> Ferrite
#                             through the proxy under a live client load, verified at the end
#   scripts/run.sh gateway    the gateway: ferrite-proxy serving its embedded Ferrite store on
#                             127.0.0.1:${FERRITE_PROXY_PORT:-6380} (redis-cli -p 6380); extra args go to ferrite-proxy
#   scripts/run.sh store ...  only the Ferrite store on 127.0.0.1:${FERRITE_PORT:-6379}; extra args go to ferrite
# Stop with Ctrl-C (SIGINT) or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-demo}" in
  demo)
    [ $# -gt 0 ] && shift
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
    echo "usage: scripts/run.sh [demo|gateway|store] [args...]" >&2
    exit 2
    ;;
esac
