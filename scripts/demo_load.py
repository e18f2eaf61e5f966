#!/usr/bin/env python3
"""The demo's live client load: writes through the proxy, logs every
acknowledged write, and later checks that each one is in Ferrite.

  demo_load.py write PORT LOG STOPFILE [--max-ops N] [--max-seconds S]
      One client (redis-py) writing SET / INCR / RPUSH / HSET through the
      proxy on 127.0.0.1:PORT until STOPFILE exists (or the bounds are hit).
      Every acknowledged write is appended to LOG; a failed request is logged
      as a failure (and counted), never retried silently.
  demo_load.py check PORT LOG
      Reads LOG and checks every acknowledged write against the server on
      127.0.0.1:PORT (Ferrite after the migration). Exit 1 on any miss.
"""
import json
import os
import sys
import time

import redis


def write(port, log_path, stop_path, max_ops, max_seconds):
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    t0 = time.monotonic()
    ops = failures = 0
    with open(log_path, "w") as log:
        while ops < max_ops and time.monotonic() - t0 < max_seconds and not os.path.exists(stop_path):
            i = ops
            kind = i % 4
            try:
                if kind == 0:
                    k = f"live:str:{i % 5000}"
                    r.set(k, f"v{i}")
                    rec = ["set", k, f"v{i}"]
                elif kind == 1:
                    k = f"live:ctr:{i % 100}"
                    n = r.incr(k)
                    rec = ["incr", k, n]
                elif kind == 2:
                    k = f"live:list:{i % 50}"
                    r.rpush(k, f"e{i}")
                    rec = ["rpush", k, f"e{i}"]
                else:
                    k = f"live:hash:{i % 200}"
                    r.hset(k, f"f{i % 7}", f"h{i}")
                    rec = ["hset", k, f"f{i % 7}", f"h{i}"]
                log.write(json.dumps(rec) + "\n")
            except redis.RedisError as e:
                failures += 1
                log.write(json.dumps(["failed", str(e)]) + "\n")
            ops += 1
            if ops % 200 == 0:
                log.flush()
    print(f"   client load: {ops} requests, {failures} failed")


def check(port, log_path):
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    last_set, max_incr, lists, last_hset = {}, {}, {}, {}
    acked = failed = 0
    with open(log_path) as f:
        for line in f:
            rec = json.loads(line)
            if rec[0] == "failed":
                failed += 1
                continue
            acked += 1
            if rec[0] == "set":
                last_set[rec[1]] = rec[2]
            elif rec[0] == "incr":
                max_incr[rec[1]] = max(max_incr.get(rec[1], 0), rec[2])
            elif rec[0] == "rpush":
                lists.setdefault(rec[1], []).append(rec[2])
            else:
                last_hset[(rec[1], rec[2])] = rec[3]
    missing = []
    for k, v in last_set.items():
        if r.get(k) != v.encode():
            missing.append(("set", k, v))
    for k, n in max_incr.items():
        got = int(r.get(k) or 0)
        if got < n:
            missing.append(("incr", k, n, got))
    for k, elems in lists.items():
        got = [x.decode() for x in r.lrange(k, 0, -1)]
        pos = 0
        for e in got:  # acknowledged elements must appear, in order
            if pos < len(elems) and e == elems[pos]:
                pos += 1
        if pos != len(elems):
            missing.append(("rpush", k, elems[pos]))
    for (k, fld), v in last_hset.items():
        if r.hget(k, fld) != v.encode():
            missing.append(("hset", k, fld, v))
    print(f"   acknowledged writes: {acked}, failed requests: {failed}, missing in Ferrite: {len(missing)}")
    for m in missing[:10]:
        print("   missing:", m)
    return 0 if not missing and not failed else 1


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "write":
        args = sys.argv[5:]
        max_ops = int(args[args.index("--max-ops") + 1]) if "--max-ops" in args else 2_000_000
        max_s = float(args[args.index("--max-seconds") + 1]) if "--max-seconds" in args else 1800
        write(int(sys.argv[2]), sys.argv[3], sys.argv[4], max_ops, max_s)
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        return check(int(sys.argv[2]), sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
