#!/usr/bin/env python3
"""Throughput and memory of ferrite vs real Redis, measured side by side.

Runs redis-benchmark against a fresh redis-server and a fresh ferrite
(release build) in the same run, alternating between them, and prints the
ratio ferrite/redis for every test at pipeline depths 1 and 16. Then loads
1M keys with 16-byte values into each and compares resident memory.

This is a benchmark, not a test: it prints numbers and never fails on them.
Every loop is bounded; everything talks to 127.0.0.1 only.

Usage: benches/compare.py [--requests N] [--rounds R] [--keys K] [--skip-memory]
"""
import argparse
import csv
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TESTS = "set,get,incr,lpush,rpop,sadd,hset,spop,zadd,lrange_100,mset"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_up(port, proc):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"server on {port} exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"server on {port} never answered")


def start(kind):
    port = free_port()
    if kind == "redis":
        d = tempfile.mkdtemp()
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", d]
    else:
        cmd = [os.path.join(ROOT, "target", "release", "ferrite"), "--port", str(port), "--bind", "127.0.0.1"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    wait_up(port, p)
    return p, port


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench(port, pipeline, n):
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", TESTS, "-c", "50", "-P", str(pipeline),
         "-n", str(n), "--csv"], capture_output=True, text=True, timeout=900).stdout
    res = {}
    for row in csv.reader(io.StringIO(out)):
        if len(row) >= 2 and row[0] != "test":
            try:
                res[row[0]] = float(row[1])
            except ValueError:
                pass
    return res


def cli(port, *args, stdin=None):
    return subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, capture_output=True,
                          timeout=600).stdout


def load_keys(port, nkeys):
    batch = 100_000
    value = b"v" * 16
    for start_i in range(0, nkeys, batch):
        payload = b"".join(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$16\r\n%s\r\n" % (i, value)
                           for i in range(start_i, min(nkeys, start_i + batch)))
        cli(port, "--pipe", stdin=payload)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--skip-memory", action="store_true")
    a = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: run scripts/deps.sh")
    subprocess.run(["cargo", "build", "--release", "--bin", "ferrite"], cwd=ROOT, check=True)

    servers = {k: start(k) for k in ("redis", "ferrite")}
    try:
        print(f"redis-benchmark -t {TESTS} -c 50 -n {a.requests}, median of {a.rounds} alternating rounds")
        for pipeline in (1, 16):
            runs = {"redis": [], "ferrite": []}
            for _ in range(a.rounds):
                for kind in ("redis", "ferrite"):
                    runs[kind].append(bench(servers[kind][1], pipeline, a.requests * (4 if pipeline > 1 else 1)))
            print(f"\n-P {pipeline}")
            print(f"{'test':<28}{'redis rps':>14}{'ferrite rps':>14}{'ratio':>8}")
            for test in runs["redis"][0]:
                r = statistics.median(x.get(test, 0) for x in runs["redis"])
                f = statistics.median(x.get(test, 0) for x in runs["ferrite"])
                ratio = f / r if r else 0
                print(f"{test:<28}{r:>14.0f}{f:>14.0f}{ratio:>7.2f}x")
        if not a.skip_memory:
            print(f"\nresident memory, {a.keys} keys with 16-byte values")
            for kind in ("redis", "ferrite"):
                p, port = servers[kind]
                cli(port, "FLUSHALL")
                time.sleep(0.5)
            res = {}
            for kind in ("redis", "ferrite"):
                p, port = servers[kind]
                before = rss_kb(p.pid)
                load_keys(port, a.keys)
                time.sleep(1)
                after = rss_kb(p.pid)
                dbsize = cli(port, "DBSIZE").strip().decode()
                res[kind] = after
                print(f"{kind:<8} dbsize={dbsize} rss_before={before/1024:.1f}MB rss_after={after/1024:.1f}MB")
            print(f"memory ratio ferrite/redis: {res['ferrite'] / res['redis']:.2f}x")
    finally:
        for p, _ in servers.values():
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
