#!/usr/bin/env python3
"""Throughput and latency of ferrite-proxy in front of redis-server, measured in the same run as direct
redis-server and Debian's nutcracker (twemproxy) in front of the same redis-server.

Prints, per test (redis-benchmark, 50 clients, -P 1 and -P 16, GET/SET with 16 B and 1 KB values), the
requests/s of each target and the ratios proxy/redis and proxy/nutcracker, plus p99 latencies (the added p99 is
proxy p99 - redis p99). Needs a release build: `cargo build --release -p ferrite-proxy`.

Each test runs --rounds times per target, the order of the three targets rotating between rounds, and the median
is reported: the machine is shared and noisy, and a target measured always first or always last would be favoured
or penalised by whatever else runs.

Usage: proxy/bench/compare.py [--requests N] [--rounds R] [--proxy PATH] [--proxy-args "..."]
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what):
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited during startup")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not answer on {port}")


def need(exe, hint):
    p = shutil.which(exe)
    if not p:
        sys.exit(f"{exe} not found: {hint}")
    return p


def bench(port, pipeline, size, test, n):
    out = subprocess.run([need("redis-benchmark", "apt-get install -y redis-tools"), "-p", str(port), "-c", "50",
                          "-n", str(n), "-P", str(pipeline), "-d", str(size), "-t", test, "--csv"],
                         capture_output=True, text=True, timeout=600)
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    for line in out.stdout.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if f and f[0].upper() == test.upper():
            return float(f[1]), float(f[6])
    sys.exit(f"unexpected redis-benchmark output: {out.stdout} {out.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--proxy", default=os.path.join(ROOT, "target", "release", "ferrite-proxy"))
    ap.add_argument("--proxy-args", default="", help="extra ferrite-proxy arguments, e.g. '--threads 2'")
    a = ap.parse_args()
    if not os.path.exists(a.proxy):
        sys.exit(f"{a.proxy} not built: cargo build --release -p ferrite-proxy")
    procs = []
    tmp = tempfile.mkdtemp()
    try:
        rport = free_port()
        r = subprocess.Popen([need("redis-server", "apt-get install -y redis-server"), "--port", str(rport),
                              "--bind", "127.0.0.1", "--save", "", "--dir", tmp], stdout=subprocess.DEVNULL)
        procs.append(r)
        wait_port(rport, r, "redis-server")
        pport = free_port()
        p = subprocess.Popen([a.proxy, "--listen", f"127.0.0.1:{pport}", "--ferrite", f"127.0.0.1:{rport}",
                              "--log-level", "warn"] + a.proxy_args.split(), stdout=subprocess.DEVNULL)
        procs.append(p)
        wait_port(pport, p, "ferrite-proxy")
        nport = free_port()
        conf = os.path.join(tmp, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write(f"pool:\n  listen: 127.0.0.1:{nport}\n  hash: fnv1a_64\n  distribution: ketama\n"
                    f"  redis: true\n  servers:\n   - 127.0.0.1:{rport}:1\n")
        n = subprocess.Popen([need("nutcracker", "apt-get install -y nutcracker"), "-c", conf],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(n)
        time.sleep(0.5)
        print(f"{'test':<18}{'redis':>12}{'proxy':>12}{'nutcracker':>12}{'px/redis':>10}{'px/nut':>9}"
              f"{'p99 redis':>11}{'p99 proxy':>11}")
        for pipeline in (1, 16):
            for size in (16, 1024):
                for test in ("set", "get"):
                    req = a.requests * (4 if pipeline > 1 else 1)
                    ports = [rport, pport, nport]
                    runs = [[], [], []]
                    for r in range(max(1, a.rounds)):
                        for k in range(3):
                            i = (k + r) % 3
                            runs[i].append(bench(ports[i], pipeline, size, test, req))
                    med = []
                    for rs in runs:
                        rs.sort()
                        med.append(rs[len(rs) // 2])
                    (rr, rp99), (pr, pp99), (nr, _) = med
                    name = f"{test.upper()} {size}B -P{pipeline}"
                    print(f"{name:<18}{rr:>12.0f}{pr:>12.0f}{nr:>12.0f}{pr / rr:>10.2f}{pr / nr:>9.2f}"
                          f"{rp99:>11.3f}{pp99:>11.3f}", flush=True)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
