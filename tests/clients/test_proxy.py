"""ferrite-proxy with the clients applications use: redis-py (standalone and RedisCluster), redis-cli and
redis-benchmark, against the proxy in front of a real Redis Cluster (3 masters, 1 replica each) and in embedded
mode. A missing binary is a failure, never a skip."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis
from redis.cluster import RedisCluster

from conftest import ROOT, free_port, wait_ping


def proxy_bin():
    for profile in ("debug", "release"):
        p = os.path.join(ROOT, "target", profile, "ferrite-proxy")
        if os.path.exists(p):
            return p
    pytest.fail("ferrite-proxy binary not built: run `cargo build --bins` first")


def need(exe):
    path = shutil.which(exe)
    if not path:
        pytest.fail(f"{exe} not installed (apt-get install -y redis-server redis-tools)")
    return path


def free_cluster_port():
    for _ in range(1000):
        p = free_port()
        if p + 10000 > 65535:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            continue
        finally:
            s.close()
    pytest.fail("no free port pair for a cluster node")


class Cluster:
    def __init__(self, masters=3, replicas=1):
        exe = need("redis-server")
        cli = need("redis-cli")
        self.procs, self.ports, self.dirs = [], [], []
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port()
            d = tempfile.mkdtemp()
            proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", d,
                                     "--cluster-enabled", "yes", "--cluster-node-timeout", "3000",
                                     "--appendonly", "no"], stdout=subprocess.DEVNULL)
            wait_ping(port, proc, "redis-server (cluster node)")
            self.procs.append(proc)
            self.ports.append(port)
            self.dirs.append(d)
        args = [cli, "--cluster", "create"] + [f"127.0.0.1:{p}" for p in self.ports] + \
               ["--cluster-replicas", str(replicas), "--cluster-yes"]
        out = subprocess.run(args, capture_output=True, timeout=60)
        if out.returncode != 0:
            self.stop()
            pytest.fail(f"redis-cli --cluster create failed: {out.stdout!r} {out.stderr!r}")
        deadline = time.time() + 60
        while time.time() < deadline:
            if all(self.node_ok(p) for p in self.ports):
                return
            time.sleep(0.2)
        self.stop()
        pytest.fail("cluster did not become ok")

    def node_ok(self, port):
        try:
            r = redis.Redis(port=port, socket_timeout=2)
            info = r.execute_command("CLUSTER", "INFO")
            info = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in info and f"cluster_known_nodes:{len(self.ports)}" in info
        except redis.RedisError:
            return False

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


class Proxy:
    def __init__(self, *extra):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([proxy_bin(), "--listen", f"127.0.0.1:{self.port}", "--threads", "2", *extra],
                                     stdout=self.log, stderr=self.log)
        wait_ping(self.port, self.proc, "ferrite-proxy")

    def client(self, **kw):
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture
def proxy(cluster):
    p = Proxy("--upstream-cluster", f"127.0.0.1:{cluster.ports[0]}")
    yield p
    p.stop()


@pytest.fixture
def embedded():
    p = Proxy()
    yield p
    p.stop()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_standalone_client(proxy, cluster, protocol):
    r = proxy.client(protocol=protocol, decode_responses=True)
    assert r.ping()
    assert r.flushall()
    assert r.dbsize() == 0
    for i in range(50):
        assert r.set(f"py:{i}", i)
    assert [r.get(f"py:{i}") for i in range(50)] == [str(i) for i in range(50)]
    # Keys really are in the cluster.
    rc = RedisCluster(host="127.0.0.1", port=cluster.ports[0], decode_responses=True)
    assert rc.get("py:7") == "7"
    rc.close()
    # Multi-key commands across slots.
    assert r.mset({f"m{i}": i for i in range(20)})
    assert r.mget([f"m{i}" for i in range(20)] + ["nope"]) == [str(i) for i in range(20)] + [None]
    assert r.delete(*[f"m{i}" for i in range(10)]) == 10
    assert r.exists(*[f"m{i}" for i in range(20)]) == 10
    with pytest.raises(redis.ResponseError, match="don.t hash to the same slot"):
        r.sunion("a", "b")
    # Pipeline (non-transactional) across slots keeps order.
    p = r.pipeline(transaction=False)
    for i in range(100):
        p.incr(f"cnt:{i % 7}")
        p.echo(f"x{i}")
    out = p.execute()
    assert out[1::2] == [f"x{i}" for i in range(100)]
    # Transaction with hash tags.
    p = r.pipeline(transaction=True)
    p.set("{acct}:a", 10)
    p.incrby("{acct}:a", 5)
    p.get("{acct}:a")
    assert p.execute() == [True, 15, "15"]
    # Hashes, lists, sets, sorted sets, expiry.
    r.hset("h", mapping={"a": 1, "b": 2})
    assert r.hgetall("h") == {"a": "1", "b": "2"}
    r.rpush("l", 1, 2, 3)
    assert r.lrange("l", 0, -1) == ["1", "2", "3"]
    r.sadd("s", "x", "y")
    assert r.smembers("s") == {"x", "y"}
    r.zadd("z", {"a": 1, "b": 2})
    assert [tuple(x) for x in r.zrange("z", 0, -1, withscores=True)] == [("a", 1.0), ("b", 2.0)]
    r.set("ttl", 1, ex=100)
    assert 0 < r.ttl("ttl") <= 100
    # Blocking pop.
    assert r.blpop(["nothing"], timeout=0.2) is None
    r.rpush("q", "job")
    assert tuple(r.blpop(["q"], timeout=1)) == ("q", "job")
    # SCAN iterates every node.
    found = set(r.scan_iter(match="py:*", count=100))
    assert found == {f"py:{i}" for i in range(50)}
    assert r.dbsize() >= 50


def test_redis_py_pubsub(proxy, cluster):
    r = proxy.client(decode_responses=True)
    ps = r.pubsub()
    ps.subscribe("chan")
    msg = ps.get_message(timeout=5)
    assert msg["type"] == "subscribe"
    # Published straight on an upstream node, delivered through the proxy.
    direct = redis.Redis(port=cluster.ports[1])
    direct.publish("chan", "hello")
    msg = None
    deadline = time.time() + 5
    while msg is None and time.time() < deadline:
        msg = ps.get_message(timeout=1)
    assert msg and msg["type"] == "message" and msg["data"] == "hello"
    ps.close()


def test_redis_py_cluster_client_against_proxy(proxy):
    rc = RedisCluster(host="127.0.0.1", port=proxy.port, decode_responses=True)
    for i in range(30):
        assert rc.set(f"rc:{i}", i)
    assert [rc.get(f"rc:{i}") for i in range(30)] == [str(i) for i in range(30)]
    assert rc.mget_nonatomic([f"rc:{i}" for i in range(5)]) == ["0", "1", "2", "3", "4"]
    nodes = rc.get_nodes()
    assert len(nodes) == 1 and nodes[0].port == proxy.port
    rc.close()


def test_redis_cli_and_benchmark(proxy):
    cli = need("redis-cli")
    out = subprocess.run([cli, "-p", str(proxy.port), "SET", "cli", "v"], capture_output=True, timeout=10)
    assert out.stdout.strip() == b"OK"
    out = subprocess.run([cli, "-p", str(proxy.port), "GET", "cli"], capture_output=True, timeout=10)
    assert out.stdout.strip() == b"v"
    data = "".join(f"SET pipe:{i} {i}\n" for i in range(500)).encode()
    out = subprocess.run([cli, "-p", str(proxy.port), "--pipe"], input=data, capture_output=True, timeout=30)
    assert b"errors: 0, replies: 500" in out.stdout, out.stdout
    bench = need("redis-benchmark")
    out = subprocess.run([bench, "-p", str(proxy.port), "-n", "5000", "-c", "10", "-P", "4", "-t", "set,get", "-q"],
                         capture_output=True, timeout=120)
    text = out.stdout.decode(errors="replace")
    assert out.returncode == 0, text
    assert "SET:" in text and "GET:" in text and "requests per second" in text, text


def test_embedded_mode_with_clients(embedded):
    r = embedded.client(decode_responses=True)
    assert r.set("k", "v") and r.get("k") == "v"
    rc = RedisCluster(host="127.0.0.1", port=embedded.port, decode_responses=True)
    assert rc.get("k") == "v"
    rc.close()
    assert r.execute_command("FERRITE.PROXY", "EPOCH") == 0
    slots = r.execute_command("FERRITE.PROXY", "SLOTS")
    assert slots == [[0, 16383, "ferrite", 0]]
