"""Large Content-Length response bodies between cleartext HTTP/1.1 sockets go through a pipe
(splice, docs/architecture.md "Buffers and backpressure"): the bytes, their order against the
rest of the connection's output, and the end of each response must be what the backend sent,
whatever the client's pace."""

import hashlib
import socket
import time

import pytest

import portico_testlib as lib
from portico_testlib import MiB, RawConn


def _check(r, n):
    assert r.status == 200, r
    assert len(r.body) == n, (len(r.body), n)
    assert hashlib.sha256(r.body).hexdigest() == lib.pattern_sha256(n)


@pytest.mark.hard_timeout(60)
def test_h1_h1_pipelined_large_and_small_bodies_keep_their_order(make_proxy):
    # a slow, small-window client keeps spliced bytes waiting in the pipe while the next
    # response (and the last byte of the spliced one, which goes through the parser) queue
    # behind them: any reordering or loss breaks a length or a sha256
    p = make_proxy()
    sizes = [3 * MiB, 1000, 2 * MiB + 1, 70000, 0, 5 * MiB + 7]
    c = RawConn("127.0.0.1", p.port, timeout=20)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    try:
        c.send("".join("GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n for n in sizes))
        time.sleep(1)  # let portico fill what it may while the client is not reading
        for n in sizes:
            _check(c.read_response(), n)
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == b"b1"
    finally:
        c.close()


@pytest.mark.hard_timeout(60)
def test_h1_h1_large_bodies_one_after_another_on_a_connection(make_proxy):
    p = make_proxy()
    with RawConn("127.0.0.1", p.port, timeout=20) as c:
        for n in (1 * MiB, 4 * MiB + 3, 1 * MiB + 1):
            c.send("GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
            _check(c.read_response(), n)
    # and through curl, as a user would fetch it
    n = 16 * MiB
    r = lib.curl(p.url("/bytes/%d" % n), timeout=30)
    assert r.rc == 0 and r.status == 200 and len(r.body) == n
    assert hashlib.sha256(r.body).hexdigest() == lib.pattern_sha256(n)


@pytest.mark.hard_timeout(60)
def test_h1_h1_large_body_cut_by_backend_is_not_delivered_as_complete(make_proxy):
    p = make_proxy()
    n = 8 * MiB  # the backend sends half of it, then closes
    with RawConn("127.0.0.1", p.port, timeout=10) as c:
        c.send("GET /truncated/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        with pytest.raises(lib.ConnClosed):
            c.read_response()
    lib.wait_until(lambda: "closed mid-response" in p.portico.logs(), timeout=5,
                   what="the error log line for the cut response")
    assert lib.curl(p.url("/name")).status == 200
