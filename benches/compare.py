#!/usr/bin/env python3
"""Throughput and memory of ferrite vs real Redis, measured side by side.

Runs redis-benchmark against a fresh redis-server and a fresh ferrite
(release build) in the same run, alternating between them test by test, and
prints the ratio ferrite/redis for every test at pipeline depths 1 and 16. Then loads
1M keys with 16-byte values into each and compares resident memory.

This is a benchmark, not a test: it prints numbers and never fails on them.
Every loop is bounded; everything talks to 127.0.0.1 only.

Usage: benches/compare.py [--requests N] [--rounds R] [--keys K] [--skip-memory] [--skip-throughput]
                          [--tests set,get,...] [--pipelines 1,16] [--ferrite-arg=--threads --ferrite-arg=1]
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


FERRITE_ARGS = []
FERRITE_BIN = [os.path.join(ROOT, "target", "release", "ferrite")]


def start(kind):
    port = free_port()
    if kind == "redis":
        d = tempfile.mkdtemp()
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", d]
    else:
        cmd = [FERRITE_BIN[0], "--port", str(port), "--bind", "127.0.0.1",
               *FERRITE_ARGS]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    wait_up(port, p)
    return p, port


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench(port, pipeline, n, tests):
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", tests, "-c", "50", "-P", str(pipeline),
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


def load(port, nkeys, make):
    """Pipe `make(i)` commands for i in range(nkeys) through redis-cli --pipe."""
    batch = 50_000
    for start_i in range(0, nkeys, batch):
        payload = b"".join(make(i) for i in range(start_i, min(nkeys, start_i + batch)))
        cli(port, "--pipe", stdin=payload)


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for x in args:
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    return out


# Datasets for the memory comparison: (name, number of items, command maker).
DATASETS = [
    ("1M keys, 16-byte values", lambda n: n, lambda i: resp(b"SET", b"key:%012d" % i, b"v" * 16)),
    ("1M small hashes (5 fields)", lambda n: n,
     lambda i: resp(b"HSET", b"h:%010d" % i, b"name", b"n%d" % i, b"age", b"%d" % (i % 90), b"city", b"paris",
                    b"zip", b"75001", b"score", b"%d" % (i % 1000))),
    ("1M small sets (5 members)", lambda n: n,
     lambda i: resp(b"SADD", b"s:%010d" % i, b"alpha", b"beta", b"gamma", b"m%d" % i, b"x%d" % (i % 7))),
    ("1M-entry stream", lambda n: n,
     lambda i: resp(b"XADD", b"stream", b"%d-1" % (i + 1), b"sensor", b"t%d" % (i % 100), b"value", b"%d" % i)),
]


def memory(nkeys):
    """Resident memory of fresh servers after loading each dataset."""
    print(f"\nresident memory (fresh servers per dataset, RSS after load minus RSS at start)")
    print(f"{'dataset':<30}{'redis MB':>10}{'ferrite MB':>12}{'ratio':>8}")
    for name, count, make in DATASETS:
        res = {}
        for kind in ("redis", "ferrite"):
            p, port = start(kind)
            try:
                before = rss_kb(p.pid)
                load(port, count(nkeys), make)
                time.sleep(1)
                res[kind] = (rss_kb(p.pid) - before) / 1024, rss_kb(p.pid) / 1024
            finally:
                p.terminate()
                p.wait(10)
        r, f = res["redis"][0], res["ferrite"][0]
        print(f"{name:<30}{r:>10.1f}{f:>12.1f}{f / r if r else 0:>7.2f}x   "
              f"(total RSS redis {res['redis'][1]:.1f} MB, ferrite {res['ferrite'][1]:.1f} MB)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--tests", default=TESTS, help="redis-benchmark -t list")
    ap.add_argument("--pipelines", default="1,16", help="pipeline depths to run, comma-separated")
    ap.add_argument("--ferrite-arg", action="append", default=[], help="extra ferrite argument (repeatable)")
    ap.add_argument("--ferrite-bin", help="ferrite binary to run instead of building target/release/ferrite")
    a = ap.parse_args()
    FERRITE_ARGS.extend(a.ferrite_arg)
    if a.ferrite_bin:
        FERRITE_BIN[0] = a.ferrite_bin
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: run scripts/deps.sh")
    if not a.ferrite_bin:
        subprocess.run(["cargo", "build", "--release", "--bin", "ferrite"], cwd=ROOT, check=True)

    if a.skip_throughput:
        memory(a.keys)
        return
    servers = {k: start(k) for k in ("redis", "ferrite")}
    try:
        print(f"redis-benchmark -t {a.tests} -c 50 -n {a.requests} (x4 at -P 16), {a.rounds} rounds; "
              "each test alternates between the servers (the first one alternates too)")
        print("ratio = median over rounds of ferrite/redis from back-to-back runs of the same test (min-max)")
        for pipeline in (int(x) for x in a.pipelines.split(",")):
            # test name -> server -> rps per round
            runs = {}
            for rnd in range(a.rounds):
                for test in a.tests.split(","):
                    order = ("redis", "ferrite") if rnd % 2 == 0 else ("ferrite", "redis")
                    for kind in order:
                        res = bench(servers[kind][1], pipeline, a.requests * (4 if pipeline > 1 else 1), test)
                        for name, rps in res.items():
                            runs.setdefault(name, {"redis": [], "ferrite": []})[kind].append(rps)
            print(f"\n-P {pipeline}")
            print(f"{'test':<36}{'redis rps':>12}{'ferrite rps':>12}{'ratio':>8}  {'min-max':>11}")
            for test, by in runs.items():
                r = statistics.median(by["redis"]) if by["redis"] else 0
                f = statistics.median(by["ferrite"]) if by["ferrite"] else 0
                pairs = [y / x for x, y in zip(by["redis"], by["ferrite"]) if x]
                ratio = statistics.median(pairs) if pairs else 0
                spread = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else ""
                print(f"{test:<36}{r:>12.0f}{f:>12.0f}{ratio:>7.2f}x  {spread:>11}")
        if not a.skip_memory:
            memory(a.keys)
    finally:
        for p, _ in servers.values():
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
