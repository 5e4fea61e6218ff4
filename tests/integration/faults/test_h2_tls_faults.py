"""HTTP/2 and TLS clients under faults: a backend killed mid-stream while the client
connection's other streams go on; clients reset mid-upload (their backend connections released,
no descriptor left behind); TLS handshakes that stall, truncated and corrupted TLS records, a
renegotiation attempt, each closed cleanly while other clients are served."""

import hashlib
import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import portico_testlib as lib
from faultlib import Steady, fd_count
from h2_attacks import H2Client
from tls_h2_testlib import plain_server, s_client, tls_server, upstream

MiB = 1 << 20


def two_upstreams(certs, start_backend, start_portico_in, doomed="h1", extra=""):
    """portico with upstream `app` (backend b2) for every name, and upstream `doomed` for the
    server name doomed.test: backend.py b1 directly (doomed="h1") or, for doomed="h2c", a
    second portico speaking h2c in front of b1 (so one backend connection carries several
    streams). Both on a TLS and a cleartext listener. Returns (fe, victim, b1, b2, tls, plain)."""
    b1, b2 = start_backend("b1"), start_backend("b2")
    victim = b1
    doomed_addr, doomed_extra = b1.addr, "    keepalive 0;\n"
    if doomed == "h2c":
        be_port = lib.free_port()
        victim = start_portico_in(upstream("app", [b1.addr], read_timeout="30s") +
                                  plain_server(be_port, extra="    client_max_body_size 0;\n"),
                                  [be_port], name="be")
        doomed_addr, doomed_extra = "127.0.0.1:%d" % be_port, "    protocol h2c;\n"
    tls_port, plain_port = lib.free_port(), lib.free_port()
    cert, key = certs.pair("localhost")
    extra = "    client_max_body_size 0;\n" + extra
    doomed_loc = "    location / { proxy_pass doomed; }\n"
    body = upstream("app", [b2.addr], extra="    keepalive 0;\n", read_timeout="30s")
    body += upstream("doomed", [doomed_addr], extra=doomed_extra, read_timeout="30s")
    body += tls_server(tls_port, cert, key, server_name="localhost", extra=extra)
    body += tls_server(tls_port, cert, key, server_name="doomed.test", extra=extra,
                       locations=doomed_loc)
    body += plain_server(plain_port, extra=extra)
    body += plain_server(plain_port, extra=extra, server_name="doomed.test",
                         locations=doomed_loc)
    fe = start_portico_in(body, [tls_port, plain_port], name="fe")
    return fe, victim, b1, b2, tls_port, plain_port


def h2(port, tls, certs):
    if tls:
        return H2Client("127.0.0.1", port, tls=True, cafile=certs.ca,
                        server_hostname="localhost", timeout=30)
    return H2Client("127.0.0.1", port, timeout=30)


def request_to(c, authority, method, path, body=None, end_stream=True):
    hl = [(":method", method), (":scheme", "https" if c.tls else "http"),
          (":authority", authority), (":path", path)]
    sid = c.send_headers(hl, end_stream=body is None and end_stream)
    if body is not None:
        c.send_body(sid, body, end_stream)
    return sid


# ---- a backend killed mid-stream ----------------------------------------------------------

@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("doomed", ["h1", "h2c"], ids=["h1_backend", "h2c_backend"])
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_backend_killed_mid_stream_other_streams_complete(certs, start_backend,
                                                          start_portico_in, doomed, tls):
    fe, victim, b1, b2, tls_port, plain_port = two_upstreams(certs, start_backend,
                                                             start_portico_in, doomed)
    port = tls_port if tls else plain_port
    with h2(port, tls, certs) as c:
        # two streams on the doomed backend (over h2c, one backend connection carries both)
        dead = [request_to(c, "doomed.test", "GET", "/bytes/%d" % (512 * MiB)),
                request_to(c, "doomed.test", "GET", "/slow-body/20000")]
        assert c.wait(lambda: len(c.streams[dead[0]].data) >= MiB and
                      c.streams[dead[1]].status == 200, 20), [c.streams[s] for s in dead]
        # meanwhile on the same connection, streams to a healthy backend: a download, an
        # upload echoed back, and a slow answer still pending when the other backend dies
        body = os.urandom(3 * MiB)
        live = {"big": request_to(c, "localhost", "GET", "/bytes/%d" % (20 * MiB)),
                "slow": request_to(c, "localhost", "GET", "/slow/2000"),
                "echo": request_to(c, "localhost", "POST", "/echo", body=body)}
        c.pump(0.2)
        if isinstance(victim, lib.Backend):
            victim.proc.kill()  # SIGKILL, as a crash
        else:
            victim.kill()
        # the doomed streams end visibly (reset: their heads were sent), not by hanging
        assert c.wait(lambda: all(c.streams[s].finished for s in dead), 20), \
            [c.streams[s] for s in dead]
        for s in dead:
            st = c.streams[s]
            assert st.reset is not None and not st.ended, st
        for name, s in live.items():
            st = c.response(s, timeout=60)
            assert st.ended and st.reset is None and st.status == 200, (name, st)
        assert len(c.streams[live["big"]].data) == 20 * MiB
        assert hashlib.sha256(bytes(c.streams[live["big"]].data)).hexdigest() == \
            c.streams[live["big"]].header("x-body-sha256")
        assert bytes(c.streams[live["echo"]].data) == body
        assert bytes(c.streams[live["slow"]].data) == b"slow"
        # the connection itself is fine; the dead upstream answers 502 on it, the other 200
        st = c.response(request_to(c, "doomed.test", "GET", "/name"), timeout=20)
        assert st.status == 502, st
        st = c.response(request_to(c, "localhost", "GET", "/name"), timeout=20)
        assert st.status == 200 and bytes(st.data) == b"b2", st
        assert c.ping_ok()


# ---- clients reset mid-upload -------------------------------------------------------------

def abort(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.hard_timeout(120)
@pytest.mark.parametrize("proto", ["h2_tls", "h2c", "h1_tls"])
def test_client_reset_mid_upload_releases_everything(certs, start_backend, start_portico_in,
                                                     proto):
    fe, victim, b1, b2, tls_port, plain_port = two_upstreams(certs, start_backend,
                                                             start_portico_in)
    # one request first, so that what portico keeps for good (its chunk freelist, TLS session
    # cache) is counted in the baseline
    with h2(tls_port, True, certs) as c:
        assert c.get("/name").status == 200
    time.sleep(0.2)
    fds_before = fd_count(fe.pid)
    rounds = 30
    for i in range(rounds):
        part = os.urandom(300000)
        if proto == "h1_tls":
            ctx = ssl.create_default_context(cafile=certs.ca)
            raw = socket.create_connection(("127.0.0.1", tls_port))
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                      % (10 * MiB) + part)
        else:
            c = h2(tls_port if proto == "h2_tls" else plain_port, proto == "h2_tls", certs)
            request_to(c, "localhost", "POST", "/upload", body=part, end_stream=False)
            s = c.sock
        assert lib.wait_until(lambda: b2.stats()["open"] >= 1, 10), \
            "round %d: the upload never reached the backend" % i
        abort(s)  # RST in the middle of the body
        assert lib.wait_until(lambda: b2.stats()["open"] == 0, 10), \
            "round %d: the backend connection is still held: %r" % (i, b2.stats())
    assert lib.wait_until(lambda: fd_count(fe.pid) <= fds_before, 10), \
        "portico holds %d descriptors after %d resets, %d before" % (
            fd_count(fe.pid), rounds, fds_before)

    def n499():  # the access log is written once a second: wait for the lines, not a second
        with open(fe.access_log) as f:
            return len(re.findall(r'"POST /upload HTTP/[12]\.[01]" 499 ', f.read()))

    lib.wait_until(lambda: n499() >= rounds, 10)
    with open(fe.access_log) as f:
        print(f.read()[-3000:])
    assert n499() == rounds, n499()
    # and it still serves
    with h2(tls_port, True, certs) as c:
        assert c.get("/name").status == 200


# ---- TLS handshakes and records -----------------------------------------------------------

def client_hello(certs):
    """The first flight of a TLS client (its ClientHello record), made by Python's ssl."""
    ctx = ssl.create_default_context(cafile=certs.ca)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def tls_session(port, certs, alpn=("http/1.1",)):
    """A completed TLS 1.3 handshake over a plain socket through memory BIOs, so that the test
    can send records of its own making: returns (sock, sslobject, outgoing BIO)."""
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.set_alpn_protocols(list(alpn))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out.pending:
                sock.sendall(out.read())
            d = sock.recv(65536)
            assert d, "portico closed during the handshake"
            inc.write(d)
    if out.pending:
        sock.sendall(out.read())
    return sock, obj, out


def closed_within(sock, seconds):
    """Seconds until portico closed the connection (EOF or reset), or None."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < seconds:
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
        if not d:
            return time.monotonic() - t0
    return None


@pytest.mark.hard_timeout(90)
def test_stalled_handshakes_cut_by_the_timeout_others_served(certs, start_backend,
                                                              start_portico_in):
    fe, victim, b1, b2, tls_port, plain_port = two_upstreams(
        certs, start_backend, start_portico_in, extra="    tls_handshake_timeout 2s;\n")
    hello = client_hello(certs)
    assert hello[0] == 0x16 and len(hello) > 100, hello[:10]
    steady = Steady(tls_port, "h2", tls=True, cafile=certs.ca)
    steady.start()
    n = 200
    socks = []
    t0 = time.monotonic()
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", tls_port))
        # half a ClientHello, or only the record header, or nothing at all
        s.sendall(hello[:[len(hello) // 2, 5, 0][i % 3]])
        socks.append(s)
    ends = []
    for s in socks:
        left = 30 - (time.monotonic() - t0)
        w = closed_within(s, max(0.1, left))
        ends.append(None if w is None else time.monotonic() - t0)
        s.close()
    steady.stop()
    assert all(e is not None for e in ends), "%d stalled handshakes never cut" % (
        sum(e is None for e in ends))
    assert min(ends) >= 2 - 0.25, "cut before tls_handshake_timeout: %.2f s" % min(ends)
    assert max(ends) <= 2 + 20, "cut %.2f s after the start" % max(ends)
    assert not steady.failures and steady.ok >= 3, (steady.ok, steady.failures[:3])
    with open(fe.error_log) as f:
        assert len(re.findall(r"TLS handshake with 127\.0\.0\.1 timed out", f.read())) == n


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("how", ["then_eof", "then_stall"])
def test_truncated_record_in_the_handshake(certs, start_backend, start_portico_in, how):
    """A ClientHello record that announces more bytes than come: with an EOF portico closes at
    once; stalled, at tls_handshake_timeout. Nothing else is affected."""
    fe, victim, b1, b2, tls_port, plain_port = two_upstreams(
        certs, start_backend, start_portico_in, extra="    tls_handshake_timeout 3s;\n")
    hello = client_hello(certs)
    s = socket.create_connection(("127.0.0.1", tls_port))
    s.sendall(hello[:-20])
    if how == "then_eof":
        s.shutdown(socket.SHUT_WR)
        took = closed_within(s, 10)
        assert took is not None and took < 3, took  # not left to the handshake timeout
    else:
        took = closed_within(s, 15)
        assert took is not None and took >= 3 - 0.25, took
    s.close()
    with h2(tls_port, True, certs) as c:
        assert c.get("/name").status == 200


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("how", ["then_eof", "then_stall", "corrupted"])
def test_bad_record_after_the_handshake(certs, start_backend, start_portico_in, how):
    """After a complete handshake: a request record cut short then EOF (closed at once), cut
    short then nothing (closed by client_header_timeout), or with a flipped byte (bad record
    MAC: closed at once, logged as a TLS error). Other clients are served meanwhile."""
    fe, victim, b1, b2, tls_port, plain_port = two_upstreams(
        certs, start_backend, start_portico_in, extra="    client_header_timeout 3s;\n")
    sock, obj, out = tls_session(tls_port, certs)
    obj.write(b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n")
    rec = out.read()
    assert rec[0] == 0x17, rec[:5]  # application data
    if how == "corrupted":
        rec = rec[:-3] + bytes([rec[-3] ^ 0x40]) + rec[-2:]
        sock.sendall(rec)
        took = closed_within(sock, 10)
        assert took is not None and took < 3, took
    elif how == "then_eof":
        sock.sendall(rec[:len(rec) // 2])
        sock.shutdown(socket.SHUT_WR)
        took = closed_within(sock, 10)
        assert took is not None and took < 3, took
    else:
        sock.sendall(rec[:len(rec) // 2])
        took = closed_within(sock, 15)
        assert took is not None and took >= 3 - 0.25, took
    sock.close()
    with h2(tls_port, True, certs) as c:
        assert c.get("/name").status == 200
    if how == "corrupted":
        with open(fe.error_log) as f:
            assert re.search(r"client 127\.0\.0\.1: TLS error, closing: .*bad record mac",
                             f.read()), "no log line for the corrupted record"


@pytest.mark.hard_timeout(40)
def test_tls12_renegotiation_refused_connection_closed(certs, start_backend, start_portico_in):
    """A TLS 1.2 client that asks to renegotiate (s_client's `R`) gets the no_renegotiation
    alert and the connection ends; the worker goes on serving."""
    fe, victim, b1, b2, tls_port, plain_port = two_upstreams(certs, start_backend,
                                                             start_portico_in)
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tls_port,
                          "-tls1_2", "-servername", "localhost", "-CAfile", certs.ca],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    out = bytearray()

    def reader():
        while True:
            d = os.read(p.stdout.fileno(), 65536)
            if not d:
                return
            out.extend(d)
    threading.Thread(target=reader, daemon=True).start()
    try:
        # a request first: the session works; then `R`: s_client renegotiates
        p.stdin.write(b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n")
        p.stdin.flush()
        assert lib.wait_until(lambda: b"\r\n\r\nb2" in out, 15), bytes(out[-2000:])
        p.stdin.write(b"R\n")
        p.stdin.flush()
        p.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("s_client still connected 15 s after asking to renegotiate")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lib.wait_until(lambda: b"no renegotiation" in out, 2)
    text = out.decode("utf-8", "replace")
    assert "RENEGOTIATING" in text and "no renegotiation" in text, text[-2000:]
    assert p.returncode != 0, text[-2000:]
    # the worker goes on
    rc, text = s_client(tls_port, ["-tls1_2", "-servername", "localhost", "-CAfile", certs.ca,
                                   "-ign_eof"],
                        stdin=b"GET /name HTTP/1.1\r\nHost: localhost\r\n"
                              b"Connection: close\r\n\r\n")
    assert "HTTP/1.1 200" in text, text[-1500:]
