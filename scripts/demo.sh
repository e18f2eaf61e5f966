#!/usr/bin/env bash
# The scripted migration demo (the README's main job): a real Redis Cluster (3 masters + 3 replicas)
# on loopback, a Ferrite store, a ferrite-proxy in front of both, a client
# load writing through the proxy the whole time, and ferrite-migrate moving
# every slot to Ferrite with progress bars, then verifying both sides.
# Everything runs on 127.0.0.1 in a temporary directory and is stopped at
# the end (or on Ctrl-C). Installs redis-server/redis-tools when missing.
#
#   scripts/demo.sh                   # default: --method replication, 200k keys
#   DEMO_KEYS=50000 DEMO_METHOD=scan scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh >/dev/null
PROFILE=${DEMO_PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release --bin ferrite --bin ferrite-proxy --bin ferrite-migrate
else
  cargo build --bin ferrite --bin ferrite-proxy --bin ferrite-migrate
fi
BIN=target/$PROFILE
KEYS=${DEMO_KEYS:-200000}
METHOD=${DEMO_METHOD:-replication}
WORK=$(mktemp -d /tmp/ferrite-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A free TCP port whose cluster-bus port (+10000) is free too.
free_port() {
  python3 - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(20000, 50000)
    ok = True
    for q in (p, p + 10000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
EOF
}

wait_ping() { # port, seconds
  for _ in $(seq 1 $(($2 * 20))); do
    redis-cli -p "$1" PING 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  echo "demo: nothing answers on port $1" >&2
  exit 1
}

echo "== starting a Redis Cluster: 3 masters, 3 replicas"
NODES=()
for i in 1 2 3 4 5 6; do
  p=$(free_port)
  mkdir -p "$WORK/n$p"
  redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "$WORK/n$p/nodes.conf" \
    --dir "$WORK/n$p" --save '' --appendonly no --logfile "$WORK/n$p/log" &
  PIDS+=($!)
  NODES+=("127.0.0.1:$p")
done
for n in "${NODES[@]}"; do wait_ping "${n#*:}" 10; done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
SEED=${NODES[0]}
for _ in $(seq 1 200); do
  redis-cli -p "${SEED#*:}" CLUSTER INFO | grep -q 'cluster_state:ok' && break
  sleep 0.1
done
redis-cli --cluster check "$SEED" | tail -3

FP=$(free_port)
echo "== starting Ferrite on 127.0.0.1:$FP"
"$BIN/ferrite" --port "$FP" --dir "$WORK" >"$WORK/ferrite.log" 2>&1 &
PIDS+=($!)
wait_ping "$FP" 20

PP=$(free_port)
MP=$(free_port)
echo "== starting ferrite-proxy on 127.0.0.1:$PP (metrics on 127.0.0.1:$MP/metrics)"
"$BIN/ferrite-proxy" --listen "127.0.0.1:$PP" --upstream-cluster "$SEED" --ferrite "127.0.0.1:$FP" \
  --metrics-listen "127.0.0.1:$MP" >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
wait_ping "$PP" 20

echo "== loading $KEYS keys of every type through the proxy"
python3 - "$KEYS" <<'EOF' | redis-cli -p "$PP" --pipe | tail -1
import sys
def cmd(*a):
    out = [b"*%d\r\n" % len(a)]
    for x in a:
        x = str(x).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    sys.stdout.buffer.write(b"".join(out))
n = int(sys.argv[1])
for i in range(n // 6):
    cmd("SET", f"str:{i}", f"value-{i}" * 4)
    if i % 10 == 0:
        cmd("SET", f"ttl:{i}", "expiring", "EX", 3600)
    cmd("HSET", f"hash:{i}", "name", f"user{i}", "visits", i, "plan", "pro")
    cmd("RPUSH", f"list:{i}", *range(i % 20 + 1))
    cmd("SADD", f"set:{i}", *(f"m{j}" for j in range(i % 15 + 1)))
    cmd("ZADD", f"zset:{i}", *(x for j in range(i % 10 + 1) for x in (j * 1.5, f"p{j}")))
    if i % 20 == 0:
        cmd("XADD", f"stream:{i}", "*", "event", "login", "user", i)
        cmd("PFADD", f"hll:{i}", *(f"v{j}" for j in range(50)))
EOF
redis-cli -p "$PP" SET demo:greeting "hello from before the migration" EX 3600 >/dev/null
echo "   keys in the cluster: $(redis-cli -p "$PP" DBSIZE)"

echo "== a client keeps writing through the proxy during the migration (every acknowledged write is logged)"
python3 scripts/demo_load.py write "$PP" "$WORK/acked.log" "$WORK/stop" --max-seconds 1200 &
LOAD=$!
PIDS+=($LOAD)

echo "== ferrite-migrate plan"
"$BIN/ferrite-migrate" plan --from-redis-cluster "$SEED" --to "127.0.0.1:$FP" | head -20

echo "== ferrite-migrate run --method $METHOD"
"$BIN/ferrite-migrate" run --from-redis-cluster "$SEED" --to "127.0.0.1:$FP" --proxy "127.0.0.1:$PP" \
  --method "$METHOD" --state "$WORK/migrate.state.json"
touch "$WORK/stop"
wait "$LOAD" || true

echo "== ferrite-migrate verify"
"$BIN/ferrite-migrate" verify --from-redis-cluster "$SEED" --to "127.0.0.1:$FP" --proxy "127.0.0.1:$PP" \
  --state "$WORK/migrate.state.json"

echo "== proxy slot table (every slot is now owned by ferrite)"
redis-cli -p "$PP" FERRITE.PROXY SLOTS
echo "== reading through the proxy, now served by Ferrite"
redis-cli -p "$PP" GET demo:greeting
redis-cli -p "$PP" TTL demo:greeting
echo "   keys in Ferrite: $(redis-cli -p "$FP" DBSIZE)"
echo "== checking every acknowledged write of the client load, read from Ferrite directly"
python3 scripts/demo_load.py check "$FP" "$WORK/acked.log"
echo "== done"
