#!/usr/bin/env python3
"""Load a mixed dataset into a Redis Cluster for the migration benchmark.

usage: load.py HOST:PORT KEYS VALUE_BYTES BIGKEY_MB

Key i gets a type and a size from i (deterministic, no randomness between runs):
  55% strings: sizes VALUE_BYTES x (0.05, 0.2, 0.5, 1, 1, 1.5, 2.75) in turn (so VALUE_BYTES on average),
       one string in 50 an integer (int encoding);
  15% hashes of 4-19 fields, 10% lists of 4-19 elements, 10% sets of 4-19 members (every other one integers,
       i.e. an intset), 10% sorted sets of 4-19 members with fractional scores; elements are VALUE_BYTES/10 bytes
       (members of sets and sorted sets a little shorter);
  one key in 10 (of every type) has a TTL of 1-2 hours;
  plus, when BIGKEY_MB > 0, one list of BIGKEY_MB megabytes (`bench:bigkey`, 1 KB elements).
Values are slices of a pseudo-random base64 pool, so the RDB/DUMP LZF compression gets no free ride.
Commands are written as RESP to one `redis-cli --pipe` per master (slot of each key from CRC16 = crc_hqx).
Prints the number of keys written.
"""
import base64
import binascii
import random
import subprocess
import sys

import redis


def slot_of(key: bytes) -> int:
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1 : e]
    return binascii.crc_hqx(key, 0) & 16383


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    keys, vbytes, big_mb = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    r = redis.Redis(host=host, port=int(port))
    owner = [None] * 16384
    for start, end, master, *_ in r.execute_command("CLUSTER", "SLOTS"):
        addr = (master[0].decode(), int(master[1]))
        for s in range(start, end + 1):
            owner[s] = addr
    addrs = sorted(set(a for a in owner if a))
    procs = {}
    for a in addrs:
        procs[a] = subprocess.Popen(
            ["redis-cli", "-h", a[0], "-p", str(a[1]), "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            bufsize=1 << 20,
        )
    outs = {a: [] for a in addrs}
    sizes = {a: 0 for a in addrs}

    rnd = random.Random(6)
    pool = base64.b64encode(rnd.randbytes(3 << 20))  # 4 MB of incompressible printable bytes
    plen = len(pool)

    bulk_cache = {}

    def blk(b: bytes) -> bytes:
        return b"$%d\r\n%s\r\n" % (len(b), b)

    def const(b: bytes) -> bytes:
        v = bulk_cache.get(b)
        if v is None:
            v = bulk_cache[b] = blk(b)
        return v

    def val(i: int, n: int) -> bytes:
        off = (i * 2654435761) % (plen - n - 1)
        return blk(pool[off : off + n])

    mults = (0.05, 0.2, 0.5, 1.0, 1.0, 1.5, 2.75)
    esize = max(4, vbytes // 10)
    c_set, c_hset, c_rpush, c_sadd, c_zadd, c_pexpire = (
        const(b"SET"),
        const(b"HSET"),
        const(b"RPUSH"),
        const(b"SADD"),
        const(b"ZADD"),
        const(b"PEXPIRE"),
    )

    def emit(key: bytes, parts, nargs: int):
        a = owner[slot_of(key)]
        buf = outs[a]
        buf.append(b"*%d\r\n" % nargs)
        buf.extend(parts)
        sizes[a] += 1
        if sizes[a] >= 2000:
            procs[a].stdin.write(b"".join(buf))
            buf.clear()
            sizes[a] = 0

    n = 0
    for i in range(keys):
        kind = i % 20
        cnt = 4 + (i * 7) % 16
        if kind < 11:
            key = b"bench:s:%d" % i
            if i % 50 == 0:
                emit(key, [c_set, blk(key), blk(b"%d" % (i * 37))], 3)
            else:
                emit(key, [c_set, blk(key), val(i, max(1, int(vbytes * mults[i % 7])))], 3)
        elif kind < 14:
            key = b"bench:h:%d" % i
            parts = [c_hset, blk(key)]
            for j in range(cnt):
                parts.append(const(b"field:%d" % j))
                parts.append(val(i + j, esize))
            emit(key, parts, 2 + 2 * cnt)
        elif kind < 16:
            key = b"bench:l:%d" % i
            parts = [c_rpush, blk(key)]
            for j in range(cnt):
                parts.append(val(i * 3 + j, esize))
            emit(key, parts, 2 + cnt)
        elif kind < 18:
            key = b"bench:t:%d" % i
            parts = [c_sadd, blk(key)]
            if i % 4 == 0:
                for j in range(cnt):
                    parts.append(const(b"%d" % (j * 1000 + 7)))
            else:
                for j in range(cnt):
                    parts.append(val(i * 5 + j, esize - 2))
            emit(key, parts, 2 + cnt)
        else:
            key = b"bench:z:%d" % i
            parts = [c_zadd, blk(key)]
            for j in range(cnt):
                parts.append(const(b"%d.25" % j))
                parts.append(val(i * 11 + j, esize - 2))
            emit(key, parts, 2 + 2 * cnt)
        if i % 10 == 3:
            emit(key, [c_pexpire, blk(key), blk(b"%d" % (3600000 + (i % 3600) * 1000))], 3)
        n += 1
    if big_mb > 0:
        key = b"bench:bigkey"
        for m in range(big_mb):
            parts = [c_rpush, blk(key)]
            for j in range(1024):
                parts.append(val(m * 1024 + j, 1024))
            emit(key, parts, 2 + 1024)
        n += 1
    for a in addrs:
        procs[a].stdin.write(b"".join(outs[a]))
        procs[a].stdin.close()
    for a in addrs:
        if procs[a].wait() != 0:
            sys.exit(f"redis-cli --pipe to {a} failed")
    print(n)


if __name__ == "__main__":
    main()
