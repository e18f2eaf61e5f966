"""Logging TCP proxy for tests/redispy: forwards 127.0.0.1:LISTEN to
127.0.0.1:UPSTREAM and, on SIGTERM, pickles every connection's raw
client->server and server->client bytes to OUT (for wire_diff.py).

usage: python3 wire_proxy.py LISTEN_PORT UPSTREAM_PORT OUT.pkl
"""
import socket, threading, sys, pickle, signal, os
listen_port, up_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []  # (idx, c2s bytearray, s2c bytearray)
lock = threading.Lock()
def pump(src, dst, buf):
    try:
        while True:
            d = src.recv(65536)
            if not d: break
            buf.extend(d)
            dst.sendall(d)
    except Exception:
        pass
    for s in (src, dst):
        try: s.shutdown(socket.SHUT_RDWR)
        except Exception: pass
def dump(*a):
    with lock:
        with open(out, 'wb') as f:
            pickle.dump([(i, bytes(c), bytes(s)) for i, c, s in conns], f)
    os._exit(0)
signal.signal(signal.SIGTERM, dump)
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', listen_port)); ls.listen(512)
while True:
    c, _ = ls.accept()
    try:
        u = socket.create_connection(('127.0.0.1', up_port))
    except Exception:
        c.close(); continue
    for s in (c, u): s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c2s, s2c = bytearray(), bytearray()
    with lock:
        conns.append((len(conns), c2s, s2c))
    threading.Thread(target=pump, args=(c, u, c2s), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, s2c), daemon=True).start()
