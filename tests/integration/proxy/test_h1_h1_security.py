"""Security regressions of the HTTP/1.1 frontend and client (each failed before its fix):
- Content-Length >= 2^63 turned negative: the body went to the backend unframed and was read
  there as a second request that portico never routed (a `return 403` location bypassed);
- every number from the wire goes through one checked parser: the boundaries 2^31, 2^32,
  2^63-1, 2^63, 2^64-1, 2^64, leading zeros, signs and spaces, in request and response
  lengths and chunk sizes;
- valid chunk extensions (RFC 9112 7.1.1) were a 400 (llhttp 8.1 rejects "5;a=b;c=d"); bare-LF
  and malformed ones stay rejected, on requests and on backend responses;
- `CONNECT /x` was forwarded to the backend, then the connection stalled;
- a request followed at once by the client's FIN was executed by the backend but never
  answered (499);
- `GARBAGE\\x01` was a 501 (it is not a request line at all: 400);
- a backend whose invalid chunk size came in the same read as its head gave the client an
  empty reply (access log "200 0"): nothing had been sent, so it is a 502;
- a backend Content-Length >= 2^63 was re-sent as chunked: it is a 502 like other invalid
  lengths;
- Host with userinfo or a bad port was routed as a host name.
Every test also checks that portico is still serving afterwards."""

import re
import socket
import time

import pytest

import portico_testlib as lib
from portico_testlib import RawConn
from tls_h2_testlib import RecordingBackend, wait_log


def send_raw(port, data, shut=False, timeout=5.0):
    """Sends bytes on a new connection, optionally half-closes, returns all bytes read until
    the server closes (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data if isinstance(data, bytes) else data.encode("latin-1"))
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                return out, True
            out += d
        return out, False
    finally:
        s.close()


def status_of(raw):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    return int(m.group(1)) if m else None


def alive(port):
    r = lib.curl("http://127.0.0.1:%d/" % port)
    assert r.status == 200, "portico stopped serving: %r" % r


@pytest.fixture
def gw(tmp_path, start_backend, start_portico):
    """portico with `location /admin { return 403; }` in front of backend b1 (test backend)."""
    b = start_backend("b1")
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream app { server %s; connect_timeout 1s; read_timeout 5s; }
server {
    listen 127.0.0.1:%d;
    location /admin { return 403 "forbidden\\n"; }
    location / { proxy_pass app; }
}
""" % (b.addr, port))
    p = start_portico(conf, [port])
    p.backend = b
    return p


@pytest.fixture
def rec(tmp_path, start_portico):
    """portico in front of a RecordingBackend (rec.backend) answering "ok"."""
    started = []

    def _make(response=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", extra=""):
        b = RecordingBackend(response=response)
        started.append(b)
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, """
upstream app { server %s; connect_timeout 1s; read_timeout 3s; }
server {
    listen 127.0.0.1:%d;
    %s
    location / { proxy_pass app; }
}
""" % (b.addr, port, extra))
        p = start_portico(conf, [port])
        p.backend = b
        return p

    yield _make
    for b in started:
        b.stop()


# ---- Content-Length: the smuggling class -------------------------------------------------

def test_h1_h1_content_length_2_63_does_not_smuggle(gw):
    smuggled = "GET /admin/users HTTP/1.1\r\nHost: a\r\n\r\n"
    out, _ = send_raw(gw.port, "POST /public HTTP/1.1\r\nHost: a\r\n"
                      "Content-Length: 9223372036854775808\r\n\r\n" + smuggled)
    assert status_of(out) == 400, out
    assert gw.backend.stats()["requests"] == 0, "the request reached the backend"
    assert "/admin" not in gw.read(gw.access_log)
    assert wait_log(gw.error_log, r"Content-Length over 2\^63-1")
    alive(gw.port)


@pytest.mark.parametrize("value,status", [
    ("2147483648", 413),                 # 2^31
    ("4294967296", 413),                 # 2^32
    ("9223372036854775807", 413),        # 2^63-1: valid, over client_max_body_size
    ("9223372036854775808", 400),        # 2^63
    ("18446744073709551615", 400),       # 2^64-1
    ("18446744073709551616", 400),       # 2^64
    ("99999999999999999999999", 400),
    ("+5", 400),
    ("-5", 400),
    ("5 5", 400),
    ("5,5", 400),
    ("0x5", 400),
    ("", 400),
])
def test_h1_h1_content_length_boundaries(gw, value, status):
    out, _ = send_raw(gw.port, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n"
                      "hello" % value)
    assert status_of(out) == status, out
    assert gw.backend.stats()["requests"] == 0
    alive(gw.port)


def test_h1_h1_content_length_leading_zeros(gw):
    with RawConn("127.0.0.1", gw.port) as c:
        c.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 000000000000000000000005\r\n"
               "\r\nhello")
        r = c.read_response("POST")
    assert r.status == 200 and r.body == b"hello", r
    assert r.header("X-Body-Length") == "5"


def test_h1_h1_response_content_length_2_63_is_502(rec):
    for value in ("9223372036854775808", "18446744073709551615"):
        p = rec(response=("HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\nabc" % value)
                .encode())
        r = lib.curl(p.url("/x"))
        assert r.status == 502, r
        assert wait_log(p.error_log, r"invalid response: invalid Content-Length")


def test_h1_h1_response_content_length_leading_zeros(rec):
    p = rec(response=b"HTTP/1.1 200 OK\r\nContent-Length: 0000000002\r\n\r\nok")
    r = lib.curl(p.url("/x"))
    assert r.status == 200 and r.body == b"ok", r


# ---- chunk sizes and extensions ----------------------------------------------------------

def chunked_post(port, chunk_line, data=b"hello", last=b"0\r\n\r\n"):
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" \
           b"Transfer-Encoding: chunked\r\n\r\n"
    out, _ = send_raw(port, head + chunk_line + b"\r\n" + data + b"\r\n" + last)
    return out


@pytest.mark.parametrize("line", [
    b"5;a=b;c=d", b"5;name=\"quoted str\"", b"5 ;a=b", b"5; a = b", b"5;a", b"5;a;b",
    b"5;a=\"x\\\"y\";b=c", b"0000000000000000000005",
])
def test_h1_h1_chunk_extensions_accepted(gw, line):
    out = chunked_post(gw.port, line, last=b"0;end=yes\r\n\r\n")
    assert status_of(out) == 200, out
    assert out.endswith(b"hello"), out


@pytest.mark.parametrize("line", [
    b"5;a=", b"5;a b", b"5;", b"5;a=\"open", b"5 ", b"5;a=b ", b"-5", b"+5", b"0x5",
    b"8000000000000000",         # 2^63
    b"ffffffffffffffff",         # 2^64-1
    b"10000000000000000",        # 2^64
])
def test_h1_h1_chunk_line_rejected(gw, line):
    out = chunked_post(gw.port, line)
    assert status_of(out) == 400, out
    alive(gw.port)


def test_h1_h1_chunk_bare_lf_and_missing_crlf_rejected(gw):
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    for body in (b"5\nhello\r\n0\r\n\r\n", b"5;a=b\nhello\r\n0\r\n\r\n",
                 b"5\r\nhelloXX0\r\n\r\n", b"5\r\nhello\r\n0;a=b\n\r\n"):
        out, _ = send_raw(gw.port, head + body)
        assert status_of(out) == 400, (body, out)
    alive(gw.port)


def test_h1_h1_chunk_extensions_dropped_when_forwarded(rec):
    p = rec()
    out, _ = send_raw(p.port, b"POST /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n5;a=b;c=d\r\nhello\r\n0;z=1\r\n\r\n")
    assert status_of(out) == 200, out
    (req,) = p.backend.requests
    assert b"5\r\nhello\r\n0\r\n\r\n" in req, req
    assert b"a=b" not in req and b"z=1" not in req


def test_h1_h1_chunk_line_split_across_reads(gw):
    # the guard waits for the whole chunk-size line, whatever the TCP segmentation
    with RawConn("127.0.0.1", gw.port) as c:
        c.send("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a")
        time.sleep(0.1)
        c.send("=b;c")
        time.sleep(0.1)
        c.send("=d\r\nhel")
        time.sleep(0.1)
        c.send("lo\r")
        time.sleep(0.1)
        c.send("\n0\r\n\r\n")
        r = c.read_response("POST")
    assert r.status == 200 and r.body == b"hello", r


def test_h1_h1_response_chunk_extensions_accepted(rec):
    p = rec(response=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"2;a=b;c=d\r\nok\r\n3;q=\"x y\"\r\n!!!\r\n0;e=f\r\n\r\n")
    r = lib.curl(p.url("/x"))
    assert r.status == 200 and r.body == b"ok!!!", r


@pytest.mark.parametrize("body", [
    b"zz\r\nok\r\n0\r\n\r\n",                 # invalid chunk size
    b"2\r\nokXX0\r\n\r\n",                    # no CRLF after chunk data
    b"2;a=\r\nok\r\n0\r\n\r\n",               # malformed extension
    b"8000000000000000\r\nok\r\n",            # 2^63
    b"2\nok\r\n0\r\n\r\n",                    # bare LF
])
def test_h1_h1_bad_chunk_in_same_read_as_head_is_502(rec, body):
    # nothing had reached the client: it gets a clean 502, not an empty or cut reply
    p = rec(response=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    r = lib.curl(p.url("/x"))
    assert r.status == 502, r
    assert r.body.startswith(b"502"), r
    assert wait_log(p.access_log, r'"GET /x HTTP/1.1" 502 ')
    assert "200 0" not in p.read(p.access_log)


# ---- methods and request lines -----------------------------------------------------------

@pytest.mark.parametrize("line,status", [
    ("GARBAGE\x01\r\n\r\n", 400),
    ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),   # a TLS ClientHello
    ("FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("get / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("QUERY / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    (" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),               # no token before the space
])
def test_h1_h1_bad_request_lines(gw, line, status):
    out, _ = send_raw(gw.port, line)
    assert status_of(out) == status, out
    alive(gw.port)


@pytest.mark.parametrize("target", ["/x", "a.example:443", "127.0.0.1:1"])
def test_h1_h1_connect_is_405(gw, target):
    out, closed = send_raw(gw.port, "CONNECT %s HTTP/1.1\r\nHost: a\r\n\r\ntunnel bytes"
                           % target)
    assert status_of(out) == 405, out
    assert re.search(rb"\r\nAllow: GET, HEAD, POST", out), out
    assert closed, "the connection stayed open after a refused CONNECT"
    assert gw.backend.stats()["requests"] == 0
    alive(gw.port)


def test_h1_h1_invalid_preface_is_400(gw):
    out, closed = send_raw(gw.port, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    assert status_of(out) == 400 and closed, out
    alive(gw.port)


@pytest.mark.parametrize("host", ["user@a", "user:pw@a", "a:99999", "a:80x", "a b", ":80",
                                  "a/b"])
def test_h1_h1_invalid_host_is_400(gw, host):
    out, _ = send_raw(gw.port, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
    assert status_of(out) == 400, (host, out)
    assert gw.backend.stats()["requests"] == 0


@pytest.mark.parametrize("host", ["a", "a:", "a:8080", "[::1]:8080", "xn--bcher-kva.example",
                                  "a_b.example"])
def test_h1_h1_valid_host_forwarded(gw, host):
    out, _ = send_raw(gw.port, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host)
    assert status_of(out) == 200, (host, out)


# ---- half-close --------------------------------------------------------------------------

def test_h1_h1_half_close_after_request_gets_response(gw):
    # sendall(request); shutdown(SHUT_WR): the backend runs it and the client gets the answer
    for i in range(3):
        out, closed = send_raw(gw.port, "POST /slow/200 HTTP/1.1\r\nHost: a\r\n"
                               "Content-Length: 5\r\n\r\nhello", shut=True)
        assert status_of(out) == 200 and out.endswith(b"slow"), out
        assert closed
    assert gw.backend.stats()["requests"] == 3
    assert " 499 " not in gw.read(gw.access_log)


def test_h1_h1_half_close_after_pipelined_requests(gw):
    out, closed = send_raw(gw.port, "GET /slow/100 HTTP/1.1\r\nHost: a\r\n\r\n"
                           "GET /name HTTP/1.1\r\nHost: a\r\n\r\n", shut=True)
    assert out.count(b"HTTP/1.1 200 ") == 2, out
    assert closed


def test_h1_h1_half_close_mid_request_is_dropped(gw):
    # a request that can never complete: closed, nothing reaches the backend's handler
    out, closed = send_raw(gw.port, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
                           "\r\nhello", shut=True)
    assert out == b"" and closed
    out, closed = send_raw(gw.port, "GET / HTTP/1.1\r\nHost:", shut=True)
    assert out == b"" and closed
    alive(gw.port)
