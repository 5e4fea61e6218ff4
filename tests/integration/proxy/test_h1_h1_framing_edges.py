"""Framing promises of docs/http1.md checked on the exact bytes: Connection: keep-alive to an
HTTP/1.0 keep-alive client; no Content-Length on a 204 even when the backend sent one; a 101
from the backend is a 502; `keepalive 0` upstreams get Connection: close; client_max_body_size
is exact (the limit passes, one byte more is 413)."""

import json

import pytest

import portico_testlib as lib
from portico_testlib import RawConn
from tls_h2_testlib import RecordingBackend


@pytest.fixture
def canned(tmp_path, start_portico):
    made = []

    def _make(response):
        b = RecordingBackend(response)
        made.append(b)
        port = lib.free_port()
        return start_portico(lib.make_conf(tmp_path, lib.proxy_conf(port, [b.addr])), [port]), b

    yield _make
    for b in made:
        b.stop()


def test_h1_h1_http10_keepalive_said_and_kept(proxy):
    with RawConn("127.0.0.1", proxy.port) as c:
        for _ in range(2):
            c.send(b"GET /name HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert (r.status, r.body) == (200, b"b1"), r
            assert (r.header("Connection") or "").lower() == "keep-alive", r
    assert proxy.backend.stats()["requests"] == 2


def test_h1_h1_204_never_has_content_length(canned):
    p, _ = canned(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n")
    with RawConn("127.0.0.1", p.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 204 and r.header("X-A") == "1", r
        assert not r.has("Content-Length") and not r.has("Transfer-Encoding"), r


def test_h1_h1_backend_101_is_502(canned):
    p, _ = canned(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\n"
                  b"Connection: upgrade\r\n\r\n")
    with RawConn("127.0.0.1", p.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = c.read_all(5)
    assert data.startswith(b"HTTP/1.1 502 "), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1, data      # no 101 or other interim forwarded


def test_h1_h1_upstream_keepalive_0_sends_connection_close(make_proxy):
    p = make_proxy(upstream_extra="    keepalive 0;\n")
    st, _, body = lib.get(p.port, "/headers")
    assert st == 200
    seen = [(n.lower(), v) for n, v in json.loads(body)["headers"]]
    assert ("connection", "close") in seen, seen


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
def test_h1_h1_client_max_body_size_exact(make_proxy, chunked):
    p = make_proxy(server_extra="    client_max_body_size 1k;\n")

    def post(n):
        body = b"x" * n
        if chunked:
            head = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n" \
                   b"Connection: close\r\n\r\n"
            wire = b"%x\r\n%s\r\n0\r\n\r\n" % (n, body)
        else:
            head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" \
                   b"Connection: close\r\n\r\n" % n
            wire = body
        with RawConn("127.0.0.1", p.port) as c:
            c.send(head + wire)
            return c.read_response("POST")

    r = post(1024)
    assert r.status == 200 and json.loads(r.body)["length"] == 1024, r
    r = post(1025)
    assert r.status == 413, r
    if not chunked:      # refused on its Content-Length, before anything was forwarded
        assert p.backend.stats()["requests"] == 1
