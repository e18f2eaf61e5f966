"""redis-cli and redis-benchmark, the tools operators use, against ferrite."""
import subprocess

import pytest


def cli(port, *args, stdin=None):
    p = subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, capture_output=True, timeout=60)
    return p.stdout.decode(), p.returncode


def test_cli_basic(ferrite):
    assert cli(ferrite.port, "PING")[0] == "PONG\n"
    assert cli(ferrite.port, "SET", "k", "hello world")[0] == "OK\n"
    assert cli(ferrite.port, "GET", "k")[0] == "hello world\n"
    assert cli(ferrite.port, "--no-raw", "GET", "missing")[0] == "(nil)\n"
    out, _ = cli(ferrite.port, "NOPE")
    assert out.startswith("ERR unknown command 'NOPE'")


def test_cli_resp3(ferrite):
    out, rc = cli(ferrite.port, "-3", "HELLO", "3")
    assert rc == 0 and "proto" in out


def test_cli_pipe_mass_insert(ferrite):
    payload = "".join(f"SET key:{i} value:{i}\r\n" for i in range(5000)).encode()
    out, rc = cli(ferrite.port, "--pipe", stdin=payload)
    assert rc == 0, out
    assert "errors: 0, replies: 5000" in out
    assert cli(ferrite.port, "GET", "key:4999")[0] == "value:4999\n"


def test_cli_stdin_script(ferrite):
    out, rc = cli(ferrite.port, stdin=b"SET a 1\nINCR a\nGET a\n")
    assert rc == 0
    assert out.split() == ["OK", "2", "2"]


@pytest.mark.parametrize("pipeline", ["1", "16"])
def test_benchmark_runs_clean(ferrite, pipeline):
    p = subprocess.run(
        ["redis-benchmark", "-p", str(ferrite.port), "-t", "set,get,incr,mset", "-n", "2000", "-c", "10",
         "-P", pipeline, "-q"],
        capture_output=True, timeout=120)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode == 0, out
    for t in ("SET", "GET", "INCR", "MSET"):
        assert t in out, out
    assert "ERR" not in out, out
