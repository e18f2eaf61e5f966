"""Fixtures that start a real ferrite (and, where compared, a real redis-server)
on free loopback ports. A missing binary is a test failure, never a skip."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def ferrite_bin():
    for profile in ("debug", "release"):
        p = os.path.join(ROOT, "target", profile, "ferrite")
        if os.path.exists(p):
            return p
    pytest.fail("ferrite binary not built: run `cargo build --bins` first")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ping(port, proc, what):
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited during startup ({proc.returncode})")
        try:
            # Any RESP reply (+PONG or -NOAUTH) means the server is up.
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64)[:1] in (b"+", b"-"):
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not answer PING on {port}")


class Server:
    def __init__(self, proc, port):
        self.proc, self.port = proc, port

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


def start_ferrite(*extra):
    port = free_port()
    proc = subprocess.Popen([ferrite_bin(), "--port", str(port), "--bind", "127.0.0.1", *extra],
                            stdout=subprocess.DEVNULL)
    wait_ping(port, proc, "ferrite")
    return Server(proc, port)


def start_redis(*extra):
    exe = shutil.which("redis-server")
    if not exe:
        pytest.fail("redis-server not installed (apt-get install -y redis-server)")
    d = tempfile.mkdtemp()
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", d, *extra],
                            stdout=subprocess.DEVNULL)
    wait_ping(port, proc, "redis-server")
    return Server(proc, port)


@pytest.fixture
def ferrite():
    s = start_ferrite()
    yield s
    s.stop()


@pytest.fixture
def redis_server():
    s = start_redis()
    yield s
    s.stop()


@pytest.fixture
def both(ferrite, redis_server):
    return redis_server, ferrite
