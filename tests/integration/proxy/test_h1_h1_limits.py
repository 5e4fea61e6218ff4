"""Client limits and timeouts: 431, 414, 413, 408, keep-alive idle and count."""

import time

import pytest

import portico_testlib as lib
from portico_testlib import RawConn

LIMITS = """    client_max_header_size 4k;
    client_max_headers 10;
    client_max_uri_size 1k;
    client_max_body_size 1k;
"""


@pytest.fixture
def limited(make_proxy):
    return make_proxy(server_extra=LIMITS)


def assert_error_close(port, data, status, backend=None):
    with RawConn("127.0.0.1", port, timeout=5) as c:
        c.send(data)
        r = c.read_response()
        assert r.status == status, r
        closed = c.is_closed(3)
    if backend is not None:
        assert backend.stats()["requests"] == 0, "refused request reached the backend"
    return r, closed


def test_h1_h1_431_header_too_large(limited):
    data = "GET /name HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n" % ("a" * 6000)
    r, closed = assert_error_close(limited.port, data, 431, limited.backend)
    assert closed
    assert lib.get(limited.port, "/name")[0] == 200


def test_h1_h1_431_head_too_large_many_small_headers(limited):
    # 9 headers of 600 bytes: under the count limit, over 4k in total
    hs = "".join("X-H%d: %s\r\n" % (i, "b" * 600) for i in range(8))
    data = "GET /name HTTP/1.1\r\nHost: t\r\n%s\r\n" % hs
    r, closed = assert_error_close(limited.port, data, 431, limited.backend)
    assert closed


def test_h1_h1_431_too_many_headers(limited):
    hs = "".join("X-H%d: v\r\n" % i for i in range(20))
    data = "GET /name HTTP/1.1\r\nHost: t\r\n%s\r\n" % hs
    assert_error_close(limited.port, data, 431, limited.backend)


def test_h1_h1_headers_at_limit_pass(limited):
    # 1 Host + 9 others = 10 headers, small head: accepted
    hs = "".join("X-H%d: v\r\n" % i for i in range(9))
    with RawConn("127.0.0.1", limited.port) as c:
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n%s\r\n" % hs)
        assert c.read_response().status == 200


def test_h1_h1_431_curl(limited):
    r = lib.curl(limited.url("/name"), "-H", "X-Big: " + "c" * 5000)
    assert r.status == 431, r


def test_h1_h1_414_uri_too_long(limited):
    data = "GET /name?%s HTTP/1.1\r\nHost: t\r\n\r\n" % ("q" * 2000)
    r, closed = assert_error_close(limited.port, data, 414, limited.backend)
    r2 = lib.curl(limited.url("/name?" + "q" * 900))
    assert r2.status == 200, r2


def test_h1_h1_413_content_length(limited):
    # refused on the announced length, before the body is read
    with RawConn("127.0.0.1", limited.port, timeout=5) as c:
        c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n")
        r = c.read_response()
    assert r.status == 413, r
    assert limited.backend.stats()["requests"] == 0
    r = lib.curl(limited.url("/upload"), "--data-binary", "x" * 1024)
    assert r.status == 200 and r.json()["length"] == 1024, r


def test_h1_h1_413_chunked(limited):
    body = b"y" * 5000
    with RawConn("127.0.0.1", limited.port, timeout=5) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 500):
            c.send(b"1f4\r\n" + body[i:i + 500] + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 413, r


def test_h1_h1_413_chunked_curl(limited, tmp_path):
    f = tmp_path / "b.bin"
    f.write_bytes(b"z" * 50000)
    r = lib.curl(limited.url("/upload"), "--data-binary", "@%s" % f,
                 "-H", "Transfer-Encoding: chunked", "-H", "Expect:")
    assert r.status == 413, r
    f.write_bytes(b"z" * 1000)
    r = lib.curl(limited.url("/upload"), "--data-binary", "@%s" % f,
                 "-H", "Transfer-Encoding: chunked", "-H", "Expect:")
    assert r.status == 200 and r.json()["length"] == 1000, r


def test_h1_h1_413_location_override(tmp_path, start_backend, start_portico):
    b = start_backend()
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    client_max_body_size 1k;
    location /upload-big { proxy_pass app; client_max_body_size 0; }
    location /upload-small { proxy_pass app; client_max_body_size 10; }
    location / { proxy_pass app; }
}
""" % (b.addr, port))
    start_portico(conf, [port])
    url = "http://127.0.0.1:%d" % port
    big = "x" * 100000
    assert lib.curl(url + "/upload", "--data-binary", big).status == 413
    r = lib.curl(url + "/upload-big", "--data-binary", big)
    assert r.status == 200 and r.json()["length"] == 100000, r
    assert lib.curl(url + "/upload-small", "--data-binary", "x" * 11).status == 413
    assert lib.curl(url + "/upload-small", "--data-binary", "x" * 10).status == 200


def test_h1_h1_408_client_header_timeout(make_proxy):
    p = make_proxy(server_extra="    client_header_timeout 500ms;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        t0 = time.monotonic()
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n")  # head never finished
        r = c.read_response()
        dt = time.monotonic() - t0
        assert r.status == 408, r
        assert c.is_closed(3)
    assert 0.3 <= dt < 3.0, dt
    assert p.backend.stats()["requests"] == 0


def test_h1_h1_408_client_header_timeout_partial_h2c_preface(make_proxy):
    # bytes that never reach the parser (the start of an h2c preface waits for the rest):
    # the 408 is written by a connection that holds no per-request state yet
    p = make_proxy(server_extra="    client_header_timeout 500ms;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        c.send("PRI * HTTP/2.0\r\n")
        r = c.read_response()
        assert r.status == 408, r
        assert c.is_closed(3)
    assert lib.get(p.port, "/name")[0] == 200
    assert p.backend.stats()["requests"] == 1


def test_h1_h1_header_timeout_silent_close_when_no_bytes(make_proxy):
    p = make_proxy(server_extra="    client_header_timeout 500ms;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        t0 = time.monotonic()
        data = c.read_all(4)
        dt = time.monotonic() - t0
    assert data == b"", data
    assert dt < 3.0, "idle connection without bytes not closed (%.1fs)" % dt


def test_h1_h1_408_client_body_timeout(make_proxy):
    p = make_proxy(server_extra="    client_body_timeout 500ms;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        data = c.read_all(4)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]


def test_h1_h1_keepalive_idle_timeout(make_proxy):
    p = make_proxy(server_extra="    keepalive_timeout 500ms;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.is_closed(4), "idle keep-alive connection not closed"
        dt = time.monotonic() - t0
    assert 0.3 <= dt < 3.0, dt


def test_h1_h1_keepalive_timeout_zero_closes(make_proxy):
    p = make_proxy(server_extra="    keepalive_timeout 0;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close", r
        assert c.is_closed(3)


def test_h1_h1_keepalive_requests_limit(make_proxy):
    p = make_proxy(server_extra="    keepalive_requests 3;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        for i in range(3):
            c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close", r
        assert c.is_closed(3)


def test_h1_h1_send_timeout_client_not_reading(make_proxy):
    # A client that stops reading a big answer is dropped after send_timeout,
    # and the worker still serves others meanwhile.
    p = make_proxy(server_extra="    send_timeout 1s;\n",
                   upstream_extra="    read_timeout 20s;\n")
    n = 128 * lib.MiB
    c = RawConn("127.0.0.1", p.port, timeout=5)
    try:
        c.send("GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        assert lib.get(p.port, "/name")[0] == 200
        time.sleep(3.5)  # not reading: send_timeout (1s) expires in portico
        # drain what was buffered: the connection must end before the whole body
        got = 0
        eof = False
        c.sock.settimeout(3)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                d = c.sock.recv(1 << 20)
            except ConnectionResetError:
                eof = True
                break
            except OSError:  # timeout: portico neither sends nor closes
                break
            if not d:
                eof = True
                break
            got += len(d)
        assert eof and got < n, \
            "send_timeout did not close a non-reading client (got %d of %d bytes, eof=%s)" % (
                got, n, eof)
    finally:
        c.close()
