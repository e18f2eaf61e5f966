#!/usr/bin/env bash
# Run redis-py's own test suite against a real redis-server 7.0 and a debug
# ferrite, and list the tests that pass on Redis but fail on ferrite.
# NOT part of CI: it needs a local mirror of redis-py (see README.md).
#
# usage: tests/redispy/run.sh [OUTDIR]
# env:   REDISPY_REPO  git dir of redis-py (default /work/.mirror/redis+redis-py/repo)
#        REDISPY_TAG   tag to test (default v8.1.0, match the installed `redis` package)
#        REDIS_PORT / FERRITE_PORT (default 17300 / 17301)
#        FERRITE       ferrite binary (default target/debug/ferrite, built if missing)
#        PROTOCOLS     (default "2 3")   FILES (default: the list below)
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp/redispy-run}
REPO=${REDISPY_REPO:-/work/.mirror/redis+redis-py/repo}
TAG=${REDISPY_TAG:-v8.1.0}
RPORT=${REDIS_PORT:-17300}
FPORT=${FERRITE_PORT:-17301}
PROTOCOLS=${PROTOCOLS:-"2 3"}
FILES=${FILES:-"test_commands test_pipeline test_pubsub test_scripting test_function test_connection test_encoding
 test_lock test_monitor test_keyspace_notifications test_client test_connection_pool test_cache test_command_parser
 test_multiprocessing test_legacy_responses_arg test_helpers test_data_structure test_hash"}
# Order-dependent on Redis itself: after earlier pubsub tests it can wait
# forever on redis-server 7.0.15 (it passes alone on both servers).
DESELECT="--deselect tests/test_pubsub.py::TestPubSubSubscribeUnsubscribe::test_ignore_all_subscribe_messages"

die() { echo "run.sh: $*" >&2; exit 1; }
command -v redis-server >/dev/null || die "redis-server (7.0) not found in PATH"
python3 -c 'import redis, pytest' 2>/dev/null || die "python3 needs the redis and pytest packages"
[ -d "$REPO" ] || die "redis-py git mirror not found at $REPO (set REDISPY_REPO)"
FERRITE=${FERRITE:-$ROOT/target/debug/ferrite}
if [ ! -x "$FERRITE" ]; then
  (cd "$ROOT" && nice -n 19 cargo build -p ferrite) || die "cannot build ferrite"
fi
for p in $RPORT $FPORT; do
  if redis-cli -p "$p" ping >/dev/null 2>&1; then die "port $p is already in use"; fi
done

mkdir -p "$OUT"
SRC=$OUT/redis-py
rm -rf "$SRC" && mkdir -p "$SRC"
git -C "$REPO" archive "$TAG" tests | tar -x -C "$SRC" || die "cannot extract tests from $REPO at $TAG"

# Both servers write any dump.rdb into $OUT.
cd "$OUT" || exit 1
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --enable-debug-command yes >"$OUT/redis-server.log" 2>&1 &
RPID=$!
"$FERRITE" --port "$FPORT" --bind 127.0.0.1 --enable-debug-command yes >"$OUT/ferrite.log" 2>&1 &
FPID=$!
trap 'kill $RPID $FPID 2>/dev/null' EXIT
for p in $RPORT $FPORT; do
  for _ in $(seq 1 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$p" ping >/dev/null 2>&1 || die "server on port $p did not start"
done

cd "$SRC" || exit 1
printf '%-32s %-6s %-22s %-22s\n' file proto "redis pass/fail/skip" "ferrite pass/fail/skip" | tee "$OUT/summary.txt"
: >"$OUT/ferrite-only-failures.txt"
# "<n> <word>" from pytest's final summary line (0 when absent).
count() { tail -1 "$2" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0; }
for f in $FILES; do
  for proto in $PROTOCOLS; do
    for side in redis:$RPORT ferrite:$FPORT; do
      name=${side%%:*}; port=${side##*:}
      timeout 600 nice -n 19 python3 -m pytest -q -p no:cacheprovider -W ignore -rA \
        -m "not redismod and not onlycluster" --protocol="$proto" --redis-url="redis://127.0.0.1:$port" \
        $DESELECT "tests/$f.py" >"$OUT/$name-$proto-$f.log" 2>&1
      grep -E '^(PASSED|FAILED|ERROR) tests/' "$OUT/$name-$proto-$f.log" | sed 's/ - .*//' |
        sort >"$OUT/$name-$proto-$f.list"
    done
    r=$OUT/redis-$proto-$f.list; fl=$OUT/ferrite-$proto-$f.list
    rl=$OUT/redis-$proto-$f.log; fll=$OUT/ferrite-$proto-$f.log
    printf '%-32s %-6s %-22s %-22s\n' "$f" "$proto" \
      "$(count passed "$rl")/$(( $(count failed "$rl") + $(count error "$rl") ))/$(count skipped "$rl")" \
      "$(count passed "$fll")/$(( $(count failed "$fll") + $(count error "$fll") ))/$(count skipped "$fll")" |
      tee -a "$OUT/summary.txt"
    # Passed on Redis, not passed on ferrite.
    comm -23 <(grep '^PASSED ' "$r" | cut -d' ' -f2 | sort) <(grep '^PASSED ' "$fl" | cut -d' ' -f2 | sort) |
      sed "s/^/RESP$proto /" >>"$OUT/ferrite-only-failures.txt"
  done
done
echo "ferrite-only failures: $(wc -l <"$OUT/ferrite-only-failures.txt") (list in $OUT/ferrite-only-failures.txt)"
