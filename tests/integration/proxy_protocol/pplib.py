"""Helpers of the PROXY protocol tests: headers built here (v1 text, v2 binary with TLVs), a
process wrapper for tests/tools/pp_backend.py, and log readers."""

import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_TOOLS = os.path.join(_HERE, "..", "..", "tools")
for d in (_TOOLS, os.path.join(_HERE, "..", "stream")):
    if d not in sys.path:
        sys.path.insert(0, d)

import portico_testlib as lib  # noqa: E402

PP_BACKEND = os.path.join(_TOOLS, "pp_backend.py")
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, dst, sport, dport, tlvs=b"", local=False):
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    if ":" in src:
        addr = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + struct.pack("!HH", sport, dport))
        fam = 0x21
    else:
        addr = (socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
                + struct.pack("!HH", sport, dport))
        fam = 0x11
    payload = addr + tlvs
    return SIG + bytes([0x21, fam]) + struct.pack("!H", len(payload)) + payload


def tlv(t, value):
    return bytes([t]) + struct.pack("!H", len(value)) + value


class PPBackend:
    """A tests/tools/pp_backend.py process; .headers() are the lines it logged."""

    def __init__(self, logdir, mode="http", tls=None, host="127.0.0.1"):
        self.log = os.path.join(logdir, "pp-backend-%d.log" % id(self))
        args = [lib.PYTHON, PP_BACKEND, "--mode", mode, "--log", self.log, "--host", host]
        if tls:
            args += ["--tls", tls[0], tls[1]]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("pp backend did not start: %r" % line)
        self.port = int(line.split()[2])
        self.addr = lib.hostport(host, self.port)

    def headers(self):
        try:
            with open(self.log) as f:
                return [ln.rstrip("\n") for ln in f]
        except OSError:
            return []

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


def connect(port, host="127.0.0.1", source=None, timeout=5.0):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    if source is not None:
        s.bind((source, 0))
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_http(s, timeout=5.0):
    """One HTTP/1.1 response (Content-Length framed): (status, headers dict, body)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        d = s.recv(65536)
        if not d:
            raise EOFError("closed before a response head: %r" % buf)
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(body) < n:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        d = s.recv(65536)
        if not d:
            break
        body += d
    return status, hdrs, body


def closed(s, timeout=8.0):
    """True when the peer closes (EOF or reset) within timeout without sending anything."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            d = s.recv(4096)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if not d:
            return True
        return False
    return False


def error_log(p):
    try:
        with open(os.path.join(str(p.tmpdir), "error.log")) as f:
            return f.read()
    except OSError:
        return ""


def access_lines(p):
    try:
        with open(os.path.join(str(p.tmpdir), "access.log")) as f:
            return f.read().splitlines()
    except OSError:
        return []


def wait_for(fn, timeout=8.0, what=None):
    assert lib.wait_until(fn, timeout=timeout), what or "condition not met in time"
