#!/usr/bin/env python3
"""Record the command metadata of a real Redis 7.0 server as data.

Starts the Debian `redis-server` on a free loopback port, asks it `COMMAND`
and `COMMAND DOCS` over RESP3, and writes commands/data/redis-7.0-commands.json.
The file is a fact sheet about Redis's interface (arity, flags, key
specifications, ACL categories, argument docs); the store and proxy read it
to answer COMMAND and to find the keys of every command.

Typed JSON: int -> number, bulk string -> string, simple string -> {"s": str},
array -> list, map -> {"m": [[k, v], ...]}, set -> {"set": [...]},
null -> null, double -> {"d": str}.
"""
import json, os, socket, subprocess, sys, tempfile, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

class R:
    def __init__(self, sock): self.f = sock.makefile("rb")
    def line(self): return self.f.readline()[:-2]
    def read(self):
        l = self.line(); t, rest = chr(l[0]), l[1:]
        if t == '+': return {"s": rest.decode()}
        if t == '-': raise RuntimeError(rest.decode())
        if t == ':': return int(rest)
        if t == ',': return {"d": rest.decode()}
        if t == '_': return None
        if t == '#': return rest == b't'
        if t in '$=':
            n = int(rest)
            if n < 0: return None
            d = self.f.read(n + 2)[:-2]
            return d.decode() if t == '$' else d[4:].decode()
        if t in '*>':
            n = int(rest); return None if n < 0 else [self.read() for _ in range(n)]
        if t == '~': return {"set": [self.read() for _ in range(int(rest))]}
        if t == '%': return {"m": [[self.read(), self.read()] for _ in range(int(rest))]}
        raise RuntimeError("unknown type " + t)

def cmd(sock, r, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode(); out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out); return r.read()

def main():
    port = free_port()
    d = tempfile.mkdtemp()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", d],
                         stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", port)); break
            except OSError: time.sleep(0.05)
        r = R(s)
        cmd(s, r, "HELLO", "3")
        version = cmd(s, r, "INFO", "server")
        info = cmd(s, r, "COMMAND")
        docs = cmd(s, r, "COMMAND", "DOCS")
        ver = [l for l in version.splitlines() if l.startswith("redis_version:")][0].split(":")[1]
        out = {"redis_version": ver, "info": info, "docs": docs}
        path = os.path.join(os.path.dirname(__file__), "..", "commands", "data", "redis-7.0-commands.json")
        with open(path, "w") as f:
            json.dump(out, f, separators=(",", ":"), sort_keys=False)
        print("wrote", path, len(info), "commands from redis", ver)
    finally:
        p.terminate(); p.wait()

if __name__ == "__main__":
    main()
