#!/usr/bin/env bash
# CPU microseconds per request (utime + stime from /proc/<pid>/stat) of ferrite-proxy, nutcracker and the
# redis-server behind them, around one redis-benchmark run per target. Needs a release build
# (cargo build --release -p ferrite-proxy), redis-server, redis-benchmark, nutcracker, bc. Loopback only.
#
#   proxy/bench/cpu_per_request.sh            # PROXYARGS="--threads 2" to try other proxy settings,
#                                             # PROXY=path/to/ferrite-proxy for another binary
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
RP=${BASE_PORT:-31001}; PP=$((RP + 1)); NP=$((RP + 2))
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
redis-server --port $RP --bind 127.0.0.1 --save '' --dir "$work" --daemonize no >/dev/null &
R=$!; pids+=($R)
sleep 0.3
# shellcheck disable=SC2086
"${PROXY:-$root/target/release/ferrite-proxy}" --listen 127.0.0.1:$PP --ferrite 127.0.0.1:$RP --log-level warn ${PROXYARGS:-} >/dev/null 2>&1 &
P=$!; pids+=($P)
printf "pool:\n  listen: 127.0.0.1:%s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  servers:\n   - 127.0.0.1:%s:1\n" $NP $RP > "$work/nut.yml"
nutcracker -c "$work/nut.yml" >/dev/null 2>&1 &
N=$!; pids+=($N)
sleep 0.7
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
us() { echo "scale=2; ($2 - $1) * 1000000 / $tck / $3" | bc; }
for P_ in 1 16; do for t in get set; do
  n=$((P_ == 1 ? 200000 : 800000))
  for tgt in redis proxy nutcracker; do
    port=$RP; [ $tgt = proxy ] && port=$PP; [ $tgt = nutcracker ] && port=$NP
    r0=$(cpu $R); p0=$(cpu $P); n0=$(cpu $N)
    rps=$(redis-benchmark -p $port -c 50 -n $n -P $P_ -t $t -d ${DSIZE:-16} --csv 2>/dev/null | tail -1 | cut -d, -f2 | tr -d '"')
    r1=$(cpu $R); p1=$(cpu $P); n1=$(cpu $N)
    echo "$t -P$P_ via $tgt: $rps req/s; us/request: redis-server $(us $r0 $r1 $n), proxy $(us $p0 $p1 $n), nutcracker $(us $n0 $n1 $n)"
  done
done; done
