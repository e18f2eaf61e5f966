#!/usr/bin/env bash
# Run Redis 7.0's own Tcl test suite against ferrite, in external-server
# mode (default) or in the suite's normal mode (MODE=normal).
#
# Usage: tests/redis-suite/run.sh [unit ...]
#        MODE=normal tests/redis-suite/run.sh [unit ...]
#   units are names like unit/type/string (default: the list in DEFAULT_UNITS;
#   `@integration`: the replication/persistence list INTEGRATION_UNITS, for MODE=normal).
# Environment:
#   REDIS_SRC       Redis 7.0.15 source tree (default /work/redis-src). Only its
#                   tests/ directory is used; get it from
#                   https://download.redis.io/releases/redis-7.0.15.tar.gz
#   UNIT_TIMEOUT    seconds allowed per unit (default 600)
#   FERRITE_BIN     use this ferrite binary instead of building one
#   KEEP_LOGS=1     keep the per-unit logs directory
#   VERBOSE=1       print the names of failing tests
#   MODE=normal     the harness starts the servers itself: src/redis-server in
#                   the suite copy is a wrapper that runs ferrite with the
#                   harness's redis.conf file (stderr merged into the log, where
#                   Redis writes the messages tests wait for, e.g. "Background
#                   saving terminated", "DEBUG LOG"), so units tagged external:skip run
#                   too; src/redis-cli and src/redis-benchmark are the system
#                   ones. Each unit: `test_helper.tcl --single unit/X --clients 1`.
#   FERRITE_THREADS worker threads of each ferrite in normal mode (default 2)
#
# For each unit a fresh ferrite is started on a free loopback port with
# `--enable-debug-command yes` and its own empty `--dir`, the suite runs in --durable mode with one
# client, and the per-unit counts of [ok] / [err] / [exception] / [skip]
# lines are printed. Exit status is 0 when every unit ran with no failure.
set -u

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
REDIS_SRC="${REDIS_SRC:-/work/redis-src}"
UNIT_TIMEOUT="${UNIT_TIMEOUT:-600}"

DEFAULT_UNITS=(
  unit/printver
  unit/type/string unit/type/incr unit/type/list unit/type/list-2 unit/type/list-3
  unit/type/hash unit/type/set unit/type/zset unit/type/stream unit/type/stream-cgroups
  unit/keyspace unit/expire unit/scan unit/sort unit/bitops unit/bitfield unit/geo unit/hyperloglog
  unit/info-command unit/introspection unit/introspection-2 unit/pubsub unit/pubsubshard unit/multi
  unit/protocol unit/quit unit/auth unit/acl unit/acl-v2 unit/tracking unit/querybuf unit/limits
  unit/other unit/dump unit/latency-monitor unit/slowlog unit/info unit/networking unit/pause
  unit/lazyfree unit/memefficiency unit/maxmemory unit/replybufsize unit/pendingquerybuf
  unit/scripting unit/functions
)

# Replication / persistence units (session 5), run with MODE=normal (they
# start their own servers): `MODE=normal tests/redis-suite/run.sh @integration`.
INTEGRATION_UNITS=(
  integration/replication integration/replication-2 integration/replication-3 integration/replication-4
  integration/replication-psync integration/replication-buffer integration/block-repl
  integration/psync2 integration/psync2-reg integration/psync2-pingoff integration/psync2-master-restart
  integration/failover integration/rdb integration/aof integration/aof-race integration/aof-multi-part
  integration/convert-zipmap-hash-on-load integration/convert-ziplist-hash-on-load
  integration/convert-ziplist-zset-on-load integration/logging integration/shutdown integration/redis-cli
  integration/redis-benchmark integration/corrupt-dump unit/wait unit/shutdown unit/aofrw
)

if [ ! -f "$REDIS_SRC/tests/test_helper.tcl" ]; then
  echo "Redis test suite not found at \$REDIS_SRC=$REDIS_SRC." >&2
  echo "Get the Redis 7.0.15 source: curl -LO https://download.redis.io/releases/redis-7.0.15.tar.gz &&" >&2
  echo "tar xzf redis-7.0.15.tar.gz, then run with REDIS_SRC=\$PWD/redis-7.0.15" >&2
  exit 2
fi
TCLSH="$(command -v tclsh8.6 || command -v tclsh || true)"
if [ -z "$TCLSH" ]; then
  echo "tclsh (8.6) is required: apt-get install tcl" >&2
  exit 2
fi

for tool in redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required (redis-cli: apt-get install redis-tools)" >&2; exit 2; }
done

if [ -z "${FERRITE_BIN:-}" ]; then
  (cd "$ROOT" && cargo build -p ferrite --quiet) || { echo "build failed" >&2; exit 2; }
  FERRITE_BIN="$ROOT/target/debug/ferrite"
fi

# A private copy of the suite (it writes tests/tmp and needs src/redis-cli).
WORK="$(mktemp -d /tmp/ferrite-redis-suite.XXXXXX)"
cp -r "$REDIS_SRC/tests" "$WORK/tests"
mkdir -p "$WORK/src" "$WORK/tests/tmp"
for b in redis-cli redis-server redis-benchmark redis-check-aof redis-check-rdb; do
  p="$(command -v "$b" || true)"
  [ -n "$p" ] && ln -sf "$p" "$WORK/src/$b"
done
MODE="${MODE:-external}"
if [ "$MODE" = normal ]; then
  rm -f "$WORK/src/redis-server"
  # exec keeps the pid the harness spawned (it waits for " PID: <pid>").
  # Command-line arguments and the harness's config file (including its
  # `unixsocket` line) pass unchanged (tests check redis-server's
  # command-line parsing); the thread count comes from the environment.
  cat >"$WORK/src/redis-server" <<WRAP
#!/bin/sh
FERRITE_THREADS="${FERRITE_THREADS:-2}" exec "$FERRITE_BIN" "\$@" 2>&1
WRAP
  chmod +x "$WORK/src/redis-server"
elif [ "$MODE" != external ]; then
  echo "MODE must be external or normal" >&2
  exit 2
fi

# Processes left behind by a unit that timed out (servers the harness
# spawned, its test clients): every process whose working directory is
# inside this run's private copy, found by pid.
kill_strays() {
  local d pid cwd
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    [ "$pid" = "$$" ] && continue
    cwd="$(readlink "$d/cwd" 2>/dev/null)" || continue
    case "$cwd" in "$WORK"|"$WORK"/*) kill -9 "$pid" 2>/dev/null ;; esac
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

PID=""
stop_ferrite() {
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
    PID=""
  fi
}
trap 'stop_ferrite; [ "$MODE" = normal ] && kill_strays; [ "${KEEP_LOGS:-0}" = 1 ] || rm -rf "$WORK"' EXIT

start_ferrite() {
  PORT="$(free_port)"
  # A private data directory per unit: SAVE/BGSAVE/AOF files of one unit
  # must not be loaded by the next one (nor land in the caller's cwd).
  local dir="$1.data"
  mkdir -p "$dir"
  "$FERRITE_BIN" --bind 127.0.0.1 --port "$PORT" --enable-debug-command yes --dir "$dir" >"$1" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "ferrite did not start (log $1)" >&2
  return 1
}

# The harness listens on a port just below --baseport: keep parallel runs apart.
BASEPORT="${BASEPORT:-$((22000 + (RANDOM % 300) * 100))}"

units=("$@")
[ ${#units[@]} -eq 0 ] && units=("${DEFAULT_UNITS[@]}")
[ "${units[0]}" = "@integration" ] && units=("${INTEGRATION_UNITS[@]}")

printf '%-28s %5s %5s %5s %5s  %s\n' UNIT OK ERR EXC SKIP NOTE
tot_ok=0; tot_err=0; tot_exc=0; status=0
for u in "${units[@]}"; do
  u="${u%.tcl}"
  log="$WORK/$(echo "$u" | tr / _).log"
  if [ ! -f "$WORK/tests/$u.tcl" ]; then
    printf '%-28s %s\n' "$u" "no such unit"; status=1; continue
  fi
  if [ "$MODE" = normal ]; then
    (cd "$WORK" && timeout -k 10 "$UNIT_TIMEOUT" "$TCLSH" tests/test_helper.tcl \
        --baseport "$BASEPORT" --single "$u" --durable --clients 1 --timeout "$UNIT_TIMEOUT" >"$log" 2>&1)
    rc=$?
    note=""
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && note="TIMEOUT"
    kill_strays
  else
    start_ferrite "$log.server" || { status=1; continue; }
    (cd "$WORK" && timeout -k 10 "$UNIT_TIMEOUT" "$TCLSH" tests/test_helper.tcl --host 127.0.0.1 --port "$PORT" \
        --baseport "$BASEPORT" --single "$u" --durable --clients 1 --timeout "$UNIT_TIMEOUT" --dont-clean >"$log" 2>&1)
    rc=$?
    note=""
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && note="TIMEOUT"
    kill -0 "$PID" 2>/dev/null || note="$note ferrite-died"
    stop_ferrite
  fi
  sed -i 's/\x1b\[[0-9;]*m//g' "$log"
  ok=$(grep -ac '^\[ok\]' "$log"); err=$(grep -ac '^\[err\]' "$log")
  exc=$(grep -ac '^\[exception\]' "$log"); skip=$(grep -ac '^\[skip\]' "$log")
  printf '%-28s %5d %5d %5d %5d  %s\n' "$u" "$ok" "$err" "$exc" "$skip" "$note"
  if [ "${VERBOSE:-0}" = 1 ]; then grep -aE '^\[(err|exception)\]' "$log" | sed 's/^/    /'; fi
  tot_ok=$((tot_ok+ok)); tot_err=$((tot_err+err)); tot_exc=$((tot_exc+exc))
  [ "$err" -gt 0 ] || [ "$exc" -gt 0 ] || [ -n "$note" ] && status=1
done
printf '%-28s %5d %5d %5d\n' TOTAL "$tot_ok" "$tot_err" "$tot_exc"
[ "${KEEP_LOGS:-0}" = 1 ] && echo "logs: $WORK"
exit $status
