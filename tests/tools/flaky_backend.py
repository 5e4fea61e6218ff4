#!/usr/bin/python3
"""A backend whose health, status and speed a test flips at run time (stdlib only).

For portico's balance/ and health/ integration tests: a server that is healthy, then
fails its health check, then recovers; or answers 500/503 for a while; or is slow.

What it shows (so a test can assert through the proxy):
  * every answer names the server: body NAME (the --name) and header X-Backend: NAME,
    so a client sees which server took each request;
  * /stats counts what reached it: proxied requests ("requests"), health-check requests
    ("health") and TCP connections ("connections"); control and /stats requests are not
    counted.

Paths (the query string is ignored):
  /health                      the health-check answer: status HEALTH (default 200) and
                               body HEALTH_BODY (default "healthy NAME"); 204/304 have none
  /control/health/CODE         set HEALTH (e.g. 503: the next checks fail)
  /control/health-seq/C1,C2..  each health check answers the next code of this list, cyclically
                               (200,503: a server that passes and fails in turn); a later
                               /control/health/CODE ends the sequence
  /control/health-body/TEXT    set HEALTH_BODY (for `health_check ... body=`)
  /control/status/CODE         status of every proxied request (default 200)
  /control/delay/MS            delay before answering proxied requests (default 0)
  /stats                       JSON {"requests", "health", "connections"}
  anything else                a proxied request: waits DELAY ms, answers STATUS with
                               body NAME
The request body, if any, is read (Content-Length or chunked) and ignored. Connections are
kept alive (HTTP/1.1) unless the client asks otherwise.

Options: --port P (0: any free port; a fixed port lets a test restart a killed server on
the same address) --host H --name NAME --health CODE --health-body TEXT --status CODE
--delay MS.  Prints "READY <name> <host> <port>" on stdout when listening.

Imported (not run), it also gives the test side:
  FlakyBackend(name, logdir, port=0, health=200, status=200, delay_ms=0)
      start it as a subprocess; .addr, .port, .set_health(code), .set_health_body(text),
      .set_status(code), .set_delay(ms), .stats(), .kill() (SIGKILL, as a crash), .stop()
  Client(host, port)   keep-alive GETs through portico: .get(path, headers) ->
                       (status, backend name, headers dict); reconnects after errors
  Load(host, port, path, threads)   a bounded background load loop recording every
                       answer as (monotonic time, status, backend); .results(), .stop()
"""

import argparse
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PYTHON = "/usr/bin/python3"

# ------------------------------------------------------------------ server ---


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.name = args.name
        self.health = args.health
        self.health_body = args.health_body if args.health_body is not None \
            else "healthy %s" % args.name
        self.status = args.status
        self.delay_ms = args.delay
        self.requests = 0
        self.health_checks = 0
        self.health_seq = []      # codes answered in turn by /health, when not empty
        self.health_seq_start = 0
        self.connections = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "flaky"
    sys_version = ""

    def setup(self):
        super().setup()
        self.counted_conn = False

    def log_message(self, fmt, *args):  # quiet
        pass

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(4096)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self.rfile.read(size + 2)
        n = int(self.headers.get("Content-Length") or 0)
        while n > 0:
            d = self.rfile.read(min(n, 65536))
            if not d:
                return
            n -= len(d)

    def answer(self, status, body):
        body = body.encode() if isinstance(body, str) else body
        st = self.server.state
        self.send_response(status)
        self.send_header("X-Backend", st.name)
        self.send_header("Content-Type", "text/plain")
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        else:
            body = b""
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        st = self.server.state
        self.read_body()
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        parts = path.strip("/").split("/", 2)
        if parts[0] == "control" and len(parts) == 3:
            what, val = parts[1], parts[2]
            with st.lock:
                if what == "health":
                    st.health = int(val)
                    st.health_seq = []
                elif what == "health-seq":
                    st.health_seq = [int(v) for v in val.split(",")]
                    st.health_seq_start = st.health_checks
                elif what == "health-body":
                    st.health_body = val
                elif what == "status":
                    st.status = int(val)
                elif what == "delay":
                    st.delay_ms = int(val)
                else:
                    self.answer(404, "no such control\n")
                    return
            self.answer(200, "ok\n")
            return
        if parts[0] == "stats":
            with st.lock:
                body = json.dumps({"requests": st.requests, "health": st.health_checks,
                                   "connections": st.connections})
            self.answer(200, body)
            return
        if not self.counted_conn:
            self.counted_conn = True
            with st.lock:
                st.connections += 1
        if parts[0] == "health":
            with st.lock:
                code, body = st.health, st.health_body
                if st.health_seq:
                    code = st.health_seq[(st.health_checks - st.health_seq_start) %
                                         len(st.health_seq)]
                st.health_checks += 1
            self.answer(code, body)
            return
        with st.lock:
            st.requests += 1
            code, delay = st.status, st.delay_ms
        if delay:
            time.sleep(delay / 1000.0)
        self.answer(code, st.name)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="flaky")
    ap.add_argument("--health", type=int, default=200)
    ap.add_argument("--health-body", default=None)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--delay", type=int, default=0)
    args = ap.parse_args()
    threading.stack_size(512 * 1024)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    signal.signal(signal.SIGINT, lambda *a: os._exit(0))
    if ":" in args.host:
        Server.address_family = socket.AF_INET6
    srv = Server((args.host, args.port), Handler)
    srv.state = State(args)
    sys.stdout.write("READY %s %s %d\n" % (args.name, args.host, srv.server_address[1]))
    sys.stdout.flush()
    srv.serve_forever(poll_interval=0.5)


# --------------------------------------------------------- test-side helpers ---


class FlakyBackend:
    """This script as a subprocess, controlled over HTTP."""

    def __init__(self, name, logdir=None, port=0, host="127.0.0.1", health=200,
                 health_body=None, status=200, delay_ms=0):
        self.name = name
        self.host = host
        args = [PYTHON, os.path.abspath(__file__), "--port", str(port), "--host", host,
                "--name", name, "--health", str(health), "--status", str(status),
                "--delay", str(delay_ms)]
        if health_body is not None:
            args += ["--health-body", health_body]
        self.errpath = os.path.join(logdir, "flaky-%s.err" % name) if logdir else os.devnull
        self.err = open(self.errpath, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("flaky backend %s did not start: %r" % (name, line))
        self.port = int(line.split()[3])
        self.addr = "[%s]:%d" % (host, self.port) if ":" in host else \
            "%s:%d" % (host, self.port)

    def _ctl(self, path):
        c = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            c.request("GET", path, headers={"Connection": "close"})
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError("%s %s: %d" % (self.name, path, r.status))
            return body
        finally:
            c.close()

    def set_health(self, code):
        self._ctl("/control/health/%d" % code)

    def set_health_seq(self, codes):
        """Health checks answer these codes in turn, starting with the next check."""
        return self._ctl("/control/health-seq/" + ",".join(str(c) for c in codes))

    def set_health_body(self, text):
        self._ctl("/control/health-body/%s" % urllib.parse.quote(text, safe=""))

    def set_status(self, code):
        self._ctl("/control/status/%d" % code)

    def set_delay(self, ms):
        self._ctl("/control/delay/%d" % ms)

    def stats(self):
        return json.loads(self._ctl("/stats"))

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL: the server dies as in a crash, its port refuses connections."""
        if self.proc.poll() is None:
            self.proc.kill()
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
        if not self.err.closed:
            self.err.close()


class Client:
    """Keep-alive HTTP/1.1 GETs to portico; a broken connection is replaced."""

    def __init__(self, host, port, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None

    def get(self, path="/", headers=None, method="GET", body=None):
        """-> (status, X-Backend or None, {lowercase name: value}); status 0 on a transport
        error (the request is not resent: an error is an error)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            r.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return 0, None, {"error": repr(e)}
        hs = {}
        for n, v in r.getheaders():
            n = n.lower()
            hs[n] = hs[n] + "\n" + v if n in hs else v
        if r.will_close:
            self.close()
        return r.status, hs.get("x-backend"), hs

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Load:
    """Background GET loop over `threads` keep-alive connections, bounded by max_seconds.

    Every answer is recorded as (monotonic time at the answer, status, backend name);
    status 0 is a transport error. pause_s sleeps between requests of one thread."""

    def __init__(self, host, port, path="/", threads=2, max_seconds=60.0, pause_s=0.0):
        self.host, self.port, self.path = host, port, path
        self.pause_s = pause_s
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.res = []
        self.errors = []
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        c = Client(self.host, self.port)
        try:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                st, be, hs = c.get(self.path)
                now = time.monotonic()
                with self.lock:
                    self.res.append((now, st, be))
                    if st == 0:
                        self.errors.append(hs.get("error"))
                if self.pause_s:
                    time.sleep(self.pause_s)
        finally:
            c.close()

    def results(self, since=None, until=None):
        with self.lock:
            r = list(self.res)
        return [x for x in r if (since is None or x[0] >= since) and
                (until is None or x[0] <= until)]

    def count(self):
        with self.lock:
            return len(self.res)

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(15)
        return self.results()


if __name__ == "__main__":
    main()
