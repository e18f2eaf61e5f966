#!/usr/bin/env bash
# Migration benchmark: ferrite-migrate (both methods) versus `redis-cli --cluster reshard` moving data between
# two real Redis nodes, on loopback, in the same run. Prints keys/s, MB/s and the tool's peak RSS.
#
#   KEYS=1000000 VALUE=600 BIGKEY_MB=200 migrate/bench/bench.sh      (full size: about 1 GB)
#   KEYS=200000 BIGKEY_MB=40 migrate/bench/bench.sh                    (small size, for iteration)
#
# The dataset (load.py): mixed types (strings of varied sizes, hashes, lists, sets, sorted sets, one key in ten
# with a TTL) plus one BIGKEY_MB list. Both ferrite-migrate methods and the reshard move ALL of it: the reshard
# moves every slot of the three masters to a fourth, empty Redis node. MB/s = the source's used_memory_dataset
# (summed over the masters) / seconds, the same figure for all three.
# METHODS (default "replication replication-disk scan"; replication-disk = --method replication --disk-sync) and
# RESHARD=0 select what runs.
#
# Needs redis-server, redis-cli, python3 with redis-py, GNU time, bc. Builds release binaries.
set -euo pipefail
KEYS=${KEYS:-1000000}
VALUE=${VALUE:-600}
BIGKEY_MB=${BIGKEY_MB:-200}
BASE=${BASE_PORT:-24000}
METHODS=${METHODS:-replication replication-disk scan}
RESHARD=${RESHARD:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# PROFILE=debug for a quick check of the script itself (figures are only meaningful in release).
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release -q --bin ferrite --bin ferrite-migrate
else
  cargo build -q --bin ferrite --bin ferrite-migrate
fi
bin=target/$PROFILE
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start_node() { # port
  mkdir -p "$work/$1"
  redis-server --port "$1" --bind 127.0.0.1 --dir "$work/$1" --save '' --appendonly no --daemonize no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 30000 --cluster-allow-replica-migration no \
    --logfile "$work/$1/log" &
  pids+=($!)
}
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done; echo "no server on $1"; exit 1; }

for i in 0 1 2; do start_node $((BASE + i)); done
for i in 0 1 2; do wait_port $((BASE + i)); done
redis-cli --cluster create 127.0.0.1:$BASE 127.0.0.1:$((BASE + 1)) 127.0.0.1:$((BASE + 2)) --cluster-yes >/dev/null
for _ in $(seq 100); do redis-cli -p $BASE cluster info | grep -q cluster_state:ok && break; sleep 0.2; done
sleep 1

echo "loading $KEYS mixed keys (strings of $VALUE B on average) + a ${BIGKEY_MB} MB list ..."
t0=$(date +%s.%N)
n=$(python3 migrate/bench/load.py 127.0.0.1:$BASE "$KEYS" "$VALUE" "$BIGKEY_MB")
t1=$(date +%s.%N)
used=0
for i in 0 1 2; do
  u=$(redis-cli -p $((BASE + i)) info memory | awk -F: '/^used_memory_dataset:/{print $2}' | tr -d '\r')
  used=$((used + u))
done
total=0
for i in 0 1 2; do total=$((total + $(redis-cli -p $((BASE + i)) dbsize))); done
[ "$total" = "$n" ] || { echo "loaded $total keys, expected $n"; exit 1; }
echo "loaded $n keys in $(echo "$t1 - $t0" | bc) s; dataset $((used / 1000000)) MB (used_memory_dataset)"

run_migrate() { # replication | replication-disk | scan
  local port=$((BASE + 10)) method=$1 extra=
  [ "$1" = scan ] && port=$((BASE + 11))
  [ "$1" = replication-disk ] && { port=$((BASE + 12)); method=replication; extra=--disk-sync; }
  $bin/ferrite --port $port --bind 127.0.0.1 >"$work/ferrite-$1.log" 2>&1 &
  pids+=($!)
  wait_port $port
  local s0 s1 rss
  s0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/rss-$1" $bin/ferrite-migrate run --from-redis-cluster 127.0.0.1:$BASE \
    --to 127.0.0.1:$port --method "$method" $extra --state "$work/state-$1.json" --quiet --no-verify $MIGRATE_ARGS \
    >"$work/out-$1" 2>&1 || {
    cat "$work/out-$1"; exit 1; }
  s1=$(date +%s.%N)
  rss=$(cat "$work/rss-$1")
  local secs; secs=$(echo "$s1 - $s0" | bc)
  local tk; tk=$(redis-cli -p $port dbsize)
  [ "$tk" = "$n" ] || { echo "ferrite holds $tk keys after --method $1, expected $n"; cat "$work/out-$1"; exit 1; }
  echo "ferrite-migrate --method $method${extra:+ $extra}: $tk keys in ${secs} s = $(echo "$tk / $secs" | bc) keys/s," \
    "$(echo "$used / 1000000 / $secs" | bc) MB/s; peak RSS $((rss / 1024)) MB"
  echo "$tk $secs" >"$work/rate-$1"
  kill "${pids[-1]}" 2>/dev/null || true
}
MIGRATE_ARGS=${MIGRATE_ARGS:-}
for m in $METHODS; do run_migrate "$m"; done
[ "$RESHARD" = 1 ] || exit 0

# redis-cli --cluster reshard: move every slot of the three masters (all the data) to a fresh empty master.
start_node $((BASE + 5)); wait_port $((BASE + 5))
redis-cli --cluster add-node 127.0.0.1:$((BASE + 5)) 127.0.0.1:$BASE >/dev/null
to_id=$(redis-cli -p $((BASE + 5)) cluster myid)
# Every node must know the new one (gossip) before the reshard addresses it.
for _ in $(seq 300); do
  known=0
  for i in 0 1 2 5; do redis-cli -p $((BASE + i)) cluster nodes | grep -q "^$to_id " && known=$((known + 1)); done
  [ $known = 4 ] && redis-cli --cluster check 127.0.0.1:$BASE >/dev/null 2>&1 && break
  sleep 0.2
done
sleep 1
r0=$(date +%s.%N)
redis-cli --cluster reshard 127.0.0.1:$BASE --cluster-from all --cluster-to "$to_id" --cluster-slots 16384 \
  --cluster-yes --cluster-pipeline 100 >"$work/reshard.log" 2>&1 || { grep -v "^Moving slot" "$work/reshard.log" | tail -20 "$work/reshard.log"; exit 1; }
r1=$(date +%s.%N)
rsecs=$(echo "$r1 - $r0" | bc)
moved=$(redis-cli -p $((BASE + 5)) dbsize)
[ "$moved" = "$n" ] || echo "warning: the reshard moved $moved of $n keys"
echo "redis-cli --cluster reshard: $moved keys in ${rsecs} s = $(echo "$moved / $rsecs" | bc) keys/s," \
  "$(echo "$used * $moved / $n / 1000000 / $rsecs" | bc) MB/s"
for m in $METHODS; do
  read -r tk secs <"$work/rate-$m"
  echo "speedup ($m vs reshard): $(echo "scale=1; ($tk / $secs) / ($moved / $rsecs)" | bc)x in keys/s," \
    "$(echo "scale=1; ($used / $secs) / ($used * $moved / $n / $rsecs)" | bc)x in MB/s"
done
