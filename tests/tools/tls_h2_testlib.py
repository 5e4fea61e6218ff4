"""Helpers shared by the tls/, h2/ and grpc/ integration tests (read with portico_testlib.py).

  certs                 session fixture: testcerts.make() into a temporary directory
  start_portico_in      fixture: start(body, ports, name=...) runs a portico in its own
                        directory tmp_path/NAME (own config, error.log, access.log), so a
                        test can chain two porticos; stopped with SIGTERM at teardown and
                        must exit 0, like conftest.start_portico
  tls_server()          a `server { listen ... tls; ... }` block
  upstream()            an `upstream NAME { ... }` block with short timeouts
  curl_v()              curl returning (CurlResult, http_version)
  s_client()            `openssl s_client` with bounded time, returns (rc, output)
  wait_log()            wait for a regex in a log file
  tcp_peers_of()        local ports of ESTABLISHED loopback connections to a port
  RecordingBackend      a one-thread-per-connection HTTP/1.1 backend that records the raw
                        bytes of each request (trailers included) and answers a canned response

Everything stays on 127.0.0.1; all waits are bounded.
"""

import os
import re
import socket
import subprocess
import threading
import time

import pytest

import portico_testlib as lib
import testcerts

# ------------------------------------------------------------------ certs ---

_CERTS = {}


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    if "c" not in _CERTS:
        _CERTS["c"] = testcerts.make(str(tmp_path_factory.mktemp("certs")))
    return _CERTS["c"]


# ---------------------------------------------------------------- portico ---

@pytest.fixture
def start_portico_in(tmp_path):
    started = []

    def _start(body, ports, name="portico", workers=1, error_level="info",
               shutdown_timeout=2.0, main_extra="", access_log="combined", wait=True,
               host="127.0.0.1"):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        conf = lib.make_conf(d, body, workers=workers, access_log=access_log,
                             error_level=error_level,
                             shutdown_timeout="%dms" % int(shutdown_timeout * 1000),
                             main_extra=main_extra)
        p = lib.Portico(d, conf, ports, host=host, name=name,
                        shutdown_timeout=shutdown_timeout, wait=wait)
        started.append(p)
        return p

    yield _start
    problems = []
    for p in started:
        if p.stopped:
            print(p.logs())
            continue
        rc = p.stop()
        print(p.logs())
        if rc is None:
            p.kill()
            problems.append("portico pid %d did not exit within %.1f s of SIGTERM"
                            % (p.pid, p.shutdown_timeout + 3.0))
        elif rc != 0:
            problems.append("portico pid %d exited %d after SIGTERM (expected 0)"
                            % (p.pid, rc))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def upstream(name, servers, extra="", connect_timeout="1s", read_timeout="5s",
             send_timeout="5s"):
    srv = "".join("    server %s;\n" % s for s in servers)
    return ("upstream %s {\n%s    connect_timeout %s;\n    read_timeout %s;\n"
            "    send_timeout %s;\n%s\n}\n" % (name, srv, connect_timeout, read_timeout,
                                              send_timeout, extra))


def tls_server(port, cert, key, server_name="_", extra="", locations=None,
               listen_extra="", host="127.0.0.1"):
    if locations is None:
        locations = "    location / { proxy_pass app; }\n"
    return """server {
    listen %s tls%s;
    server_name %s;
    tls_certificate %s;
    tls_certificate_key %s;
%s
%s}
""" % (lib.hostport(host, port), listen_extra, server_name, cert, key, extra, locations)


def plain_server(port, extra="", locations=None, server_name="_", host="127.0.0.1"):
    if locations is None:
        locations = "    location / { proxy_pass app; }\n"
    return """server {
    listen %s;
    server_name %s;
%s
%s}
""" % (lib.hostport(host, port), server_name, extra, locations)


# ------------------------------------------------------------------ curl ----

def curl_v(url, *args, timeout=20):
    """lib.curl plus %{http_version}: returns (CurlResult, version string or None)."""
    marker = b"\n@@CURLV@@"
    r = lib.curl(url, "-w", marker.decode() + "%{http_version}", *args, timeout=timeout)
    ver = None
    i = r.body.rfind(marker)
    if i >= 0:
        ver = r.body[i + len(marker):].decode().strip()
        r.body = r.body[:i]
    return r, ver


# --------------------------------------------------------------- openssl ----

def s_client(port, args=(), stdin=b"", timeout=10, host="127.0.0.1"):
    """openssl s_client -connect host:port ARGS; returns (rc, combined output)."""
    cmd = ["openssl", "s_client", "-connect", lib.hostport(host, port)] + list(args)
    try:
        p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return -1, (e.output or b"").decode("utf-8", "replace") + "\n<timeout>"
    return p.returncode, p.stdout.decode("utf-8", "replace")


def peer_subject(out):
    """The `subject=` line of s_client's output (the server certificate), or None."""
    m = re.search(r"^subject=(.*)$", out, re.M)
    return m.group(1).strip() if m else None


# ------------------------------------------------------------------ logs ----

def read_log(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def wait_log(path, regex, timeout=5.0, start=0):
    """Wait until regex matches a line of the file (after byte offset start); return it."""
    rx = re.compile(regex)
    deadline = time.monotonic() + timeout
    while True:
        text = read_log(path)[start:]
        for line in text.splitlines():
            if rx.search(line):
                return line
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# ----------------------------------------------------------------- sockets --

def tcp_peers_of(port):
    """Local ports of ESTABLISHED TCP connections whose remote port is `port` (loopback)."""
    out = set()
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4 or parts[3] != "01":
                continue
            lport = int(parts[1].rsplit(":", 1)[1], 16)
            rport = int(parts[2].rsplit(":", 1)[1], 16)
            if rport == port:
                out.add(lport)
    return out


# --------------------------------------------------------- recording backend --

class RecordingBackend:
    """HTTP/1.1 backend on 127.0.0.1 that records each raw request (head, body framing
    bytes and trailers, exactly as portico sent them) and answers `response` (raw bytes)."""

    def __init__(self, response=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                 rcvbuf=None, read_delay=0.0):
        self.response = response
        self.read_delay = read_delay     # seconds slept after each recv: a slow reader
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(s,), daemon=True).start()

    def _recv(self, s):
        d = s.recv(16384 if self.read_delay else 65536)
        if self.read_delay:
            time.sleep(self.read_delay)
        return d

    def _read_until(self, s, buf, sep):
        while sep not in buf:
            d = self._recv(s)
            if not d:
                raise EOFError
            buf += d
        i = buf.index(sep) + len(sep)
        out = bytes(buf[:i])
        del buf[:i]
        return out

    def _conn(self, s):
        s.settimeout(10)
        buf = bytearray()
        try:
            while True:
                raw = self._read_until(s, buf, b"\r\n\r\n")
                head = raw.decode("latin-1").lower()
                m = re.search(r"\r\ncontent-length:\s*(\d+)", head)
                if "transfer-encoding: chunked" in head:
                    while True:
                        line = self._read_until(s, buf, b"\r\n")
                        raw += line
                        size = int(line.split(b";")[0].strip(), 16)
                        if size == 0:
                            while True:
                                t = self._read_until(s, buf, b"\r\n")
                                raw += t
                                if t == b"\r\n":
                                    break
                            break
                        while len(buf) < size + 2:
                            d = self._recv(s)
                            if not d:
                                raise EOFError
                            buf += d
                        raw += bytes(buf[:size + 2])
                        del buf[:size + 2]
                elif m:
                    n = int(m.group(1))
                    while len(buf) < n:
                        d = self._recv(s)
                        if not d:
                            raise EOFError
                        buf += d
                    raw += bytes(buf[:n])
                    del buf[:n]
                with self.lock:
                    self.requests.append(raw)
                s.sendall(self.response)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            s.close()

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def recording_backend():
    made = []

    def _make(response=None, **kw):
        b = RecordingBackend(response, **kw) if response is not None else \
            RecordingBackend(**kw)
        made.append(b)
        return b

    yield _make
    for b in made:
        b.stop()
