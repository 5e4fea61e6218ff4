"""Routing: server_name (exact, wildcard, default), locations, return."""

import pytest

import portico_testlib as lib


@pytest.fixture
def three(start_backend):
    return [start_backend(n) for n in ("A", "B", "C")]


def start(tmp_path, start_portico, body_fmt, backends, port):
    d = {"port": port}
    for b in backends:
        d[b.name] = b.addr
    conf = lib.make_conf(tmp_path, body_fmt % d)
    return start_portico(conf, [port])


def who(port, path="/", host=None):
    args = ["-H", "Host: %s" % host] if host else []
    r = lib.curl("http://127.0.0.1:%d%s" % (port, path), *args)
    return r.status, r.header("X-Backend"), r


SERVERS = """
upstream a { server %(A)s; }
upstream b { server %(B)s; }
upstream c { server %(C)s; }
server {
    listen 127.0.0.1:%(port)d;
    server_name first.test;
    location / { proxy_pass a; }
}
server {
    listen 127.0.0.1:%(port)d;
    server_name exact.test www.exact.test;
    location / { proxy_pass b; }
}
server {
    listen 127.0.0.1:%(port)d;
    server_name *.wild.test;
    location / { proxy_pass c; }
}
"""


def test_h1_h1_server_name_exact(tmp_path, start_portico, three):
    port = lib.free_port()
    start(tmp_path, start_portico, SERVERS, three, port)
    assert who(port, host="exact.test")[:2] == (200, "B")
    assert who(port, host="www.exact.test")[:2] == (200, "B")
    assert who(port, host="first.test")[:2] == (200, "A")
    # case-insensitive, and the port in Host is ignored
    assert who(port, host="EXACT.Test")[:2] == (200, "B")
    assert who(port, host="exact.test:%d" % port)[:2] == (200, "B")


def test_h1_h1_server_name_wildcard(tmp_path, start_portico, three):
    port = lib.free_port()
    start(tmp_path, start_portico, SERVERS, three, port)
    assert who(port, host="foo.wild.test")[:2] == (200, "C")
    assert who(port, host="a.b.wild.test")[:2] == (200, "C")
    # the bare suffix is not matched by *.wild.test -> default (first) server
    assert who(port, host="wild.test")[:2] == (200, "A")
    assert who(port, host="notwild.test")[:2] == (200, "A")


def test_h1_h1_default_server_first(tmp_path, start_portico, three):
    port = lib.free_port()
    start(tmp_path, start_portico, SERVERS, three, port)
    assert who(port, host="unknown.test")[:2] == (200, "A")
    # no Host at all on HTTP/1.0 -> default server
    with lib.RawConn("127.0.0.1", port) as c:
        c.send("GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.header("X-Backend") == "A"


def test_h1_h1_default_server_explicit(tmp_path, start_portico, three):
    port = lib.free_port()
    conf = SERVERS.replace("listen 127.0.0.1:%(port)d;\n    server_name *.wild",
                 "listen 127.0.0.1:%(port)d default_server;\n    server_name *.wild")
    start(tmp_path, start_portico, conf, three, port)
    assert who(port, host="unknown.test")[:2] == (200, "C")
    assert who(port, host="first.test")[:2] == (200, "A")


LOCATIONS = """
upstream a { server %(A)s; }
upstream b { server %(B)s; }
upstream c { server %(C)s; }
server {
    listen 127.0.0.1:%(port)d;
    location /api { proxy_pass a; }
    location /api/v2 { proxy_pass b; }
    location = /api/v2/exact { return 200 "exact match"; }
    location = /status { return 204; }
    location /teapot { return 418 "short and stout"; }
    location / { proxy_pass c; }
}
"""


def test_h1_h1_location_longest_prefix(tmp_path, start_portico, three):
    port = lib.free_port()
    start(tmp_path, start_portico, LOCATIONS, three, port)
    assert who(port, "/api/x")[1] == "A"
    assert who(port, "/api")[1] == "A"
    assert who(port, "/api/v2")[1] == "B"
    assert who(port, "/api/v2/users?id=3")[1] == "B"
    assert who(port, "/other")[1] == "C"
    assert who(port, "/")[1] == "C"


def test_h1_h1_location_exact(tmp_path, start_portico, three):
    port = lib.free_port()
    start(tmp_path, start_portico, LOCATIONS, three, port)
    st, be, r = who(port, "/api/v2/exact")
    assert (st, be, r.body) == (200, None, b"exact match"), r
    # not exact any more: longest prefix
    assert who(port, "/api/v2/exact2")[1] == "B"
    assert who(port, "/api/v2/exact/")[1] == "B"
    # query strings do not take part in matching
    st, be, r = who(port, "/api/v2/exact?x=1")
    assert r.body == b"exact match", r


def test_h1_h1_return_text(tmp_path, start_portico, three):
    port = lib.free_port()
    start(tmp_path, start_portico, LOCATIONS, three, port)
    st, be, r = who(port, "/teapot/x")
    assert st == 418 and r.body == b"short and stout", r
    assert (r.header("Content-Type") or "").startswith("text/plain"), r
    assert r.header("Content-Length") == str(len(b"short and stout"))
    st, be, r = who(port, "/status")
    assert st == 204 and r.body == b"", r
    assert [b.stats()["requests"] for b in three] == [0, 0, 0]


def test_h1_h1_return_200_text_keepalive(tmp_path, start_portico):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
server {
    listen 127.0.0.1:%d;
    location / { return 200 "hello from portico"; }
}
""" % port)
    start_portico(conf, [port])
    with lib.RawConn("127.0.0.1", port) as c:
        for _ in range(3):
            c.send("GET /anything HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == b"hello from portico"
        c.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("Content-Length") == "18"
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == b"hello from portico"


def test_h1_h1_no_location_404(tmp_path, start_portico, start_backend):
    b = start_backend("A")
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream a { server %s; }
server {
    listen 127.0.0.1:%d;
    location /api/ { proxy_pass a; }
}
""" % (b.addr, port))
    start_portico(conf, [port])
    st, be, r = who(port, "/nope")
    assert st == 404 and be is None, r
    assert who(port, "/api")[0] == 404  # "/api" is not under "/api/"
    assert who(port, "/api/x")[1] == "A"
    assert b.stats()["requests"] == 1


def test_h1_h1_two_listeners_two_servers(tmp_path, start_portico, three):
    p1, p2 = lib.free_port(), lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream a { server %s; }
upstream b { server %s; }
server { listen 127.0.0.1:%d; location / { proxy_pass a; } }
server { listen 127.0.0.1:%d; location / { proxy_pass b; } }
""" % (three[0].addr, three[1].addr, p1, p2))
    start_portico(conf, [p1, p2])
    assert who(p1)[1] == "A"
    assert who(p2)[1] == "B"
