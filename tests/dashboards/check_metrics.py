#!/usr/bin/env python3
"""Keeps the dashboards honest: every metric name used by the Grafana dashboards
(dashboards/*.json: panel expressions and template-variable queries) and by the
alert rules (dashboards/alerts.yml) must be exported by the real binaries.

How:
  1. extract every metric name from the PromQL expressions (strings, label
     matchers, ranges, `by (...)` lists, functions and keywords removed);
  2. start the real binaries on 127.0.0.1 and drive them:
       - a one-master Redis Cluster (real `redis-server --cluster-enabled yes`,
         all 16384 slots by CLUSTER ADDSLOTSRANGE) holding a few hundred keys,
       - `ferrite --metrics-listen` (the store, also the migration target),
       - `ferrite-proxy --metrics-listen` in front of both,
       - `ferrite-migrate run --metrics-listen` moving every slot to ferrite
         while a client keeps writing through the proxy (so the replication
         stream, cutover pauses, mirror writes and verify all happen),
     scraping each /metrics endpoint while that runs (the migration tool only
     serves metrics while it runs, so it is scraped repeatedly and the names
     seen are united);
  3. assert that each name used is a family the binary exposes (`# TYPE`
     line or sample; `_bucket`/`_sum`/`_count` of a histogram count as the
     histogram), and report names exported but unused.
The activity is chosen so that every family appears: the `prometheus` crate
prints nothing (not even `# HELP`) for a labelled family without children, so
the proxy's MOVED/ASK counters are driven by a real slot move between the two
cluster masters, and its connect-failure and failed-mirror counters by stopping
the Redis Cluster after the migration. A name still without a sample FAILS
(the message says when the name is at least compiled into the binary).

The alert rules (and, wrapped in recording rules, every panel query) are
validated with `promtool check rules` when promtool is on PATH, else parsed (PyYAML if present, else a small indentation parser) and
checked for structure (groups, unique alert names, expr, for, labels,
annotations).

A missing binary, redis-server or failing step is a FAILURE with a clear
message. FERRITE_DASHBOARDS_SKIP=migrate skips the ferrite-migrate part, and
FERRITE_DASHBOARDS_SKIP=proxy,migrate also the ferrite-proxy part and the Redis
Cluster, for branches where those binaries are not built; the default (unset)
is strict. Exit status 0 = all names exported, 1 = not.

Usage: python3 tests/dashboards/check_metrics.py [--root REPO] [--dashboards DIR]
  --root        the repository (binaries are taken from ROOT/target/{debug,release})
  --dashboards  the directory holding the *.json dashboards and alerts.yml
                (default ROOT/dashboards)
"""
import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILTIN = {"up"}  # produced by Prometheus itself
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan", "start", "end"}
DEADLINE = 150  # seconds for the whole live part


class CheckError(Exception):
    pass


# ---------------------------------------------------------------- extraction

def metric_names(expr):
    """Metric names referenced by one PromQL expression."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:$.])([A-Za-z_:][A-Za-z0-9_:]*)", s):
        tok = m.group(1)
        if s[m.end():].lstrip().startswith("("):
            continue  # a function call
        if tok.lower() in KEYWORDS:
            continue
        names.add(tok)
    return names


def walk_json(node, out, where):
    if isinstance(node, dict):
        title = node.get("title", where)
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                out.append((f"{where} / {title}", v))
            elif k in ("query", "definition") and isinstance(v, str) and "label_values(" in v:
                for m in re.finditer(r"label_values\(\s*([^,()]+?)\s*,", v):
                    out.append((f"{where} / variable {node.get('name', '')}", m.group(1)))
            else:
                walk_json(v, out, title if k == "panels" else where)
    elif isinstance(node, list):
        for v in node:
            walk_json(v, out, where)


def dashboard_exprs(ddir):
    exprs = []
    files = sorted(glob.glob(os.path.join(ddir, "*.json")))
    if not files:
        raise CheckError(f"no *.json dashboard in {ddir}")
    for path in files:
        with open(path) as f:
            try:
                doc = json.load(f)
            except ValueError as e:
                raise CheckError(f"{path}: invalid JSON: {e}")
        name = os.path.basename(path)
        if "${DS_PROMETHEUS}" not in json.dumps(doc):
            raise CheckError(f"{name}: datasource is not the ${{DS_PROMETHEUS}} input/variable")
        found = []
        walk_json(doc.get("panels", []), found, name)
        walk_json(doc.get("templating", {}), found, name)
        if not found:
            raise CheckError(f"{name}: no PromQL expression found")
        exprs.extend(found)
    return exprs


# ---------------------------------------------------------------- alert rules

def mini_yaml(text):
    """A small parser for the subset alerts.yml uses: block maps, block lists of maps,
    plain and quoted scalars, `|` block scalars. Enough to check structure without PyYAML."""
    lines = []
    for raw in text.split("\n"):
        if raw.strip() == "" or raw.lstrip().startswith("#"):
            lines.append((None, raw))
        else:
            lines.append((len(raw) - len(raw.lstrip(" ")), raw))
    pos = 0

    def scalar(v):
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            return v[1:-1]
        if re.fullmatch(r"-?\d+", v):
            return int(v)
        return v

    def skip_blank():
        nonlocal pos
        while pos < len(lines) and lines[pos][0] is None:
            pos += 1

    def block_scalar(indent):
        nonlocal pos
        out = []
        while pos < len(lines):
            ind, raw = lines[pos]
            if ind is not None and ind <= indent:
                break
            out.append(raw.rstrip())
            pos += 1
        while out and not out[-1]:
            out.pop()
        cut = min((len(x) - len(x.lstrip(" ")) for x in out if x.strip()), default=0)
        return "\n".join(x[cut:] for x in out) + "\n"

    def value(indent):
        skip_blank()
        if pos >= len(lines) or lines[pos][0] <= indent:
            return None
        ind, raw = lines[pos]
        if raw.strip().startswith("- "):
            return seq(ind)
        return mapping(ind)

    def entry(ind, body, target):
        nonlocal pos
        if ":" not in body:
            raise CheckError(f"alerts.yml line {pos + 1}: expected `key: value`: {body!r}")
        k, v = body.split(":", 1)
        k, v = k.strip(), v.strip()
        if k in target:
            raise CheckError(f"alerts.yml line {pos + 1}: duplicate key {k!r}")
        pos += 1
        if v in ("|", "|-", ">", ">-"):
            target[k] = block_scalar(ind)
        elif v == "":
            target[k] = value(ind)
        else:
            target[k] = scalar(v)

    def mapping(indent):
        nonlocal pos
        m = {}
        while True:
            skip_blank()
            if pos >= len(lines):
                return m
            ind, raw = lines[pos]
            if ind < indent:
                return m
            if ind > indent:
                raise CheckError(f"alerts.yml line {pos + 1}: bad indentation")
            body = raw.strip()
            if body.startswith("- "):
                return m
            entry(ind, body, m)

    def seq(indent):
        nonlocal pos
        items = []
        while True:
            skip_blank()
            if pos >= len(lines):
                return items
            ind, raw = lines[pos]
            body = raw.strip()
            if ind != indent or not body.startswith("- "):
                if ind > indent:
                    raise CheckError(f"alerts.yml line {pos + 1}: bad indentation")
                return items
            item = {}
            entry(ind + 2, body[2:], item)
            rest = mapping(ind + 2)
            for k, v in rest.items():
                if k in item:
                    raise CheckError(f"alerts.yml: duplicate key {k!r}")
                item[k] = v
            items.append(item)

    doc = value(-1)
    skip_blank()
    if pos != len(lines):
        raise CheckError(f"alerts.yml line {pos + 1}: could not parse")
    return doc


def load_rules(ddir):
    path = os.path.join(ddir, "alerts.yml")
    with open(path) as f:
        text = f.read()
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise CheckError(f"promtool check rules failed:\n{r.stdout}{r.stderr}")
        print(f"alerts.yml: promtool check rules OK ({r.stdout.strip().splitlines()[-1] if r.stdout else ''})")
    try:
        import yaml  # noqa: F401
        doc = yaml.safe_load(text)
        how = "PyYAML"
    except ImportError:
        doc = mini_yaml(text)
        how = "built-in parser (PyYAML missing)"
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        raise CheckError("alerts.yml: top level must be a map with a non-empty `groups` list")
    exprs, seen_groups, seen_alerts = [], set(), set()
    for g in doc["groups"]:
        if not isinstance(g, dict) or not g.get("name") or not isinstance(g.get("rules"), list):
            raise CheckError(f"alerts.yml: every group needs `name` and a `rules` list: {g!r}")
        if g["name"] in seen_groups:
            raise CheckError(f"alerts.yml: duplicate group {g['name']}")
        seen_groups.add(g["name"])
        for r in g["rules"]:
            if not isinstance(r, dict):
                raise CheckError(f"alerts.yml: rule is not a map: {r!r}")
            unknown = set(r) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if unknown:
                raise CheckError(f"alerts.yml: unknown rule keys {sorted(unknown)} in {r.get('alert')}")
            name = r.get("alert")
            if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
                raise CheckError(f"alerts.yml: rule without a valid `alert` name: {r!r}")
            if name in seen_alerts:
                raise CheckError(f"alerts.yml: duplicate alert {name}")
            seen_alerts.add(name)
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                raise CheckError(f"alerts.yml: {name} has no expr")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                raise CheckError(f"alerts.yml: {name}: unbalanced brackets in expr")
            if "for" in r and not re.fullmatch(r"(\d+[smhdwy])+", str(r["for"])):
                raise CheckError(f"alerts.yml: {name}: bad `for` {r['for']!r}")
            for k in ("labels", "annotations"):
                if k in r and not isinstance(r[k], dict):
                    raise CheckError(f"alerts.yml: {name}: {k} must be a map")
            if not (r.get("labels") or {}).get("severity"):
                raise CheckError(f"alerts.yml: {name}: no severity label")
            if not (r.get("annotations") or {}).get("summary"):
                raise CheckError(f"alerts.yml: {name}: no summary annotation")
            exprs.append((f"alerts.yml / {name}", expr))
    print(f"alerts.yml: {len(seen_alerts)} alerts in {len(seen_groups)} groups, structure OK ({how})")
    return exprs


def grafana_to_promql(expr):
    """A dashboard expression with Grafana's variables replaced by values Prometheus accepts."""
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
            .replace("$job", ".*").replace("$instance", ".*"))


def promtool_check_dashboards(exprs):
    """With promtool on PATH: parse every dashboard expression by wrapping each in a recording rule."""
    promtool = shutil.which("promtool")
    if not promtool:
        print("dashboards: promtool not on PATH, PromQL syntax of panel queries not checked (names still are)")
        return
    rules = [e for w, e in exprs if not w.startswith("alerts.yml") and "variable" not in w]
    d = tempfile.mkdtemp(prefix="ferrite-dash-rules-")
    try:
        path = os.path.join(d, "dashboards.rules.yml")
        with open(path, "w") as f:
            f.write("groups:\n  - name: dashboard_queries\n    rules:\n")
            for i, e in enumerate(rules):
                f.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(grafana_to_promql(e))}\n")
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise CheckError(f"promtool rejects dashboard queries:\n{r.stdout}{r.stderr}\n" +
                             "\n".join(f"  query_{i}: {e}" for i, e in enumerate(rules)))
        print(f"dashboards: {len(rules)} panel queries parse (promtool)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- processes

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cluster_port():
    """A free port P with P + 10000 (the cluster bus) free too, both below 65536."""
    import random
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(200):
        p = rng.randrange(20000, 55000)
        socks = []
        try:
            for q in (p, p + 10000):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise CheckError("no free port pair (P, P+10000) found for a Redis Cluster node")


def binary(root, name):
    for profile in ("debug", "release"):
        p = os.path.join(root, "target", profile, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


class Procs:
    def __init__(self):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="ferrite-dash-")

    def spawn(self, args, name, **kw):
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        p = subprocess.Popen(args, stdout=kw.pop("stdout", log), stderr=log, stdin=subprocess.DEVNULL, **kw)
        p.logname = log.name
        self.procs.append(p)
        return p

    def log(self, p):
        try:
            with open(p.logname, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Resp:
    """A minimal blocking RESP2 client (one command at a time), for driving activity."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.s.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise CheckError("connection closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t in (b"+", b"-", b":"):
            return line
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                d = self.s.recv(65536)
                if not d:
                    raise CheckError("connection closed")
                self.buf += d
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise CheckError(f"bad reply {line!r}")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self._reply()


def wait_port(port, proc, name, procs, limit=20):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise CheckError(f"{name} exited at start ({proc.returncode}):\n{procs.log(proc)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise CheckError(f"{name} is not listening on {port} after {limit}s:\n{procs.log(proc)}")


def scrape(port, timeout=5):
    """(families {name: type}, sample names) of one /metrics scrape, or None if nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while len(data) < 64 << 20:
                d = s.recv(65536)
                if not d:
                    break
                data += d
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise CheckError(f"scrape of 127.0.0.1:{port} answered {head[:80]!r}")
    fams, samples = {}, set()
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                fams[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[{\s]", line, 1)[0])
    return fams, samples


class Seen:
    """Union of what the scrapes of one binary showed."""

    def __init__(self, name):
        self.name, self.fams, self.samples, self.scrapes = name, {}, set(), 0

    def add(self, r):
        if r:
            self.fams.update(r[0])
            self.samples |= r[1]
            self.scrapes += 1

    def has(self, metric):
        if metric in self.fams or metric in self.samples:
            return True
        for suf in ("_bucket", "_sum", "_count"):
            if metric.endswith(suf) and self.fams.get(metric[: -len(suf)]) in ("histogram", "summary"):
                return True
        return False


# ---------------------------------------------------------------- the live run

def start_store(procs, root):
    bin_ = binary(root, "ferrite")
    if not bin_:
        raise CheckError("ferrite binary not built: run `cargo build -p ferrite` (target/debug/ferrite)")
    port, mport = free_port(), free_port()
    p = procs.spawn([bin_, "--bind", "127.0.0.1", "--port", str(port), "--metrics-listen", f"127.0.0.1:{mport}",
                     "--hz", "50"], "ferrite")
    wait_port(port, p, "ferrite", procs)
    wait_port(mport, p, "ferrite metrics", procs)
    return port, mport


def drive_store(port):
    c = Resp(port)
    c.cmd("SET", "dash:k", "v")
    c.cmd("GET", "dash:k")
    c.cmd("GET", "dash:missing")
    c.cmd("LPUSH", "dash:k", "x")  # WRONGTYPE
    c.cmd("SET", "dash:t", "v", "PX", "10")
    c.cmd("SELECT", "2")
    c.cmd("SET", "dash:db2", "v")
    c.close()


def start_cluster(procs):
    """A two-master Redis Cluster: A holds every slot, B none (B receives one slot by a
    real resharding later, so the proxy sees -ASK and -MOVED). Returns [(port, Popen)]."""
    bin_ = shutil.which("redis-server")
    if not bin_:
        raise CheckError("redis-server not found in PATH (apt-get install -y redis-server): the proxy and "
                         "migration metrics are checked against a real Redis Cluster")
    nodes = []
    for tag in ("a", "b"):
        port = cluster_port()
        d = os.path.join(procs.dir, "redis-" + tag)
        os.makedirs(d)
        p = procs.spawn([bin_, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                         "--cluster-config-file", os.path.join(d, "nodes.conf"), "--dir", d, "--save", "",
                         "--appendonly", "no", "--cluster-node-timeout", "5000"], "redis-" + tag)
        wait_port(port, p, "redis-server (cluster node)", procs)
        nodes.append((port, p))
    a, b = Resp(nodes[0][0]), Resp(nodes[1][0])
    r = a.cmd("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    if r != b"+OK":
        raise CheckError(f"CLUSTER ADDSLOTSRANGE: {r!r}")
    b.cmd("CLUSTER", "MEET", "127.0.0.1", str(nodes[0][0]))
    deadline = time.time() + 30
    while True:
        ok = all(b"cluster_state:ok" in (c.cmd("CLUSTER", "INFO") or b"") and
                 (c.cmd("CLUSTER", "NODES") or b"").count(b"\n") >= 2 for c in (a, b))
        if ok:
            break
        if time.time() > deadline:
            raise CheckError("the two-node Redis Cluster did not reach cluster_state:ok with both nodes known")
        time.sleep(0.1)
    a.close()
    b.close()
    return nodes


def redirect_through_proxy(nodes, pport):
    """Move one empty slot from A to B the way redis-cli --cluster reshard does, reading a key of it
    through the proxy while the slot is MIGRATING (A answers -ASK) and after it moved (-MOVED)."""
    a, b = Resp(nodes[0][0]), Resp(nodes[1][0])
    for i in range(200):
        key = f"dash:redirect:{i}"
        slot = int(a.cmd("CLUSTER", "KEYSLOT", key)[1:])
        if a.cmd("CLUSTER", "COUNTKEYSINSLOT", str(slot)) == b":0":
            break
    else:
        raise CheckError("no empty slot found for the redirect step")
    ida, idb = a.cmd("CLUSTER", "MYID").decode(), b.cmd("CLUSTER", "MYID").decode()
    c = Resp(pport)
    for r in (b.cmd("CLUSTER", "SETSLOT", str(slot), "IMPORTING", ida),
              a.cmd("CLUSTER", "SETSLOT", str(slot), "MIGRATING", idb)):
        if r != b"+OK":
            raise CheckError(f"CLUSTER SETSLOT: {r!r}")
    r = c.cmd("GET", key)  # A: -ASK (key absent on the migrating slot); the proxy asks B
    if r is not None:
        raise CheckError(f"GET through the proxy during ASK: {r!r}")
    for n in (b, a):
        r = n.cmd("CLUSTER", "SETSLOT", str(slot), "NODE", idb)
        if r != b"+OK":
            raise CheckError(f"CLUSTER SETSLOT NODE: {r!r}")
    r = c.cmd("GET", key)  # the proxy still routes to A: -MOVED to B
    if r is not None:
        raise CheckError(f"GET through the proxy after MOVED: {r!r}")
    c.cmd("SET", key, "moved")
    for x in (a, b, c):
        x.close()


def upstream_gone(nodes, pport, pmport, seen_proxy):
    """Stop the Redis Cluster after the migration: mirrored writes back to it fail, reconnects fail."""
    for _, p in nodes:
        p.kill()
        p.wait(10)
    c = Resp(pport)
    deadline = time.time() + 20
    for i in range(2000):
        c.cmd("SET", f"dash:w:{i % 500}", "after")
        if i % 20 == 0:
            r = scrape(pmport)
            seen_proxy.add(r)
            if r and {"ferrite_proxy_backend_connect_failures_total"} <= r[1] and any(
                    "mirror_writes" in x for x in r[1]):
                break
        if time.time() > deadline:
            break
        time.sleep(0.01)
    c.close()


def start_proxy(procs, root, upstream, ferrite):
    bin_ = binary(root, "ferrite-proxy")
    if not bin_:
        raise CheckError("ferrite-proxy binary not built (target/debug/ferrite-proxy): run "
                         "`cargo build -p ferrite-proxy`, or set FERRITE_DASHBOARDS_SKIP=proxy,migrate on a branch "
                         "without the proxy")
    port, mport = free_port(), free_port()
    args = [bin_, "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{mport}",
            "--pause-timeout-ms", "5000"]
    if upstream:
        args += ["--upstream-cluster", f"127.0.0.1:{upstream}", "--ferrite", f"127.0.0.1:{ferrite}"]
    p = procs.spawn(args, "ferrite-proxy")
    wait_port(port, p, "ferrite-proxy", procs)
    wait_port(mport, p, "ferrite-proxy metrics", procs)
    return port, mport


def writer(port, stop, errors):
    """Writes through the proxy until told to stop (bounded: at most 100k commands and DEADLINE seconds)."""
    try:
        c = Resp(port)
        t0 = time.time()
        for i in range(100000):
            if stop.is_set() or time.time() - t0 > DEADLINE:
                break
            r = c.cmd("SET", f"dash:w:{i % 500}", str(i))
            if isinstance(r, bytes) and r.startswith(b"-") and not r.startswith(b"-TRYAGAIN"):
                errors.append(r)
            c.cmd("GET", f"dash:w:{(i * 7) % 500}")
            if i % 50 == 0:
                c.cmd("HSET", f"dash:w:{i % 500}", "f", "v")  # WRONGTYPE: an error reply from the backend
            time.sleep(0.002)
        c.close()
    except Exception as e:  # noqa: BLE001 - reported by the caller
        errors.append(repr(e))


def run_migration(procs, root, upstream, ferrite, proxy_port, seen_migrate, seen_proxy, proxy_mport):
    bin_ = binary(root, "ferrite-migrate")
    if not bin_:
        raise CheckError("ferrite-migrate binary not built (target/debug/ferrite-migrate): run "
                         "`cargo build -p ferrite-migrate`, or set FERRITE_DASHBOARDS_SKIP=migrate on a branch "
                         "without the migration tool")
    mport = free_port()
    state = os.path.join(procs.dir, "migrate.state.json")
    args = [bin_, "run", "--from-redis-cluster", f"127.0.0.1:{upstream}", "--to", f"127.0.0.1:{ferrite}",
            "--proxy", f"127.0.0.1:{proxy_port}", "--metrics-listen", f"127.0.0.1:{mport}", "--state", state,
            "--cutover-slots", "2048", "--max-keys-per-sec", "400", "--quiet", "--timeout-ms", "10000"]
    p = procs.spawn(args, "ferrite-migrate")
    deadline = time.time() + DEADLINE
    while p.poll() is None:
        if time.time() > deadline:
            raise CheckError(f"ferrite-migrate did not finish in {DEADLINE}s:\n{procs.log(p)}")
        seen_migrate.add(scrape(mport, timeout=2))
        time.sleep(0.05)
    if p.returncode != 0:
        raise CheckError(f"ferrite-migrate exited {p.returncode}:\n{procs.log(p)}")
    if seen_migrate.scrapes == 0:
        raise CheckError("ferrite-migrate finished before its /metrics could be scraped once")
    seen_proxy.add(scrape(proxy_mport))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=ROOT)
    ap.add_argument("--dashboards", default=None)
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    ddir = os.path.abspath(args.dashboards or os.path.join(root, "dashboards"))
    skip = {s.strip() for s in os.environ.get("FERRITE_DASHBOARDS_SKIP", "").split(",") if s.strip()}
    if skip - {"proxy", "migrate"}:
        raise CheckError(f"FERRITE_DASHBOARDS_SKIP accepts proxy and migrate, not {sorted(skip)}")
    if "proxy" in skip and "migrate" not in skip:
        raise CheckError("FERRITE_DASHBOARDS_SKIP=proxy needs migrate skipped too (a migration needs a proxy)")

    dexprs = dashboard_exprs(ddir)
    promtool_check_dashboards(dexprs)
    exprs = dexprs + load_rules(ddir)
    used = {}  # metric -> [where]
    for where, e in exprs:
        for n in metric_names(e):
            used.setdefault(n, []).append(where)
    unknown = sorted(n for n in used if n not in BUILTIN and not n.startswith("ferrite_"))
    if unknown:
        raise CheckError("names that are no Ferrite metric: " +
                         ", ".join(f"{n} ({used[n][0]})" for n in unknown))

    def owner(n):
        if n.startswith("ferrite_proxy_"):
            return "proxy"
        if n.startswith("ferrite_migrate_"):
            return "migrate"
        return "store"

    seen = {k: Seen(k) for k in ("store", "proxy", "migrate")}
    procs = Procs()
    try:
        fport, fmport = start_store(procs, root)
        drive_store(fport)
        if "proxy" not in skip:
            nodes = start_cluster(procs)
            upstream = nodes[0][0]
            pport, pmport = start_proxy(procs, root, upstream, fport)
            seed = Resp(pport)
            for i in range(300):
                seed.cmd("SET", f"{{dash{i % 97}}}:seed:{i}", "x" * (i % 50))
            seed.close()
            redirect_through_proxy(nodes, pport)
            stop, werrs = threading.Event(), []
            t = threading.Thread(target=writer, args=(pport, stop, werrs), daemon=True)
            t.start()
            time.sleep(0.5)
            seen["proxy"].add(scrape(pmport))
            try:
                if "migrate" not in skip:
                    run_migration(procs, root, upstream, fport, pport, seen["migrate"], seen["proxy"], pmport)
                else:
                    time.sleep(1)
            finally:
                stop.set()
                t.join(30)
            seen["proxy"].add(scrape(pmport))
            if "migrate" not in skip:
                upstream_gone(nodes, pport, pmport, seen["proxy"])
            real = [e for e in werrs if not (isinstance(e, bytes) and e.startswith(b"-WRONGTYPE"))]
            if real:
                print(f"note: the client writing through the proxy saw {len(real)} errors, first: {real[0]!r}")
        drive_store(fport)
        seen["store"].add(scrape(fmport))
        if seen["store"].scrapes == 0:
            raise CheckError("ferrite's /metrics did not answer")
    finally:
        procs.close()

    missing, registered_only = [], []
    for n in sorted(used):
        if n in BUILTIN:
            continue
        o = owner(n)
        if o in skip:
            continue
        if seen[o].has(n):
            continue
        bin_ = binary(root, {"store": "ferrite", "proxy": "ferrite-proxy", "migrate": "ferrite-migrate"}[o])
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        if bin_:
            with open(bin_, "rb") as f:
                if base.encode() in f.read():
                    registered_only.append(n)
        missing.append((n, o))

    for o in ("store", "proxy", "migrate"):
        if o in skip:
            print(f"{o}: SKIPPED (FERRITE_DASHBOARDS_SKIP)")
            continue
        mine = sorted(n for n in used if n not in BUILTIN and owner(n) == o)
        exported = set(seen[o].fams) | seen[o].samples
        unused = sorted(f for f in seen[o].fams if not any(u == f or u.startswith(f + "_") for u in used))
        print(f"{o}: {len(mine)} names used, {len(seen[o].fams)} families scraped ({seen[o].scrapes} scrapes, "
              f"{len(exported)} names)")
        if unused:
            print(f"  exported but not on any dashboard or alert: {', '.join(unused)}")
    if missing:
        lines = "\n".join(
            f"  {n} ({o}) used by {', '.join(sorted(set(used[n])))}" +
            ("\n    (the name is compiled into the binary: a labelled family without any sample after this "
             "check's activity; drive it in check_metrics.py or pre-create its children in the binary)"
             if n in registered_only else "") for n, o in missing)
        raise CheckError(f"{len(missing)} metric names used by dashboards/alerts are not exported:\n{lines}")
    print("OK: every metric name used by the dashboards and alert rules is exported")


if __name__ == "__main__":
    try:
        main()
    except CheckError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        import traceback
        traceback.print_exc()
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
