"""Helpers for portico's integration tests: processes, configs, clients.

Used by conftest.py (fixtures) and the test files.  Everything talks to
127.0.0.1 / ::1 only and every wait is bounded.
"""

import hashlib
import json
import os
import re
import select
import signal
import socket
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TOOLS = os.path.join(REPO, "tests", "tools")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import backend as _backend  # noqa: E402  (tests/tools/backend.py)

pattern_iter = _backend.pattern_iter
pattern_sha256 = _backend.pattern_sha256

PYTHON = "/usr/bin/python3"
PORTICO_BIN = os.environ.get("PORTICO_BIN", os.path.join(REPO, "portico"))
BACKEND_PY = os.path.join(TOOLS, "backend.py")
CURL = "curl"

MiB = 1024 * 1024
GiB = 1024 * MiB

# What a trailer section never carries onwards (PT_TRAILER_DROP in src/http/headers.h), as
# HTTP/1.1 field lines: the connection-specific fields (RFC 9113 section 8.2.2 makes an HTTP/2
# message with one malformed: found by fuzz_h1_response), framing and routing fields (RFC 9110
# section 6.5.1) and the forwarding fields portico writes itself.
FORBIDDEN_TRAILER_FIELDS = (
    b"Transfer-Encoding: chunked\r\nConnection: close\r\nKeep-Alive: 5\r\n"
    b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\n"
    b"Trailer: X-A\r\nContent-Length: 9\r\nHost: evil.example\r\n"
    b"Expect: 100-continue\r\nX-Forwarded-For: 192.0.2.66\r\n"
    b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n"
    b"Forwarded: for=192.0.2.66\r\n")


# ---------------------------------------------------------------- ports ---

def _port_range():
    """Ports below the kernel's ephemeral range, a slice per xdist worker: a port the kernel
    hands out (bind to 0) can be taken by an outgoing connection -- portico's own backend
    connections -- before portico binds it, which made startup fail now and then."""
    lo = 20000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        eph = 32768
    hi = max(lo + 2000, eph)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    n = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    try:
        i = int(worker[2:])
    except ValueError:
        i = 0
    width = (hi - lo) // max(n, 1)
    return lo + i * width, lo + (i + 1) * width


_port_rng = random.Random(os.getpid() ^ int(time.time() * 1000))
# Ports handed out lately by this process: two calls before anything binds the first port (a
# test asking for a TLS and a cleartext port) must not get the same one.
_given = []


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    lo, hi = _port_range()
    for _ in range(200):
        port = _port_rng.randrange(lo, hi)
        if port in _given:
            continue
        del _given[:-64]
        _given.append(port)
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket(fam, socket.SOCK_STREAM)   # range exhausted: let the kernel choose
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_port(host, port, timeout=5.0, proc=None):
    """Wait until host:port accepts a TCP connection."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return True
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    return False


def wait_until(cond, timeout=5.0, step=0.02, what=None):
    """Poll cond() until it returns a true value or the deadline passes; return that value
    (or the last false one).  With `what`, a timeout raises AssertionError("... WHAT"), so
    tests wait for a condition instead of sleeping a fixed time and hoping."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            break
        time.sleep(step)
    if not v and what is not None:
        raise AssertionError("not within %.1f s: %s" % (timeout, what))
    return v


def stays(cond, duration, step=0.05):
    """True if cond() holds at every poll for `duration` seconds: for asserting that something
    does NOT happen, checked repeatedly over a bounded window rather than once after a sleep."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not cond():
            return False
        time.sleep(step)
    return bool(cond())


def hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# -------------------------------------------------------------- backend ---

class Backend:
    """A tests/tools/backend.py subprocess."""

    def __init__(self, name="b1", host="127.0.0.1", port=0, flags=(), logdir=None):
        self.name = name
        self.host = host
        args = [PYTHON, BACKEND_PY, "--port", str(port), "--host", host,
                "--name", name] + list(flags)
        self.errpath = os.path.join(logdir, "backend-%s.err" % name) if logdir else os.devnull
        self.err = open(self.errpath, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("backend %s did not start: %r" % (name, line))
        self.port = int(line.split()[3])
        self.addr = hostport(host, self.port)

    def url(self, path="/"):
        return "http://%s%s" % (self.addr, path)

    def stats(self):
        st, _, body = raw_request(self.host, self.port, "GET", "/stats")
        assert st == 200
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


# -------------------------------------------------------------- portico ---

def make_conf(tmpdir, body, workers=1, access_log="combined", error_level="info",
              shutdown_timeout="2s", main_extra=""):
    """A full config: main-context preamble (logs into tmpdir) + body."""
    lines = ["workers %s;" % workers,
             "error_log %s %s;" % (os.path.join(str(tmpdir), "error.log"), error_level),
             "shutdown_timeout %s;" % shutdown_timeout]
    if access_log == "off":
        lines.append("access_log off;")
    else:
        lines.append("access_log %s %s;" % (os.path.join(str(tmpdir), "access.log"),
                                            access_log))
    if main_extra:
        lines.append(main_extra)
    return "\n".join(lines) + "\n\n" + body


def proxy_conf(port, servers, upstream_extra="", server_extra="", location_extra="",
               host="127.0.0.1"):
    """Body of the common case: one upstream `app`, one server, `location /`."""
    srv = "\n".join("    server %s;" % s for s in servers)
    # short default timeouts, unless upstream_extra sets them itself
    defaults = "".join("    %s %s;\n" % (k, v) for k, v in
                       (("connect_timeout", "1s"), ("read_timeout", "5s"),
                        ("send_timeout", "5s"))
                       if not re.search(r"\b%s\b" % k, upstream_extra))
    return """upstream app {
%s
%s%s
}

server {
    listen %s;
    server_name _;
%s
    location / {
        proxy_pass app;
%s
    }
}
""" % (srv, defaults, upstream_extra, hostport(host, port), server_extra, location_extra)


class Portico:
    """A running portico binary with a generated config.  wrap: a command line to run it
    under, which must exec portico in the same process (e.g. ["prlimit", "--nofile=64:64"]),
    so that pid and signals still reach portico.  exe: another path to the binary (a copy a
    binary-upgrade test replaces)."""

    def __init__(self, tmpdir, conf, ports, host="127.0.0.1", name="portico",
                 shutdown_timeout=2.0, wait=True, wrap=(), exe=None):
        self.tmpdir = str(tmpdir)
        self.conf_path = os.path.join(self.tmpdir, name + ".conf")
        self.write_conf(conf)
        self.stdout_path = os.path.join(self.tmpdir, name + ".stdout")
        self.stderr_path = os.path.join(self.tmpdir, name + ".stderr")
        self.error_log = os.path.join(self.tmpdir, "error.log")
        self.access_log = os.path.join(self.tmpdir, "access.log")
        self.host = host
        self.ports = list(ports)
        self.port = self.ports[0] if self.ports else None
        self.shutdown_timeout = shutdown_timeout
        self.stopped = False
        self.exit_code = None
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(list(wrap) + [exe or PORTICO_BIN, "-c", self.conf_path],
                                     stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        if wait:
            for p in self.ports:
                if not wait_port(host, p, 5.0, self.proc):
                    rc = self.proc.poll()
                    logs = self.logs()
                    self.kill()
                    raise AssertionError("portico did not start listening on %s (exit %r)\n%s"
                                         % (hostport(host, p), rc, logs))

    def write_conf(self, conf):
        """(Re)writes the configuration file, atomically, for a start or a reload."""
        with open(self.conf_path + ".tmp", "w") as f:
            f.write(conf)
        os.rename(self.conf_path + ".tmp", self.conf_path)

    def url(self, path="/"):
        return "http://%s%s" % (hostport(self.host, self.port), path)

    def logs(self):
        out = []
        for p in (self.conf_path, self.stderr_path, self.stdout_path, self.error_log):
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if len(data) > 20000:
                data = b"...\n" + data[-20000:]
            out.append("---- %s ----\n%s" % (p, data.decode("utf-8", "replace")))
        return "\n".join(out)

    def read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def vm_hwm_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def threads(self, at_least=0, timeout=2.0):
        """Number of threads; waits up to timeout for at_least of them."""
        deadline = time.monotonic() + timeout
        while True:
            n = len(os.listdir("/proc/%d/task" % self.pid))
            if n >= at_least or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.stopped = True
        self._out.close()
        self._err.close()
        return self.exit_code

    def stop(self):
        """SIGTERM; return the exit code (None if it did not exit in time)."""
        if self.stopped:
            return self.exit_code
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        rc = self.wait_exit(self.shutdown_timeout + 3.0)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.stopped = True
        self.exit_code = self.proc.returncode
        self._out.close()
        self._err.close()


# ------------------------------------------------- machine assumptions ---

_ipv6 = None


def have_ipv6_loopback():
    """True when ::1 can be listened on (configured on lo).  Tests that need it are marked
    @pytest.mark.ipv6 and skipped otherwise; scripts/test.sh configures ::1 when it can."""
    global _ipv6
    if _ipv6 is None:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
            _ipv6 = True
        except OSError:
            _ipv6 = False
        finally:
            s.close()
    return _ipv6


def private_hosts_prefix(hosts_path):
    """A command prefix that runs its command in a private mount namespace where hosts_path is
    bind-mounted over /etc/hosts: names resolve from that file for the command only (the real
    /etc/hosts and every other process are untouched).  Needs root (CAP_SYS_ADMIN)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts_path)]


def private_hosts_usable(hosts_path, name):
    """Why private_hosts_prefix() cannot be used here (None when it can): runs
    `getent ahosts NAME` under it, which must answer from hosts_path (a name service cache
    daemon, or no unshare/mount permission, would defeat it)."""
    with open(hosts_path) as f:
        want = set(l.split()[0] for l in f if l.strip() and not l.startswith("#")
                   and name in l.split()[1:])
    try:
        p = subprocess.run(private_hosts_prefix(hosts_path) + ["getent", "ahosts", name],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "cannot run unshare: %s" % e
    if p.returncode != 0:
        return "unshare --mount + mount --bind over /etc/hosts failed (root needed): %s" % (
            p.stderr.decode("utf-8", "replace").strip())
    got = set(l.split()[0] for l in p.stdout.decode().splitlines() if l.strip())
    if got != want:
        return "a private /etc/hosts is not what the resolver reads (nscd?): %s resolves " \
               "to %s, not %s" % (name, sorted(got), sorted(want))
    return None


def run_portico(args, timeout=10):
    """Run the binary to completion (for -t / -v); return (rc, stdout+stderr)."""
    p = subprocess.run([PORTICO_BIN] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# ----------------------------------------------------------------- curl ---

class CurlResult:
    def __init__(self, rc, status, headers, body, stderr, interim):
        self.rc = rc
        self.status = status
        self.headers = headers      # list of (name, value) of the final response
        self.body = body
        self.stderr = stderr
        self.interim = interim      # list of (status, headers) of 1xx responses

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def json(self):
        return json.loads(self.body)

    def sha256(self):
        return hashlib.sha256(self.body).hexdigest()

    def __repr__(self):
        return "<curl rc=%d status=%r headers=%r body=%r stderr=%r>" % (
            self.rc, self.status, self.headers, self.body[:200], self.stderr[-500:])


def parse_header_dump(text):
    """Parse curl -D output: return (final status, final headers, interim)."""
    blocks = []
    cur = None
    for line in text.split("\r\n"):
        if line.startswith("HTTP/"):
            parts = line.split(" ", 2)
            cur = [int(parts[1]), []]
            blocks.append(cur)
        elif line and cur is not None and ":" in line:
            n, v = line.split(":", 1)
            cur[1].append((n.strip(), v.strip()))
    if not blocks:
        return None, [], []
    final = blocks[-1]
    interim = [(b[0], b[1]) for b in blocks[:-1]]
    return final[0], final[1], interim


def curl(url, *args, timeout=20, body_to=None):
    """Run curl; return CurlResult.  body_to: write the body to that file."""
    import tempfile
    with tempfile.NamedTemporaryFile(prefix="curlhdr") as hf:
        out = ["-o", body_to] if body_to else []
        cmd = [CURL, "-sS", "--max-time", str(timeout), "-D", hf.name] + out + \
            list(args) + [url]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout + 10)
        with open(hf.name, "rb") as f:
            hdr = f.read().decode("latin-1")
    status, headers, interim = parse_header_dump(hdr)
    return CurlResult(p.returncode, status, headers, p.stdout,
                      p.stderr.decode("utf-8", "replace"), interim)


def curl_sha256(url, *args, timeout=120):
    """Stream a (big) response body from curl into sha256; return (rc, hex, len, headers)."""
    import tempfile
    with tempfile.NamedTemporaryFile(prefix="curlhdr") as hf:
        cmd = [CURL, "-sS", "--max-time", str(timeout), "-D", hf.name] + list(args) + [url]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            h = hashlib.sha256()
            n = 0
            while True:
                d = p.stdout.read(1 << 20)
                if not d:
                    break
                h.update(d)
                n += len(d)
            err = p.stderr.read()
            rc = p.wait(timeout + 10)
        finally:
            if p.poll() is None:  # interrupted (hard timeout): do not leak curl
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
        with open(hf.name, "rb") as f:
            hdr = f.read().decode("latin-1")
    status, headers, _ = parse_header_dump(hdr)
    return rc, status, h.hexdigest(), n, dict((k.lower(), v) for k, v in headers), err


def write_pattern_file(path, n):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for b in pattern_iter(n):
            f.write(b)
            h.update(b)
    return h.hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            d = f.read(1 << 20)
            if not d:
                break
            h.update(d)
    return h.hexdigest()


# ------------------------------------------------------- raw HTTP/1.1 ----

class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def has(self, name):
        return self.header(name) is not None

    def __repr__(self):
        return "<Response %s %s %r body=%r>" % (self.status, self.reason, self.headers,
                                                self.body[:100])


class ConnClosed(Exception):
    pass


class RawConn:
    """A raw client connection that can send arbitrary bytes and parse replies."""

    def __init__(self, host, port, timeout=5.0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            raise ConnClosed()
        try:
            d = self.sock.recv(262144)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            raise ConnClosed()
        self.buf += d

    def _until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, method="GET", allow_interim=False):
        """Read one response.  1xx are skipped unless allow_interim."""
        while True:
            raw = self._until(b"\r\n\r\n")
            lines = raw[:-4].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                n, v = line.split(":", 1)
                headers.append((n.strip(), v.strip()))
            r = Response(version, status, reason, headers, b"", raw)
            if 100 <= status < 200:
                if allow_interim:
                    return r
                continue
            break
        if method == "HEAD" or status in (204, 304):
            return r
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if "chunked" in te:
            body = bytearray()
            while True:
                line = self._until(b"\r\n")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self._exact(size)
                assert self._exact(2) == b"\r\n", "bad chunk framing from portico"
            r.body = bytes(body)
        elif cl is not None:
            r.body = self._exact(int(cl))
        else:
            try:
                while True:
                    self._fill()
            except ConnClosed:
                pass
            r.body = bytes(self.buf)
            self.buf.clear()
        return r

    def read_all(self, timeout=5.0):
        """Read until the peer closes (or timeout); return the bytes."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                self._fill()
        except (ConnClosed, socket.timeout):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def is_closed(self, timeout=3.0):
        """True if the peer closes (EOF or RST) within timeout, with no data left."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if d:
            self.buf += d
            return False
        self.eof = True
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def raw_request(host, port, method, path, headers=None, body=b"", version="HTTP/1.1",
                timeout=5.0):
    """One request on a new connection; return (status, headers, body)."""
    hs = {"Host": "test.local", "Connection": "close"}
    if headers:
        hs.update(headers)
    if body:
        hs["Content-Length"] = str(len(body))
    head = "%s %s %s\r\n" % (method, path, version) + \
        "".join("%s: %s\r\n" % kv for kv in hs.items()) + "\r\n"
    with RawConn(host, port, timeout) as c:
        c.send(head.encode("latin-1") + body)
        r = c.read_response(method)
    return r.status, r.headers, r.body


def get(port, path, headers=None, host="127.0.0.1"):
    return raw_request(host, port, "GET", path, headers)
