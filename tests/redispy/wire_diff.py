"""Compare two wire_proxy.py recordings of the same redis-py test run
(one against redis-server, one against ferrite): for each connection, in
accept order, print the replies that differ, skipping commands whose
replies are time-, id-, random- or hash-order-dependent (NOISE) and
aggregates equal as multisets.

usage: python3 wire_diff.py redis.pkl ferrite.pkl
"""
import pickle, sys, re
def parse(b, i):
    t = b[i:i+1]; j = b.index(b'\r\n', i); line = b[i+1:j]; i = j+2
    if t in (b'+', b'-', b':', b',', b'#', b'(', b'_'):
        return (t.decode(), line), i
    if t in (b'$', b'=', b'!'):
        n = int(line)
        if n < 0: return (t.decode(), None), i
        return (t.decode(), b[i:i+n]), i+n+2
    if t in (b'*', b'%', b'~', b'>', b'|'):
        n = int(line)
        if n < 0: return (t.decode(), None), i
        if t in (b'%', b'|'): n *= 2
        items = []
        for _ in range(n):
            x, i = parse(b, i); items.append(x)
        if t == b'|':
            x, i = parse(b, i); return x, i  # skip attribute
        return (t.decode(), items), i
    # inline command
    return ('inline', line), i
def parse_all(b):
    out, i = [], 0
    while i < len(b):
        try: x, i = parse(b, i)
        except Exception: out.append(('trunc', b[i:i+50])); break
        out.append(x)
    return out
def cmdstr(x):
    if x[0] == '*': return ' '.join(e[1].decode('latin1') if isinstance(e[1], bytes) else str(e[1]) for e in x[1])
    return str(x)
def load(p):
    data = pickle.load(open(p, 'rb'))
    res = []
    for idx, c2s, s2c in data:
        res.append(([cmdstr(c) for c in parse_all(c2s)], parse_all(s2c)))
    return res

NOISE = re.compile(r'^(INFO|CLIENT (LIST|INFO|ID|KILL|TRACKINGINFO|GETREDIR)|CONFIG GET|ACL (GENPASS|LOG|CAT|LIST|GETUSER)|TIME|MEMORY|DEBUG|OBJECT|LASTSAVE|SLOWLOG|HELLO|LOLWUT|SRANDMEMBER|SPOP|RANDOMKEY|HRANDFIELD|ZRANDMEMBER|COMMAND|XADD|XINFO|XAUTOCLAIM|XCLAIM|XPENDING|XRANGE|XREVRANGE|XREAD|BGSAVE|BGREWRITEAOF|SAVE|ROLE|LATENCY|SCRIPT|FUNCTION|PUBSUB|MODULE|SCAN|SSCAN|HSCAN|ZSCAN|KEYS|SMEMBERS|HGETALL|HKEYS|HVALS|SINTER|SUNION|SDIFF|CLUSTER|REPLICAOF|SLAVEOF|FAILOVER|PSYNC|SYNC|WAIT|LPOS|SORT|GEORADIUS)', re.I)
def norm(x):
    t, v = x
    if isinstance(v, list):
        return (t, sorted(str(norm(e)) for e in v))
    return x
r = load(sys.argv[1]); f = load(sys.argv[2])
n = 0
for k in range(min(len(r), len(f))):
    (rc, rr), (fc, fr) = r[k], f[k]
    for j, (a, b) in enumerate(zip(rr, fr)):
        if a == b: continue
        cmd = rc[j] if j < len(rc) else '?'
        if NOISE.match(cmd): continue
        if norm(a) == norm(b): continue
        n += 1
        print(f"conn {k} #{j} [{cmd[:140]}] / F:[{(fc[j] if j < len(fc) else '?')[:60]}]\n   R: {str(a)[:400]}\n   F: {str(b)[:400]}")
    if len(rr) != len(fr): print(f"conn {k}: reply counts {len(rr)} vs {len(fr)} last cmd {rc[-1][:80] if rc else ''}")
print("diffs", n)
