"""Helpers of the stream server tests (tests/integration/stream/): process wrappers for
tests/tools/tcp_backend.py and for redis-server / mosquitto, config snippets, socket helpers and
the parser of the access log's stream lines. The fixtures are in conftest.py."""

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

import portico_testlib as lib  # noqa: E402

TCP_BACKEND = os.path.join(_TOOLS, "tcp_backend.py")


class TcpBackend:
    """A tests/tools/tcp_backend.py process."""

    def __init__(self, name, mode="echo", tls=None, host="127.0.0.1", port=0, extra=(),
                 logdir=None):
        self.name = name
        self.host = host
        args = [lib.PYTHON, TCP_BACKEND, "--port", str(port), "--host", host, "--name", name,
                "--mode", mode] + list(extra)
        if tls:
            args += ["--tls", tls[0], tls[1]]
        self.errpath = os.path.join(logdir, "tcp-%s.err" % name) if logdir else os.devnull
        self.err = open(self.errpath, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("tcp backend %s did not start: %r" % (name, line))
        self.port = int(line.split()[2])
        self.addr = lib.hostport(host, self.port)

    def accepted(self):
        """Connections it accepted so far."""
        try:
            with open(self.errpath) as f:
                return len(re.findall(r"^accept \d+", f.read(), re.M))
        except OSError:
            return 0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

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


class Daemon:
    """A server process (redis-server, mosquitto) in the foreground, stopped by PID."""

    def __init__(self, args, port, logpath):
        self.log = open(logpath, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.port = port
        if not lib.wait_port("127.0.0.1", port, 10.0, self.proc):
            self.stop()
            raise RuntimeError("%s did not start on port %d" % (args[0], port))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def upstream(name, servers, extra=""):
    srv = "".join("    server %s;\n" % s for s in servers)
    return "upstream %s {\n%s    connect_timeout 2s;\n%s}\n" % (name, srv, extra)


def stream(*servers, extra=""):
    """A stream block of server bodies (each a string of directives)."""
    body = ""
    for s in servers:
        lines = "".join("        %s\n" % line for line in s.strip().split("\n"))
        body += "    server {\n%s    }\n" % lines
    return "stream {\n%s%s}\n" % (extra, body)


# ---- clients and logs ------------------------------------------------------------------------

def connect(port, timeout=5.0, host="127.0.0.1", source=None):
    """A client connection; `source`: the local address (127.0.0.N: another client IP)."""
    s = socket.create_connection((host, port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_until(s, want, timeout=5.0):
    """Reads until `want` (bytes) is in what was read, or EOF/timeout; returns all of it."""
    data = b""
    deadline = time.monotonic() + timeout
    while want not in data and time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def recv_exact(s, n, timeout=10.0):
    data = bytearray()
    deadline = time.monotonic() + timeout
    while len(data) < n and time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(min(1 << 20, n - len(data)))
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def closed_within(s, timeout):
    """True when the peer closes (EOF or reset) within timeout; data read meanwhile is dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not chunk:
            return True
    return False


STREAM_LINE = re.compile(
    r'^(?P<client>\S+) - - \[[^\]]+\] "(?P<proto>TCP|TLS) (?P<listen>\S+)" (?P<status>\d+) '
    r'(?P<sent>\d+) (?P<received>\d+) (?P<time>[\d.]+) upstream=(?P<upstream>\S+) '
    r'upstream_addr="(?P<addrs>[^"]*)" upstream_connect_time="(?P<ctimes>[^"]*)" '
    r'upstream_bytes_sent=(?P<up_sent>\d+) upstream_bytes_received=(?P<up_received>\d+) '
    r'sni="(?P<sni>[^"]*)" outcome=(?P<outcome>\S+)$')


def stream_log(p):
    """The access log's stream lines, parsed (flushed once a second: wait for them)."""
    out = []
    for line in p.read(p.access_log).splitlines():
        m = STREAM_LINE.match(line)
        if m:
            out.append(m.groupdict())
    return out


def wait_stream_log(p, n=1, timeout=6.0, where=None):
    """Waits until at least n stream lines (matching where(line) if given) are logged."""
    def got():
        lines = [l for l in stream_log(p) if where is None or where(l)]
        return lines if len(lines) >= n else None
    return lib.wait_until(got, timeout=timeout, what="%d stream access log line(s)" % n)
