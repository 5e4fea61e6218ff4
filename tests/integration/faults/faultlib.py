"""Helpers of the fault and slow-client tests (see conftest.py): descriptor and memory counts
of a process, and Steady, the well-behaved client that runs beside the misbehaving ones."""

import hashlib
import os
import threading
import time

import portico_testlib as lib
from h2_attacks import H2Client


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Steady(threading.Thread):
    """A client that keeps asking and checks every answer, on one HTTP/1.1 keep-alive
    connection or one HTTP/2 connection (reopened only after a failure). Each round: GET /bytes/N (body checked against X-Body-Sha256)
    and POST /echo (the echo must be what was sent). Failures are kept, not raised."""

    def __init__(self, port, proto="h1", size=65536, tls=False, cafile=None, pause=0.02):
        super().__init__(daemon=True)
        self.port = port
        self.proto = proto
        self.size = size
        self.tls = tls
        self.cafile = cafile
        self.pause = pause  # between rounds: it checks, it does not load the machine
        self.ok = 0
        self.failures = []
        self.times = []
        self._quit = threading.Event()

    def stop(self, timeout=30):
        self._quit.set()
        self.join(timeout)
        assert not self.is_alive(), "the steady client is stuck"

    def _h1_round(self, c, body):
        c.send("GET /bytes/%d HTTP/1.1\r\nHost: steady\r\n\r\n" % self.size)
        r = c.read_response()
        if r.status != 200 or hashlib.sha256(r.body).hexdigest() != r.header("X-Body-Sha256"):
            return "GET: status %d, %d bytes, sha mismatch" % (r.status, len(r.body))
        c.send(("POST /echo HTTP/1.1\r\nHost: steady\r\nContent-Length: %d\r\n\r\n"
                % len(body)).encode() + body)
        r = c.read_response()
        if r.status != 200 or r.body != body:
            return "POST: status %d, %d bytes back" % (r.status, len(r.body))
        if (r.header("Connection") or "").lower() == "close":  # keepalive_requests reached
            return "reconnect"
        return None

    def _h2_round(self, c, body):
        r = c.get("/bytes/%d" % self.size, timeout=30)
        if r.status != 200 or hashlib.sha256(bytes(r.data)).hexdigest() != \
                r.header("x-body-sha256"):
            return "GET: %r" % (r,)
        sid = c.request("POST", "/echo", body=body)
        r = c.response(sid, timeout=30)
        if r.status != 200 or bytes(r.data) != body:
            return "POST: %r" % (r,)
        return None

    def run(self):
        body = os.urandom(20000)
        c = None
        while not self._quit.is_set():
            try:
                if c is None:
                    if self.proto == "h1":
                        c = lib.RawConn("127.0.0.1", self.port, timeout=30)
                    else:
                        c = H2Client("127.0.0.1", self.port, tls=self.tls, cafile=self.cafile,
                                     server_hostname="localhost", timeout=30)
                err = (self._h1_round if self.proto == "h1" else self._h2_round)(c, body)
            except Exception as e:  # noqa: BLE001 (kept and reported by the test)
                err = repr(e)
            if err == "reconnect":
                c.close()
                c = None
                err = None
            elif err is not None:
                self.failures.append(err)
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass
                c = None
            if err is None:
                self.ok += 1
                self.times.append(time.monotonic())
                self._quit.wait(self.pause)
        if c is not None:
            c.close()
