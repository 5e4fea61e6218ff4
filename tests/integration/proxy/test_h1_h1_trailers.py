"""HTTP/1.1 trailers in both directions (docs/http1.md, Request framing / Response framing):
a chunked request's trailers reach an HTTP/1.1 backend after portico's own last chunk; a
chunked response's trailers reach an HTTP/1.1 client when portico re-chunks it, and are
dropped where the client's framing has no place for them (Content-Length, HTTP/1.0)."""

import pytest

import portico_testlib as lib
from portico_testlib import RawConn
from tls_h2_testlib import RecordingBackend

CHUNKED_WITH_TRAILERS = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         b"Trailer: X-Checksum\r\n\r\n"
                         b"5\r\nhello\r\n6\r\n world\r\n0\r\n"
                         b"X-Checksum: sha-1234\r\nX-Other: two\r\n\r\n")


@pytest.fixture
def recorded(tmp_path, start_portico):
    made = []

    def _make(response=None):
        b = RecordingBackend(response) if response is not None else RecordingBackend()
        made.append(b)
        port = lib.free_port()
        p = start_portico(lib.make_conf(tmp_path, lib.proxy_conf(port, [b.addr])), [port])
        return p, b

    yield _make
    for b in made:
        b.stop()


def test_h1_h1_request_trailers_forwarded(recorded):
    p, b = recorded()
    with RawConn("127.0.0.1", p.port) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
               b"Trailer: X-Checksum\r\n\r\n"
               b"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\nX-Second: 2\r\n\r\n")
        r = c.read_response()
    assert (r.status, r.body) == (200, b"ok"), r
    assert len(b.requests) == 1
    raw = b.requests[0]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\ntransfer-encoding: chunked" in head.lower(), raw
    # portico's own chunking, then the client's trailers, in order, then the final CRLF
    assert body.endswith(b"0\r\nX-Checksum: abc123\r\nX-Second: 2\r\n\r\n"), raw
    assert b"hello" in body


def test_h1_h1_response_trailers_rechunked_to_http11(recorded):
    p, _ = recorded(CHUNKED_WITH_TRAILERS)
    with RawConn("127.0.0.1", p.port) as c:
        c.send(b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = c.read_all(5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    assert b"transfer-encoding: chunked" in head.lower(), head
    # the trailers follow portico's last chunk, exactly
    assert body.endswith(b"0\r\nX-Checksum: sha-1234\r\nX-Other: two\r\n\r\n"), body
    # and the payload is intact
    payload = bytearray()
    rest = body
    while True:
        line, _, rest = rest.partition(b"\r\n")
        n = int(line, 16)
        if n == 0:
            break
        payload += rest[:n]
        rest = rest[n + 2:]
    assert bytes(payload) == b"hello world"


def test_h1_h1_response_trailers_dropped_for_http10(recorded):
    p, _ = recorded(CHUNKED_WITH_TRAILERS)
    with RawConn("127.0.0.1", p.port) as c:
        c.send(b"GET /t HTTP/1.0\r\nHost: t\r\n\r\n")
        data = c.read_all(5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    assert b"transfer-encoding" not in head.lower()
    assert body == b"hello world", data       # close-delimited, no trailer bytes


FORBIDDEN = lib.FORBIDDEN_TRAILER_FIELDS


def test_h1_h1_request_trailers_drop_forbidden_fields(recorded):
    p, b = recorded()
    # llhttp itself refuses a Transfer-Encoding in a request's trailers (400, nothing forwarded)
    with RawConn("127.0.0.1", p.port) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n")
        r = c.read_response()
    assert r.status == 400 and b.requests == [], r
    rest = FORBIDDEN.replace(b"Transfer-Encoding: chunked\r\n", b"")
    with RawConn("127.0.0.1", p.port) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n" + rest +
               b"X-Second: 2\r\n\r\n")
        r = c.read_response()
    assert (r.status, r.body) == (200, b"ok"), r
    body = b.requests[0].partition(b"\r\n\r\n")[2]
    assert body.endswith(b"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\nX-Second: 2\r\n\r\n"), body


def test_h1_h1_response_trailers_drop_forbidden_fields(recorded):
    p, _ = recorded(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\nX-Checksum: sha-1234\r\n" + FORBIDDEN +
                    b"X-Other: two\r\n\r\n")
    with RawConn("127.0.0.1", p.port) as c:
        c.send(b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = c.read_all(5)
    assert data.endswith(b"5\r\nhello\r\n0\r\nX-Checksum: sha-1234\r\nX-Other: two\r\n\r\n"), \
        data
