#!/usr/bin/env python3
"""Load a mixed dataset into a Redis Cluster for the migration benchmark.

usage: load.py HOST:PORT KEYS VALUE_BYTES BIGKEY_MB

Keys: 60% strings (VALUE_BYTES each), 10% each hashes (10 fields), lists (10
elements), sets (10 members), sorted sets (10 members); plus, when
BIGKEY_MB > 0, one list of about BIGKEY_MB megabytes (`bench:bigkey`).
Prints the number of keys written.
"""
import sys

import redis
from redis.cluster import RedisCluster


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    keys, vbytes, big_mb = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rc = RedisCluster(host=host, port=int(port), decode_responses=False)
    val = b"v" * vbytes
    small = b"x" * max(1, vbytes // 10)
    pipe = rc.pipeline(transaction=False)
    n = 0
    for i in range(keys):
        kind = i % 10
        if kind < 6:
            pipe.set(f"bench:s:{i}", val)
        elif kind == 6:
            pipe.hset(f"bench:h:{i}", mapping={f"f{j}": small for j in range(10)})
        elif kind == 7:
            pipe.rpush(f"bench:l:{i}", *[small] * 10)
        elif kind == 8:
            pipe.sadd(f"bench:t:{i}", *[b"m%d" % j for j in range(10)])
        else:
            pipe.zadd(f"bench:z:{i}", {b"m%d" % j: j for j in range(10)})
        n += 1
        if n % 2000 == 0:
            pipe.execute()
    pipe.execute()
    if big_mb > 0:
        chunk = [b"b" * 1024] * 1024  # 1 MB per RPUSH
        for _ in range(big_mb):
            rc.rpush("bench:bigkey", *chunk)
        n += 1
    print(n)


if __name__ == "__main__":
    main()
