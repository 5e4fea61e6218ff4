"""Helpers for portico's WebSocket integration tests (tests/integration/ws/).

  WsBackend             tests/tools/ws_backend.py as a subprocess (python3-websockets echo
                        backend; /stats says what it saw: connections, open, closes)
  RawWsBackend          a threaded raw-socket backend run by a per-connection function, for
                        what a real server would not do (a wrong Sec-WebSocket-Accept, never
                        reading, flooding, answering after the client's FIN)
  frame() / FrameReader hand-made RFC 6455 frames (masked or not) and a strict reader
  raw_ws_connect()      a handshake on a RawConn, returning the 101 response
  ws_key() / accept_for()
  node_client()         tests/tools/ws_client.js (node-ws) with a JSON spec
  vm_rss_kib()          a process's resident set, from /proc/PID/status

Everything stays on 127.0.0.1, and every wait is bounded.
"""

import base64
import hashlib
import json
import os
import random
import select
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import portico_testlib as lib

HERE = os.path.dirname(os.path.abspath(__file__))
WS_BACKEND_PY = os.path.join(HERE, "ws_backend.py")
WS_CLIENT_JS = os.path.join(HERE, "ws_client.js")
NODE = "node"
NODE_PATH = "/usr/share/nodejs"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example key

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


# ------------------------------------------------------------- handshake ---

def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def upgrade_request(path="/echo", key=None, host="test.local", version="13",
                    method="GET", proto="HTTP/1.1", extra=()):
    key = key if key is not None else ws_key()
    lines = ["%s %s %s" % (method, path, proto), "Host: %s" % host, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key,
             "Sec-WebSocket-Version: %s" % version] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def raw_ws_connect(conn, path="/echo"):
    """Sends a valid handshake on a lib.RawConn; returns the response (a 101 is checked by the
    caller) and the key."""
    req, key = upgrade_request(path)
    conn.send(req)
    return conn.read_response(allow_interim=True), key


# ---------------------------------------------------------------- frames ---

def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    """One frame; masked (a client's) unless mask=False."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(data, key):
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class FrameReader:
    """Reads frames from a lib.RawConn (its buffer first). read() returns (fin, opcode,
    payload, masked) or raises lib.ConnClosed at EOF."""

    def __init__(self, conn):
        self.c = conn

    def read(self, timeout=5.0):
        self.c.sock.settimeout(timeout)
        h = self.c._exact(2)
        fin, op = h[0] >> 7, h[0] & 0x0F
        masked, n = h[1] >> 7, h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.c._exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.c._exact(8))[0]
        key = self.c._exact(4) if masked else None
        data = self.c._exact(n)
        if key is not None:
            data = mask_bytes(data, key)
        return fin, op, data, bool(masked)


def close_code_of(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


# -------------------------------------------------------------- backends ---

class WsBackend:
    """tests/tools/ws_backend.py (python3-websockets 10.4): /echo, /push, /close, /proto,
    /count, /http-200 and GET /stats (see its header)."""

    def __init__(self, name="ws1", host="127.0.0.1", logdir=None, tls=None):
        """tls: (certificate, key) paths to speak TLS."""
        self.name = name
        self.host = host
        self.tls = tls
        self.errpath = os.path.join(logdir, "wsbackend-%s.err" % name) if logdir else os.devnull
        self.err = open(self.errpath, "ab")
        args = [lib.PYTHON, WS_BACKEND_PY, "--host", host, "--port", "0"]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("ws backend %s did not start: %r" % (name, line))
        self.port = int(line.split()[2])
        self.addr = lib.hostport(host, self.port)

    def stats(self):
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection((self.host, self.port), 5) as s:
                with ctx.wrap_socket(s) as t:
                    t.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        d = t.recv(65536)
                        if not d:
                            break
                        data += d
            head, body = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200 "), head
            return json.loads(body)
        st, _, body = lib.raw_request(self.host, self.port, "GET", "/stats")
        assert st == 200, st
        return json.loads(body)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.err.close()


class RawWsBackend:
    """A listening socket on 127.0.0.1 whose every connection runs serve(conn, backend) in a
    thread; conn is a lib.RawConn-like object over the accepted socket (send, _exact,
    read_response is not used: read_request() reads the request head). What serve() records
    goes into self.log (a list, appended under self.lock). rcvbuf/sndbuf: socket buffer sizes
    set on the listening socket (inherited by accepted ones), to make backpressure come
    early."""

    def __init__(self, serve, rcvbuf=None, sndbuf=None):
        self.serve = serve
        self.lock = threading.Lock()
        self.log = []
        self.conns = []
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.stopping = threading.Event()
        self.accepted = 0
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def record(self, item):
        with self.lock:
            self.log.append(item)

    def _accept(self):
        self.ls.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            c = _SockConn(s)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.serve(c, self)
        except (OSError, lib.ConnClosed) as e:
            self.record(("error", repr(e)))
        finally:
            c.close()

    def stop(self):
        self.stopping.set()
        self.ls.close()
        with self.lock:
            for c in self.conns:
                c.close()
        self.t.join(2)


class _SockConn(lib.RawConn):
    def __init__(self, sock):  # pylint: disable=super-init-not-called
        self.sock = sock
        self.sock.settimeout(10)
        self.buf = bytearray()
        self.eof = False

    def read_request(self):
        raw = self._until(b"\r\n\r\n").decode("latin-1")
        lines = raw.split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                n, v = line.split(":", 1)
                headers[n.strip().lower()] = v.strip()
        return lines[0], headers

    def answer_101(self, key, accept=None, extra=""):
        self.send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n"
                  % (accept if accept is not None else accept_for(key), extra))


# ------------------------------------------------------------------ node ---

def node_client(spec, timeout=60):
    """Runs tests/tools/ws_client.js with the JSON spec; returns its JSON report."""
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    p = subprocess.run([NODE, WS_CLIENT_JS, json.dumps(spec)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "ws_client.js exited %d: %s %s" % (
        p.returncode, out, p.stderr.decode("utf-8", "replace"))
    return json.loads(out.strip().splitlines()[-1])


# -------------------------------------------------------------- processes ---

def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def established_on(port):
    """ESTABLISHED TCP sockets on 127.0.0.1 whose local port is `port` (a server's ends of its
    client connections)."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def pattern(n, seed=0):
    """n deterministic, incompressible bytes (a seeded PRNG)."""
    return random.Random(seed).randbytes(n)


def text_pattern(n, seed=0):
    """n deterministic ASCII characters (a text message's payload)."""
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
    return bytes(alphabet[b & 63] for b in pattern(n, seed)).decode() if n < 4096 else \
        base64.b64encode(pattern(n * 3 // 4 + 3, seed)).decode()[:n]


def sha(b):
    if isinstance(b, str):
        b = b.encode()
    return hashlib.sha256(b).hexdigest()


def deadline_loop(timeout, step=0.02):
    """Yields until timeout seconds have passed (sleeping step between)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        yield
        time.sleep(step)
