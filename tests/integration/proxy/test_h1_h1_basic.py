"""HTTP/1.1 client -> portico -> HTTP/1.1 backend: basic exchanges."""

import re

import pytest

import portico_testlib as lib
from portico_testlib import RawConn


def test_h1_h1_get(proxy):
    r = lib.curl(proxy.url("/name"))
    assert r.rc == 0, r
    assert r.status == 200, r
    assert r.body == b"b1"
    assert r.header("X-Backend") == "b1"
    assert r.header("Content-Length") == "2"


def test_h1_h1_keepalive_client(proxy):
    # curl reuses its connection for the second URL: num_connects 1 then 0.
    import subprocess
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-o", "/dev/null",
                        "-w", "%{http_code} %{num_connects}\n",
                        proxy.url("/name"), proxy.url("/name")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split("\n")[:2] == ["200 1", "200 0"], p.stdout


def test_h1_h1_keepalive_raw_many(proxy):
    with RawConn("127.0.0.1", proxy.port) as c:
        for i in range(20):
            c.send("GET /name?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
            r = c.read_response()
            assert r.status == 200 and r.body == b"b1"
            assert (r.header("Connection") or "").lower() != "close"


def test_h1_h1_pipelining_in_order(proxy):
    # Three requests in one write; the first is slow so that a proxy answering
    # out of order (or in parallel without ordering) is caught.
    body = b"hello pipelined world"
    reqs = ("GET /slow/300 HTTP/1.1\r\nHost: t\r\n\r\n"
            "GET /bytes/1000 HTTP/1.1\r\nHost: t\r\n\r\n"
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
            ).encode() + body
    with RawConn("127.0.0.1", proxy.port, timeout=10) as c:
        c.send(reqs)
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
    assert (r1.status, r1.body) == (200, b"slow")
    assert r2.status == 200 and len(r2.body) == 1000
    assert lib.pattern_sha256(1000) == r2.header("X-Body-Sha256")
    assert r3.status == 200 and r3.body == body


def test_h1_h1_pipelining_many(proxy):
    n = 50
    reqs = "".join("GET /name?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(n))
    reqs += "GET /headers?last HTTP/1.1\r\nHost: t\r\n\r\n"
    with RawConn("127.0.0.1", proxy.port, timeout=10) as c:
        c.send(reqs)
        for i in range(n):
            r = c.read_response()
            assert r.status == 200 and r.body == b"b1", (i, r)
        last = c.read_response()
    assert last.status == 200
    import json
    assert json.loads(last.body)["target"] == "/headers?last"


def test_h1_h1_head(proxy):
    r = lib.curl(proxy.url("/bytes/1000"), "-I")
    assert r.status == 200, r
    assert r.header("Content-Length") == "1000"
    # On a raw keep-alive connection a HEAD answer has no body: the next
    # response must parse right after its head.
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("HEAD /bytes/1000 HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        r1 = c.read_response("HEAD")
        r2 = c.read_response()
        assert r1.status == 200 and r1.header("Content-Length") == "1000"
        assert r2.status == 200 and r2.body == b"b1"
        c.send("HEAD /chunked/5000 HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        r3 = c.read_response("HEAD")
        r4 = c.read_response()
        assert r3.status == 200
        assert r4.status == 200 and r4.body == b"b1"


@pytest.mark.parametrize("code", [204, 304])
def test_h1_h1_no_body_status(proxy, code):
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("GET /status/%d HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /name HTTP/1.1\r\nHost: t\r\n\r\n" % code)
        r1 = c.read_response()
        assert r1.status == code
        assert r1.header("Transfer-Encoding") is None, r1
        # no Content-Length on a 204 (RFC 9110 section 8.6), none added to a 304
        assert r1.header("Content-Length") is None, r1
        r2 = c.read_response()
        # had portico sent a body (e.g. chunked "0\r\n\r\n") after the 204/304,
        # this would not parse as the next response
        assert r2.status == 200 and r2.body == b"b1", r2
        assert not c.buf


def test_h1_h1_other_status_passthrough(proxy):
    for code in (201, 404, 500, 503):
        r = lib.curl(proxy.url("/status/%d" % code))
        assert r.status == code, r
        assert r.body == b"status %d\n" % code
        assert r.header("X-Backend") == "b1"


def test_h1_h1_early_hints_forwarded(proxy):
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("GET /early-hints HTTP/1.1\r\nHost: t\r\n\r\n")
        r1 = c.read_response(allow_interim=True)
        assert r1.status == 103, r1
        assert "style.css" in (r1.header("Link") or ""), r1
        assert not r1.has("Content-Length") and not r1.has("Transfer-Encoding"), r1
        assert (r1.header("Connection") or "").lower() != "close", r1
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"after hints"
        assert r2.header("X-Backend") == "b1", r2
        # the exchange ended cleanly: the connection is still usable
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == b"b1"
    r = lib.curl(proxy.url("/early-hints"))
    assert r.status == 200 and [s for s, _ in r.interim] == [103], r


def test_h1_h1_early_hints_not_to_http10(proxy):
    # 1xx must not be sent to an HTTP/1.0 client
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("GET /early-hints HTTP/1.0\r\nHost: t\r\n\r\n")
        data = c.read_all(5)
    # portico's own version in the status line (RFC 9110 section 6.2), and no 103 before it
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b" 103 " not in data


def test_h1_h1_http10_client_close_delimited(proxy):
    # A chunked (and a close-delimited) backend body goes to an HTTP/1.0 client
    # close-delimited: no chunked framing, connection closed at the end.
    n = 300000
    for kind in ("chunked", "close"):
        rc, status, sha, length, hdrs, err = lib.curl_sha256(proxy.url("/%s/%d" % (kind, n)), "-0")
        assert rc == 0, err
        assert status == 200
        assert length == n and sha == lib.pattern_sha256(n)
        assert "transfer-encoding" not in hdrs, hdrs
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("GET /chunked/%d HTTP/1.0\r\nHost: t\r\n\r\n" % n)
        data = c.read_all(10)
    head, _, body = data.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 200", head), head
    assert b"chunked" not in head.lower(), head
    assert len(body) == n and body == b"".join(lib.pattern_iter(n))


def test_h1_h1_http10_client_closed_after_response(proxy):
    # An HTTP/1.0 client without keep-alive gets its answer and a close.
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("GET /bytes/100 HTTP/1.0\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and len(r.body) == 100
        assert c.is_closed(3)


def test_h1_h1_close_delimited_to_http11_chunked(proxy):
    n = 200000
    with RawConn("127.0.0.1", proxy.port, timeout=10) as c:
        c.send("GET /close/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        r = c.read_response()
        assert r.status == 200
        assert (r.header("Transfer-Encoding") or "").lower() == "chunked", r
        assert r.body == b"".join(lib.pattern_iter(n))
        # still keep-alive afterwards
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == b"b1"


def test_h1_h1_connection_close_from_client(proxy):
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("GET /name HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"b1"
        assert (r.header("Connection") or "").lower() == "close"
        assert c.is_closed(3)


def test_h1_h1_unknown_method_501(proxy):
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("FROB /name HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
    assert r.status == 501, r
    assert proxy.backend.stats()["requests"] == 0


def test_h1_h1_expect_unknown_417(proxy):
    with RawConn("127.0.0.1", proxy.port) as c:
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: something-else\r\n"
               "Content-Length: 3\r\n\r\nabc")
        r = c.read_response()
    assert r.status == 417, r


def test_h1_h1_expect_100_continue(proxy):
    body = b"x" * 5000
    with RawConn("127.0.0.1", proxy.port, timeout=3) as c:
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               "Content-Length: %d\r\n\r\n" % len(body))
        interim = c.read_response(allow_interim=True)  # before any body byte was sent
        assert interim.status == 100, interim
        assert interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n"), interim.raw_head
        c.send(body)
        r = c.read_response()
    assert r.status == 200, r
    assert r.body == body
    assert "expect" not in (r.header("X-Seen-Hop") or ""), "Expect reached the backend"


def test_h1_h1_expect_100_continue_curl(proxy, tmp_path):
    f = tmp_path / "small.bin"
    sha = lib.write_pattern_file(str(f), 500000)
    r = lib.curl(proxy.url("/upload"), "--data-binary", "@%s" % f,
                 "-H", "Expect: 100-continue", "--expect100-timeout", "10")
    assert r.status == 200, r
    assert [s for s, _ in r.interim] == [100], r
    assert r.json()["sha256"] == sha


def test_h1_h1_expect_413_before_body(proxy):
    # client_max_body_size is 1m by default: a 2 MiB body announced with
    # Expect: 100-continue is refused with 413 instead of 100, body never sent.
    with RawConn("127.0.0.1", proxy.port, timeout=3) as c:
        c.send("POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               "Content-Length: %d\r\n\r\n" % (2 * lib.MiB))
        r = c.read_response(allow_interim=True)
    assert r.status == 413, r
    assert proxy.backend.stats()["requests"] == 0


def test_h1_h1_host_preserved(proxy):
    r = lib.curl(proxy.url("/headers"), "-H", "Host: Example.Test:8443")
    assert r.status == 200
    hs = [v for n, v in r.json()["headers"] if n.lower() == "host"]
    assert hs == ["Example.Test:8443"], hs


def test_h1_h1_request_line_forwarded(proxy):
    r = lib.curl(proxy.url("/headers?a=1&b=%20x"), "-X", "DELETE")
    assert r.status == 200
    j = r.json()
    assert j["method"] == "DELETE"
    assert j["target"] == "/headers?a=1&b=%20x"
    assert j["version"] == "HTTP/1.1"
