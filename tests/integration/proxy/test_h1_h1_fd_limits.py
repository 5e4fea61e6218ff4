"""Descriptor exhaustion and connection limits: what the worker does when accept() fails with
EMFILE (pause, bounded log, retry), `max_connections` (new clients wait in the kernel backlog),
the RLIMIT_NOFILE raise at start, and TLS clients that reset or stall mid-handshake (no busy
loop).  CPU use is read from /proc/PID/stat (utime + stime of every thread), which does not
depend on how busy the machine is."""

import os
import socket
import ssl
import struct
import time

import pytest

import portico_testlib as lib
from portico_testlib import RawConn
from tls_h2_testlib import certs  # noqa: F401  (a fixture)
from tls_h2_testlib import plain_server, tls_server, upstream

CLK_TCK = os.sysconf("SC_CLK_TCK")
KEEPALIVE_GET = "GET /name HTTP/1.1\r\nHost: t\r\n\r\n"


def cpu_seconds(pid):
    """User + system CPU time of the whole process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def log_lines(p, needle):
    return [line for line in p.read(p.error_log).splitlines() if needle in line]


def prlimit(soft, hard):
    return ["prlimit", "--nofile=%d:%d" % (soft, hard)]


def start(tmp_path, start_backend, start_portico, main_extra="", wrap=(), server_extra=""):
    b = start_backend("b1")
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, lib.proxy_conf(port, [b.addr], server_extra=server_extra),
                         workers=1, access_log="off", main_extra=main_extra)
    return start_portico(conf, [port], wrap=wrap)


def silent(conn, timeout):
    """True if nothing arrives on conn within timeout (the connection stays open)."""
    conn.sock.settimeout(timeout)
    try:
        conn.sock.recv(1)
    except socket.timeout:
        return True
    return False


# ------------------------------------------------------------------- EMFILE ---

NOFILE = 64


@pytest.mark.hard_timeout(40)
def test_h1_h1_emfile_pauses_accepts(tmp_path, start_backend, start_portico):
    # max_connections set above what NOFILE holds, so that accept() itself runs out
    p = start(tmp_path, start_backend, start_portico, main_extra="max_connections 1000;",
              wrap=prlimit(NOFILE, NOFILE))
    # a keep-alive client from before the shortage; its backend connection stays pooled
    ka = RawConn("127.0.0.1", p.port)
    ka.send(KEEPALIVE_GET)
    assert ka.read_response().status == 200

    cpu0 = cpu_seconds(p.pid)
    idle = []
    try:
        # more clients than descriptors: portico accepts until EMFILE, the rest wait in the
        # listen backlog (the connect itself succeeds)
        for _ in range(NOFILE + 40):
            idle.append(socket.create_connection(("127.0.0.1", p.port), timeout=5))
        time.sleep(2.0)
        cpu = cpu_seconds(p.pid) - cpu0
        fails = log_lines(p, "accept() on ")
        assert fails, "no accept() failure logged:\n" + p.read(p.error_log)[-3000:]
        assert "Too many open files" in fails[0] and "pausing accepts" in fails[0], fails[0]
        assert len(fails) <= 5, "%d accept() failure lines in 2 s:\n%s" % (
            len(fails), "\n".join(fails[:10]))
        assert cpu < 0.3, "portico used %.2f s of CPU in 2 s while out of descriptors" % cpu
        # the connections it has are still served
        ka.send(KEEPALIVE_GET)
        r = ka.read_response()
        assert r.status == 200 and r.body == b"b1", r
    finally:
        for s in idle:
            s.close()
    ka.close()
    # descriptors are back: a new client is served (after at most the 100 ms retry)
    r = lib.curl(p.url("/name"), timeout=10)
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r


def test_h1_h1_emfile_then_graceful_stop(tmp_path, start_backend, start_portico):
    """SIGTERM while accepts are paused: the drain closes the listeners, the retry timer does
    not re-arm them nor keep the worker alive, and portico exits 0 at once (its idle
    connections are closed by the drain)."""
    # max_connections set above what NOFILE holds, so that accept() itself runs out
    p = start(tmp_path, start_backend, start_portico, main_extra="max_connections 1000;",
              wrap=prlimit(NOFILE, NOFILE))
    idle = []
    try:
        for _ in range(NOFILE + 40):
            idle.append(socket.create_connection(("127.0.0.1", p.port), timeout=5))
        deadline = time.monotonic() + 5
        while not log_lines(p, "pausing accepts") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log_lines(p, "pausing accepts"), p.read(p.error_log)
        t0 = time.monotonic()
        p.signal(15)
        rc = p.wait_exit(5)
        took = time.monotonic() - t0
    finally:
        for s in idle:
            s.close()
    assert rc == 0, p.logs()
    assert took < 1.5, "portico took %.2f s to stop (shutdown_timeout 2s)" % took
    log = p.read(p.error_log)
    after = log[log.index("stopping gracefully"):]
    assert "accept() on" not in after, log[-2000:]


# ---------------------------------------------------------- max_connections ---

def test_h1_h1_max_connections_waits_in_backlog(tmp_path, start_backend, start_portico):
    p = start(tmp_path, start_backend, start_portico, main_extra="max_connections 4;")
    held = []
    for _ in range(4):
        c = RawConn("127.0.0.1", p.port)
        c.send(KEEPALIVE_GET)
        assert c.read_response().status == 200   # accepted, and stays open (keep-alive)
        held.append(c)
    # the fifth connects (kernel backlog) but is not accepted: no answer
    fifth = RawConn("127.0.0.1", p.port)
    fifth.send(KEEPALIVE_GET)
    assert silent(fifth, 1.0), "a fifth connection was served with max_connections 4"
    held.pop(0).close()
    fifth.sock.settimeout(5)
    r = fifth.read_response()
    assert r.status == 200 and r.body == b"b1", r
    # four open again (three held + the fifth): the next one waits too
    sixth = RawConn("127.0.0.1", p.port)
    sixth.send(KEEPALIVE_GET)
    assert silent(sixth, 0.5)
    fifth.close()
    sixth.sock.settimeout(5)
    assert sixth.read_response().status == 200
    for c in held + [sixth]:
        c.close()
    assert lib.curl(p.url("/name")).status == 200


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def test_h1_h1_max_connections_counts_h2_takeover_once(tmp_path, start_backend,
                                                       start_portico):
    """An HTTP/1.1 connection that becomes HTTP/2 (prior knowledge) is still one connection:
    the limit neither frees a slot nor takes a second one when it changes hands."""
    p = start(tmp_path, start_backend, start_portico, main_extra="max_connections 2;")
    h2 = RawConn("127.0.0.1", p.port)
    h2.send(H2_PREFACE)
    h2.sock.settimeout(5)
    head = h2._exact(9)
    assert head[3] == 0x04, "expected the server's SETTINGS, got %r" % head
    h1 = RawConn("127.0.0.1", p.port)
    h1.send(KEEPALIVE_GET)
    assert h1.read_response().status == 200
    third = RawConn("127.0.0.1", p.port)
    third.send(KEEPALIVE_GET)
    assert silent(third, 1.0), "served a third connection with max_connections 2"
    h2.close()
    third.sock.settimeout(5)
    assert third.read_response().status == 200
    h1.close()
    third.close()
    for _ in range(3):
        assert lib.curl(p.url("/name")).status == 200


@pytest.mark.parametrize("value,msg", [
    ("0", 'invalid number "0" in "max_connections" (1 to 1048576)'),
    ("lots", 'invalid number "lots" in "max_connections" (1 to 1048576)'),
    ("1048577", 'invalid number "1048577" in "max_connections" (1 to 1048576)'),
])
def test_h1_h1_max_connections_config_errors(tmp_path, value, msg):
    path = tmp_path / "bad.conf"
    path.write_text("workers 1;\nmax_connections %s;\n"
                    "server {\n    listen 127.0.0.1:%d;\n    location / { return 200; }\n}\n"
                    % (value, lib.free_port()))
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc == 1, out
    assert "%s:2:17: %s" % (path, msg) in out, out


def test_h1_h1_max_connections_in_server_is_an_error(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("server {\n    listen 127.0.0.1:%d;\n    max_connections 10;\n"
                    "    location / { return 200; }\n}\n" % lib.free_port())
    rc, out = lib.run_portico(["-t", "-c", str(path)])
    assert rc == 1 and "%s:3:5:" % path in out, out


# ------------------------------------------------------------------- RLIMIT ---

def test_h1_h1_rlimit_nofile_raised_to_hard(tmp_path, start_backend, start_portico):
    p = start(tmp_path, start_backend, start_portico, main_extra="max_connections 1000;",
              wrap=prlimit(256, 4096))
    lines = log_lines(p, "file descriptor limit: ")
    assert len(lines) == 1 and "[notice]" in lines[0] and \
        lines[0].endswith("file descriptor limit: 4096"), lines
    with open("/proc/%d/limits" % p.pid) as f:
        row = [line for line in f if line.startswith("Max open files")][0]
    assert row.split()[3:5] == ["4096", "4096"], row
    # 1 worker x 1000 connections (x2 with their backend connections) fits: no warning
    assert not log_lines(p, "max_connections"), p.read(p.error_log)
    assert lib.curl(p.url("/name")).status == 200


def test_h1_h1_rlimit_capacity_warning(tmp_path, start_backend, start_portico):
    # a configured max_connections that needs more than 256 descriptors: kept, with a warning
    p = start(tmp_path, start_backend, start_portico, main_extra="max_connections 1000;",
              wrap=prlimit(256, 256))
    warn = log_lines(p, "max_connections")
    assert len(warn) == 1 and "[warn]" in warn[0] and "256" in warn[0], \
        p.read(p.error_log)
    assert lib.curl(p.url("/name")).status == 200


def test_h1_h1_default_max_connections_fits_the_limit(tmp_path, start_backend, start_portico):
    # not configured: the default (16384 per worker) is lowered to what 256 descriptors hold,
    # with a notice rather than a warning about a value the user never chose
    p = start(tmp_path, start_backend, start_portico, wrap=prlimit(256, 256))
    lines = log_lines(p, "max_connections")
    # (256 - 1 listener - 64 spare) / 2 descriptors per connection = 95
    assert len(lines) == 1 and "[notice]" in lines[0] and \
        "max_connections 95 per worker" in lines[0], p.read(p.error_log)
    assert not log_lines(p, "[warn]"), p.read(p.error_log)
    assert lib.curl(p.url("/name")).status == 200


# ---------------------------------------------------------------------- TLS ---

def tls_portico(tmp_path, start_backend, start_portico, cert, key):
    """portico with a TLS listener (p.port) and a plain one (p.ports[1]), both to b1."""
    b = start_backend("b1")
    port, plain = lib.free_port(), lib.free_port()
    body = upstream("app", [b.addr]) + tls_server(port, cert, key, server_name="localhost") + \
        plain_server(plain)
    conf = lib.make_conf(tmp_path, body, workers=1, access_log="off")
    return start_portico(conf, [port, plain])


def client_hello():
    """The bytes of a real TLS ClientHello (made with a memory BIO)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


@pytest.mark.hard_timeout(60)
def test_h1_h1_tls_peer_reset_closes_once(tmp_path, start_backend, start_portico, certs):
    p = tls_portico(tmp_path, start_backend, start_portico, certs.localhost,
                    certs.localhost_key)
    hello = client_hello()
    cpu0 = cpu_seconds(p.pid)
    for i in range(150):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        # a partial ClientHello, garbage, or the whole hello, then RST mid-handshake
        s.sendall((hello[:len(hello) // 2], b"\x16\x03\x01\xff\xff" + os.urandom(64),
                   hello)[i % 3])
        if i % 3 == 2:
            time.sleep(0.002)   # let the server answer, so the RST meets a written flight
        reset(s)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for _ in range(20):
        # mid-stream: a finished handshake, half a request, then RST
        raw = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        t = ctx.wrap_socket(raw, server_hostname="localhost")
        t.sendall(b"GET /name HTTP/1.1\r\nHo")
        reset(t)
    time.sleep(1.0)
    cpu = cpu_seconds(p.pid) - cpu0
    assert cpu < 1.0, "portico used %.2f s of CPU for 170 reset connections" % cpu
    r = lib.curl("https://127.0.0.1:%d/name" % p.port, "-k")
    assert r.rc == 0 and r.status == 200 and r.body == b"b1", r
    # one line per connection at most (a connection is closed once)
    assert len(log_lines(p, "TLS handshake with 127.0.0.1 failed")) <= 170


@pytest.mark.hard_timeout(40)
def test_h1_h1_tls_handshake_stalled_writer_does_not_spin(tmp_path, start_backend,
                                                          start_portico, certs):
    """A client that sends its ClientHello plus one more byte and then never reads: the
    server's first flight (a big certificate chain) fills the socket, OpenSSL waits to write,
    and the unread byte keeps the socket readable.  The worker must wait for writability
    instead of retrying the handshake on every read event until tls_handshake_timeout."""
    chain = tmp_path / "big-chain.pem"
    with open(certs.localhost) as f:
        leaf = f.read()
    with open(certs.ca) as f:
        ca = f.read()
    chain.write_text(leaf + ca * 400)   # ~250 KB of certificates in the Certificate message
    p = tls_portico(tmp_path, start_backend, start_portico, str(chain), certs.localhost_key)
    hello = client_hello()
    stalled = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
            s.settimeout(5)
            s.connect(("127.0.0.1", p.port))
            s.sendall(hello + b"\x17")
            stalled.append(s)
        time.sleep(0.3)
        cpu0 = cpu_seconds(p.pid)
        time.sleep(2.0)
        cpu = cpu_seconds(p.pid) - cpu0
        assert cpu < 0.3, "portico used %.2f s of CPU in 2 s on stalled handshakes" % cpu
        # (the chain is over curl's certificate size limit: ask the plain listener)
        r = lib.curl("http://127.0.0.1:%d/name" % p.ports[1])
        assert r.rc == 0 and r.status == 200, r
    finally:
        for s in stalled:
            s.close()
