#!/usr/bin/env python3
"""RDB load speed of ferrite vs real Redis 7.0, on the same file.

Builds an RDB of about --size-mb MB with a real redis-server (half of it
strings from DEBUG POPULATE, the rest hashes, lists, sets and sorted sets
of mixed sizes written with redis-cli --pipe, some keys with TTLs), then
starts redis-server and ferrite (release build) on a copy of that file and
times each from process start until it answers PING with loading done.
Prints seconds, MB/s and the ratio ferrite/redis.

This is a benchmark, not a test: it prints numbers and never fails on them.
Every loop is bounded; everything talks to 127.0.0.1 only.

Usage: benches/rdb_load.py [--size-mb 1024] [--rounds 1] [--ferrite target/release/ferrite] [--keep DIR]
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ping(port):
    """'PONG', 'LOADING' or None (not listening yet)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            r = s.recv(64)
            if r.startswith(b"+PONG"):
                return "PONG"
            if r.startswith(b"-LOADING"):
                return "LOADING"
            return None
    except OSError:
        return None


def wait_ready(port, proc, limit_s=1800):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} while loading")
        if ping(port) == "PONG":
            return
        time.sleep(0.005)
    raise SystemExit("server did not finish loading in time")


def cli(port, *args, stdin=None):
    return subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, capture_output=True, check=True)


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def build_rdb(dirpath, size_mb):
    """Fill a redis-server until its RDB is about size_mb MB, then SAVE."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", dirpath, "--enable-debug-command", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc, 30)
        target = size_mb * 1024 * 1024
        # Half: strings of 100 bytes from DEBUG POPULATE (~120 bytes each in the RDB).
        nstr = max(1000, target // 2 // 120)
        cli(port, "DEBUG", "POPULATE", str(nstr), "str", "100")
        # Other half: collections, ~8 MB of commands per pipe batch.
        budget = target // 2
        written = 0
        batch, i = [], 0
        while written < budget and i < 10_000_000:
            kind = i % 4
            if kind == 0:  # hash: small (listpack) or big (hashtable)
                n = 10 if i % 8 else 600
                args = ["HSET", f"h:{i}"] + [x for j in range(n) for x in (f"field:{j}", f"value:{i}:{j}")]
            elif kind == 1:
                n = 20 if i % 8 else 1000
                args = ["RPUSH", f"l:{i}"] + [f"item:{i}:{j}" for j in range(n)]
            elif kind == 2:
                n = 16 if i % 8 else 800
                if i % 3 == 0:
                    args = ["SADD", f"s:{i}"] + [str(j * 7) for j in range(n)]  # intset
                else:
                    args = ["SADD", f"s:{i}"] + [f"member:{j}" for j in range(n)]
            else:
                n = 16 if i % 8 else 400
                args = ["ZADD", f"z:{i}"] + [x for j in range(n) for x in (str(j * 1.5), f"zm:{i}:{j}")]
            cmd = resp(*args)
            batch.append(cmd)
            written += sum(len(str(a)) for a in args)
            if i % 10 == 0:
                batch.append(resp("EXPIRE", args[1], 100000))
            i += 1
            if sum(len(b) for b in batch) > 8 << 20:
                cli(port, "--pipe", stdin=b"".join(batch))
                batch = []
        if batch:
            cli(port, "--pipe", stdin=b"".join(batch))
        cli(port, "SAVE")
        cli(port, "SHUTDOWN", "NOSAVE")
    finally:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return os.path.join(dirpath, "dump.rdb")


def time_load(cmd, port):
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        return time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ferrite", default=os.path.join(ROOT, "target", "release", "ferrite"))
    ap.add_argument("--keep", help="reuse/keep the generated RDB in this directory")
    args = ap.parse_args()
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        raise SystemExit("redis-server and redis-cli 7.0 are required")
    if not os.path.exists(args.ferrite):
        raise SystemExit(f"{args.ferrite} not found: run `cargo build --release -p ferrite` first")
    work = args.keep or tempfile.mkdtemp(prefix="rdb-load-")
    os.makedirs(work, exist_ok=True)
    try:
        src = os.path.join(work, "dump.rdb")
        if not os.path.exists(src):
            print(f"building a ~{args.size_mb} MB RDB with redis-server ...", flush=True)
            t = time.monotonic()
            build_rdb(work, args.size_mb)
            print(f"  built in {time.monotonic() - t:.1f}s", flush=True)
        size = os.path.getsize(src)
        mb = size / (1024 * 1024)
        print(f"RDB file: {mb:.1f} MB")
        results = {"redis": [], "ferrite": []}
        for _ in range(args.rounds):
            for name in ("redis", "ferrite"):
                port = free_port()
                if name == "redis":
                    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", work, "--dbfilename", "dump.rdb"]
                else:
                    cmd = [args.ferrite, "--port", str(port), "--bind", "127.0.0.1", "--dir", work]
                results[name].append(time_load(cmd, port))
        best = {k: min(v) for k, v in results.items()}
        for name in ("redis", "ferrite"):
            print(f"{name:8s} load: {best[name]:.2f} s  {mb / best[name]:.1f} MB/s")
        print(f"ratio ferrite/redis (time): {best['ferrite'] / best['redis']:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
