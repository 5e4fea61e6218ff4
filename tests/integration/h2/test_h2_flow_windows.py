"""HTTP/2 connection-window accounting (docs/http2.md, Flow control): request DATA that
portico never hands to a backend -- the body of a stream it answered itself (404, 413) and
discards, or of a stream the client reset while portico held its bytes -- is acknowledged,
so the connection window comes back and later streams are not starved.

The connection window is made small (http2_max_concurrent_streams 2 x
http2_initial_window_size 65535 = 131070 bytes), so two unreturned stream windows exhaust it."""

import pytest

import portico_testlib as lib
from h2_attacks import H2Client
from tls_h2_testlib import plain_server, upstream

WIN = 65535
CONN_WIN = 2 * WIN


@pytest.fixture
def small_window(start_backend, start_portico_in):
    b = start_backend("b1")
    port = lib.free_port()
    body = upstream("app", [b.addr + " max_conns=1"],
                    extra="    max_pending 4;\n    queue_timeout 10s;\n")
    body += plain_server(port, extra="    http2_max_concurrent_streams 2;\n"
                                     "    http2_initial_window_size %d;\n"
                                     "    client_max_body_size 1m;\n" % WIN,
                         locations="    location /upload { proxy_pass app; }\n"
                                   "    location /slow/ { proxy_pass app; }\n"
                                   "    location /small/ { client_max_body_size 1k; "
                                   "proxy_pass app; }\n")
    p = start_portico_in(body, [port], name="fe")
    return p, port, b


def conn_window(c):
    return c.conn.outbound_flow_control_window


def wait_window(c, at_least, what):
    lib.wait_until(lambda: c.pump(0.05) is not None and conn_window(c) >= at_least, 5,
                   what="connection window back to %d (is %d): %s"
                   % (at_least, conn_window(c), what))


def upload_then_check(c, path, expect_status):
    """HEADERS (no content-length: the body limit is found in the DATA) + a whole stream
    window of DATA at once (before portico can answer), then the answer; returns the stream."""
    sid = c.send_headers(c.request_headers("POST", "/%s" % path.lstrip("/")), end_stream=False)
    assert c.send_available(sid, b"d" * WIN) == WIN
    st = c.response(sid, 5)
    assert st.status == expect_status, st
    if sid in c.conn.streams and not c.conn.streams[sid].closed:
        c.conn.end_stream(sid)      # an empty DATA with END_STREAM frees the stream slot
        c.flush()
    return st


@pytest.mark.parametrize("path,status", [("/nowhere/x", 404), ("/small/x", 413)],
                         ids=["404", "413"])
def test_h2_discarded_body_returns_connection_window(small_window, path, status):
    p, port, b = small_window
    with H2Client("127.0.0.1", port) as c:
        wait_window(c, CONN_WIN, "after the preface")
        # four streams of discarded DATA: twice the connection window
        for i in range(4):
            upload_then_check(c, path, status)
            wait_window(c, CONN_WIN, "after discarded stream %d" % (i + 1))
        # and a real upload still goes through
        sid = c.request("POST", "/upload", [("content-length", str(3 * WIN))],
                        body=b"u" * (3 * WIN))
        r = c.response(sid, 10)
        assert r.status == 200 and b'"length": %d' % (3 * WIN) in bytes(r.data), r
    if status == 404:   # a 413 found in the DATA comes after the head went to the backend
        assert b.stats()["requests"] == 1


def test_h2_reset_stream_returns_held_window(small_window):
    p, port, b = small_window
    with H2Client("127.0.0.1", port) as c:
        wait_window(c, CONN_WIN, "after the preface")
        busy = c.request("GET", "/slow/1500")          # takes the server's one slot
        lib.wait_until(lambda: c.pump(0.05) is not None and b.stats()["active"] >= 1, 5,
                       what="the slow request at the backend")
        sid = c.send_headers(c.request_headers("POST", "/upload",
                                               [("content-length", str(2 * WIN))]),
                             end_stream=False)
        assert c.send_available(sid, b"q" * WIN) == WIN   # queued: portico holds it
        c.pump(0.3)
        assert conn_window(c) == CONN_WIN - WIN, "portico acknowledged bytes it still holds"
        c.conn.reset_stream(sid)
        c.flush()
        wait_window(c, CONN_WIN, "after the client reset the queued stream")
        assert c.response(busy, 5).status == 200
