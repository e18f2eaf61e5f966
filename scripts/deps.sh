#!/usr/bin/env bash
# Install what the tests and benchmarks need, only when missing:
# Debian's redis-server/redis-tools (Redis 7.0) and Python's redis client + pytest.
set -euo pipefail
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need_apt+=(redis-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian may start a packaged redis-server on 6379; tests use their own ports.
fi
if ! python3 -c "import redis, pytest" >/dev/null 2>&1; then
  echo "deps: installing python packages redis, pytest"
  python3 -m pip install --quiet --disable-pip-version-check redis pytest 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages redis pytest
fi
redis-server --version
