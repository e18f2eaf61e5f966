"""Lua scripting through redis-py, the way applications use it: register_script
(EVALSHA with EVAL fallback), the SET NX PX + Lua release lock pattern, a
sliding-window rate limiter, and functions. Every step runs against a real
redis-server and ferrite and the results are compared."""
import time

import pytest
import redis

RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
else
    return 0
end
"""

EXTEND_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

# Sliding-window limiter on a sorted set: (allowed, remaining).
RATE_LIMIT = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('zremrangebyscore', key, '-inf', now - window)
local count = redis.call('zcard', key)
if count < limit then
    redis.call('zadd', key, now, ARGV[4])
    redis.call('pexpire', key, window)
    return {1, limit - count - 1}
end
return {0, 0}
"""

# Token bucket kept in a hash, returns a status reply and a float as string.
TOKEN_BUCKET = """
local b = redis.call('hmget', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or tonumber(ARGV[1])
local ts = tonumber(b[2]) or tonumber(ARGV[3])
local rate, now = tonumber(ARGV[2]), tonumber(ARGV[3])
tokens = math.min(tonumber(ARGV[1]), tokens + (now - ts) * rate)
local ok = tokens >= 1
if ok then tokens = tokens - 1 end
redis.call('hset', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
return {ok and 1 or 0, tostring(tokens)}
"""

LIB = """#!lua name=sessions
local function touch(keys, args)
    local v = redis.call('get', keys[1])
    if v then redis.call('expire', keys[1], args[1]) end
    return v
end
local function count(keys, args)
    return redis.call('dbsize')
end
redis.register_function('session_touch', touch)
redis.register_function{function_name='session_count', callback=count, flags={'no-writes'}}
"""


def run_steps(srv, protocol):
    """The same application workload; returns everything observed."""
    r = srv.client(protocol=protocol, decode_responses=True)
    r.flushall()
    r.script_flush()
    r.function_flush()
    seen = []

    release = r.register_script(RELEASE_LOCK)
    extend = r.register_script(EXTEND_LOCK)
    # Lock: acquire, wrong-token release refused, extend, release.
    seen.append(r.set("lock:res", "token-a", nx=True, px=10000))
    seen.append(r.set("lock:res", "token-b", nx=True, px=10000))
    seen.append(release(keys=["lock:res"], args=["token-b"]))
    seen.append(extend(keys=["lock:res"], args=["token-a", 20000]))
    seen.append(0 < r.pttl("lock:res") <= 20000)
    seen.append(release(keys=["lock:res"], args=["token-a"]))
    seen.append(r.exists("lock:res"))
    seen.append(r.set("lock:res", "token-b", nx=True, px=10000))
    # register_script after SCRIPT FLUSH falls back to EVAL (NOSCRIPT).
    r.script_flush()
    seen.append(release(keys=["lock:res"], args=["token-b"]))
    seen.append(r.script_exists(release.sha))

    limiter = r.register_script(RATE_LIMIT)
    now = 1_000_000
    for i in range(7):
        seen.append(limiter(keys=["rl:user1"], args=[now + i, 1000, 5, f"req{i}"]))
    seen.append(limiter(keys=["rl:user1"], args=[now + 2000, 1000, 5, "later"]))
    seen.append(r.zcard("rl:user1"))

    bucket = r.register_script(TOKEN_BUCKET)
    for t in (0, 0, 0, 1, 5):
        seen.append(bucket(keys=["tb:1"], args=[2, 0.5, 100 + t]))

    # Errors surface as ResponseError with Redis's text.
    for script in ("return redis.call('incr', KEYS[1])", "return redis.error_reply('LIMIT exceeded')",
                   "return x", "return {err='plain'}"):
        r.set("str", "abc")
        try:
            seen.append(r.eval(script, 1, "str"))
        except redis.ResponseError as e:
            seen.append("ERR: " + str(e))

    # Replies of every shape.
    seen.append(r.eval("return {1, 'two', {3, false}, redis.status_reply('OK')}", 0))
    seen.append(r.eval("return 3.7", 0))
    seen.append(r.eval("redis.setresp(3) return {double=2.5}", 0))
    seen.append(r.eval("redis.setresp(3) return {map={a=1}}", 0))

    # Functions.
    seen.append(r.function_load(LIB))
    r.set("sess:1", "data", ex=100)
    seen.append(r.fcall("session_touch", 1, "sess:1", 500))
    seen.append(r.ttl("sess:1"))
    seen.append(r.fcall_ro("session_count", 0))
    try:
        r.fcall_ro("session_touch", 1, "sess:1", 5)
    except redis.ResponseError as e:
        seen.append("ERR: " + str(e))
    lst = r.function_list()
    seen.append(lst[0]["library_name"] if isinstance(lst[0], dict) else lst[0][1])
    return seen


@pytest.mark.parametrize("protocol", [2, 3])
def test_application_scripts_match_redis(both, protocol):
    redis_srv, ferrite_srv = both
    expected = run_steps(redis_srv, protocol)
    got = run_steps(ferrite_srv, protocol)
    assert len(expected) == len(got)
    for i, (a, b) in enumerate(zip(expected, got)):
        assert a == b, f"step {i}: redis={a!r} ferrite={b!r}"


def test_lock_contention(ferrite):
    """Several clients competing for one lock: mutual exclusion holds."""
    clients = [ferrite.client(decode_responses=True) for _ in range(4)]
    release = clients[0].register_script(RELEASE_LOCK)
    counter_key = "counter"
    deadline = time.time() + 10
    done = 0
    while done < 40 and time.time() < deadline:
        for i, c in enumerate(clients):
            token = f"t{i}-{done}"
            if c.set("lock", token, nx=True, px=5000):
                v = int(c.get(counter_key) or 0)
                c.set(counter_key, v + 1)
                assert release(keys=["lock"], args=[token], client=c) == 1
                done += 1
    assert done >= 40
    assert int(clients[0].get(counter_key)) == done


def test_busy_script_and_kill(ferrite):
    r = ferrite.client(decode_responses=True)
    r.config_set("busy-reply-threshold", 50)
    runner = ferrite.client(decode_responses=True, socket_timeout=10)
    import threading

    result = {}

    def run():
        try:
            runner.eval("while true do end", 0)
        except redis.ResponseError as e:
            result["err"] = str(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 5
    busy = None
    while time.time() < deadline:
        try:
            r.ping()
            time.sleep(0.02)
        except redis.exceptions.BusyLoadingError:
            busy = "busy"
            break
        except redis.ResponseError as e:
            busy = str(e)
            break
    assert busy is not None
    assert r.script_kill()
    t.join(10)
    assert "Script killed by user" in result.get("err", "")
    assert r.ping()
