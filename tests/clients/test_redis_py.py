"""redis-py against ferrite: the calls applications make, in RESP2 and RESP3,
with results compared to a real Redis where they are deterministic."""
import threading
import time

import pytest
import redis


@pytest.mark.parametrize("protocol", [2, 3])
def test_strings_and_expiry(both, protocol):
    results = []
    for srv in both:
        r = srv.client(protocol=protocol, decode_responses=True)
        out = [
            r.set("k", "v"),
            r.get("k"),
            r.set("k", "w", nx=True),
            r.set("n", 10, ex=100),
            r.incr("n"),
            r.incrby("n", 5),
            r.ttl("n") > 0 if hasattr(r, "ttl") else None,
            r.mset({"a": "1", "b": "2"}),
            r.mget("a", "b", "missing"),
            r.append("a", "x"),
            r.strlen("a"),
            r.getdel("a"),
            r.exists("a"),
        ]
        results.append(out)
    assert results[0] == results[1]


@pytest.mark.parametrize("protocol", [2, 3])
def test_transactions(both, protocol):
    results = []
    for srv in both:
        r = srv.client(protocol=protocol, decode_responses=True)
        p = r.pipeline(transaction=True)
        p.set("x", 1).incr("x").get("x")
        res = p.execute()
        # WATCH conflict: another client modifies the key.
        r2 = srv.client(protocol=protocol)
        with r.pipeline() as pipe:
            pipe.watch("x")
            r2.set("x", 100)
            pipe.multi()
            pipe.incr("x")
            with pytest.raises(redis.WatchError):
                pipe.execute()
        results.append(res)
    assert results[0] == results[1] == [True, 2, "2"]


def test_pipelining_many(ferrite):
    r = ferrite.client()
    p = r.pipeline(transaction=False)
    for i in range(2000):
        p.set(f"key:{i}", i)
    assert all(p.execute())
    p = r.pipeline(transaction=False)
    for i in range(2000):
        p.get(f"key:{i}")
    assert [int(v) for v in p.execute()] == list(range(2000))


@pytest.mark.parametrize("protocol", [2, 3])
def test_pubsub(ferrite, protocol):
    r = ferrite.client(protocol=protocol)
    ps = r.pubsub()
    ps.subscribe("chan")
    ps.psubscribe("c*")
    deadline = time.time() + 5
    msgs = []
    # Drain the subscribe confirmations.
    while len(msgs) < 2 and time.time() < deadline:
        m = ps.get_message(timeout=0.5)
        if m:
            msgs.append(m)
    assert [m["type"] for m in msgs] == ["subscribe", "psubscribe"]
    assert ferrite.client().publish("chan", "hello") == 2
    got = []
    while len(got) < 2 and time.time() < deadline:
        m = ps.get_message(timeout=0.5)
        if m:
            got.append((m["type"], m["data"]))
    assert sorted(got) == [("message", b"hello"), ("pmessage", b"hello")]
    ps.close()


def test_errors_are_parsed(ferrite):
    r = ferrite.client()
    r.set("s", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.lpush("s", "a")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        r.execute_command("NOPE", "x")


def test_auth_requirepass():
    from conftest import start_ferrite

    s = start_ferrite("--requirepass", "sekret")
    try:
        with pytest.raises(redis.AuthenticationError):
            s.client().ping()
        assert s.client(password="sekret").ping()
        assert s.client(username="default", password="sekret", protocol=3).ping()
    finally:
        s.stop()


def test_concurrent_clients(ferrite):
    errors = []

    def worker(n):
        try:
            r = ferrite.client()
            for i in range(300):
                r.incr("shared")
                r.set(f"w{n}:{i}", i)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors
    assert int(ferrite.client().get("shared")) == 8 * 300
