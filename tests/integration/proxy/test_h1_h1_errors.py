"""Backend failures: 502 refused/reset/invalid, 504 timeout, logged with names."""

import re
import time

import pytest

import portico_testlib as lib
from portico_testlib import RawConn


def dead_port():
    return lib.free_port()  # nothing listens there


def start_to(tmp_path, start_portico, servers, upstream_extra=""):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, lib.proxy_conf(port, servers, upstream_extra=upstream_extra))
    return start_portico(conf, [port])


def test_h1_h1_backend_refused_502(tmp_path, start_portico):
    dp = dead_port()
    p = start_to(tmp_path, start_portico, ["127.0.0.1:%d" % dp])
    r = lib.curl(p.url("/name"))
    assert r.status == 502, r
    assert r.body == b"502 Bad Gateway\n", r
    assert (r.header("Content-Type") or "").startswith("text/plain")
    # keep-alive survives an error answer
    with RawConn("127.0.0.1", p.port) as c:
        for _ in range(2):
            c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.read_response().status == 502
    assert p.stop() == 0
    log = p.read(p.error_log)
    assert re.search(r'\[error\].*upstream "app" server 127\.0\.0\.1:%d.*(refused|connect)' % dp,
                     log), log


def test_h1_h1_backend_reset_502(proxy):
    r = lib.curl(proxy.url("/reset"))
    assert r.status == 502, r
    assert lib.curl(proxy.url("/name")).status == 200


def test_h1_h1_backend_invalid_response_502(proxy):
    r = lib.curl(proxy.url("/garbage"))
    assert r.status == 502, r
    assert b"hi" not in r.body
    assert lib.curl(proxy.url("/name")).status == 200


def test_h1_h1_backend_read_timeout_504(make_proxy):
    p = make_proxy(upstream_extra="    read_timeout 500ms;\n")
    t0 = time.monotonic()
    r = lib.curl(p.url("/slow/3000"))
    dt = time.monotonic() - t0
    assert r.status == 504, r
    assert r.body == b"504 Gateway Timeout\n", r
    assert dt < 2.5, dt
    assert lib.curl(p.url("/name")).status == 200
    assert p.portico.stop() == 0
    log = p.portico.read(p.portico.error_log)
    assert re.search(r'upstream "app" server %s' % re.escape(p.backend.addr), log), log


def test_h1_h1_backend_hang_504(make_proxy):
    p = make_proxy(upstream_extra="    read_timeout 500ms;\n")
    r = lib.curl(p.url("/hang"))
    assert r.status == 504, r


def test_h1_h1_backend_slow_within_timeout(make_proxy):
    p = make_proxy(upstream_extra="    read_timeout 2s;\n")
    r = lib.curl(p.url("/slow/800"))
    assert r.status == 200 and r.body == b"slow", r


def test_h1_h1_backend_timeout_mid_body(make_proxy):
    # The head arrived, then the body stalls past read_timeout: the client's
    # response cannot become a clean 504 any more; it must be cut (not completed).
    p = make_proxy(upstream_extra="    read_timeout 500ms;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        c.send("GET /slow-body/3000 HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            r = c.read_response()
            completed = True
        except lib.ConnClosed:
            completed = False
        except OSError:  # socket.timeout
            pytest.fail("portico neither finished nor closed a response whose "
                        "backend body stalled past read_timeout")
    assert not completed, "a timed-out body was reported as complete: %r" % r


def test_h1_h1_backend_dies_between_requests(tmp_path, start_backend, start_portico):
    b = start_backend("A")
    p = start_to(tmp_path, start_portico, [b.addr])
    assert lib.curl(p.url("/name")).status == 200
    b.stop()
    r = lib.curl(p.url("/name"))
    assert r.status == 502, r


def test_h1_h1_error_does_not_affect_others(make_proxy):
    # one client waiting on a hanging backend request does not block another
    p = make_proxy(upstream_extra="    read_timeout 3s;\n")
    c = RawConn("127.0.0.1", p.port, timeout=10)
    try:
        c.send("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        assert lib.curl(p.url("/name")).status == 200
        assert time.monotonic() - t0 < 1.0
        r = c.read_response()
        assert r.status == 504
    finally:
        c.close()


@pytest.mark.hard_timeout(40)
def test_h1_h1_backend_send_timeout(make_proxy, tmp_path):
    # The backend never reads the request body: portico's writes stall and
    # upstream send_timeout ends the exchange with 504 (a backend timeout).
    p = make_proxy(server_extra="    client_max_body_size 0;\n",
                   upstream_extra="    send_timeout 1s;\n    read_timeout 20s;\n")
    f = tmp_path / "big.bin"
    with open(f, "wb") as fh:
        fh.truncate(64 * lib.MiB)
    t0 = time.monotonic()
    r = lib.curl(p.url("/no-read"), "-T", str(f), "-H", "Expect:", timeout=15)
    dt = time.monotonic() - t0
    f.unlink()
    assert r.status == 504, r
    assert dt < 8, dt
