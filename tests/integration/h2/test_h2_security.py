"""Security regressions of the HTTP/2 frontend (each failed before its fix):
- one request with a :method llhttp does not know (`curl --http2-prior-knowledge -X FOO`, `get`,
  `QUERY`) made portico abort (SIGABRT) through llhttp_method_name(): every site down;
- so every token method is now forwarded as sent; an empty or non-token :method is a stream
  error (RST_STREAM PROTOCOL_ERROR) and the connection goes on;
- CONNECT gets 405 with Allow, an extended CONNECT (RFC 8441, the setting is advertised) for a
  protocol portico does not serve an HTTP answer (501) instead of a stream reset;
- an :authority with userinfo (RFC 9113 8.3.1) was forwarded as `Host: user@host`;
- content-length is parsed whole by the one number parser (it was cut at 23 bytes);
- a client that half-closes its TCP connection after a complete request gets the response.
Every test checks that the process is still alive and serving."""

import re
import socket
import time

import pytest

import portico_testlib as lib
from h2_attacks import RawH2, headers, request_block
from tls_h2_testlib import wait_log


def assert_alive(f):
    assert f.portico.proc.poll() is None, "portico exited with %r" % f.portico.proc.poll()
    r, v = f.curl_plain("/name", "--http2-prior-knowledge")
    assert r.status == 200 and v == "2", (r, v)


@pytest.mark.parametrize("method", ["FOO", "get", "QUERY", "PROPFIND", "M-SEARCH",
                                    "X_Y.Z~1!"])
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2_unknown_method_forwarded_not_abort(h2_front, method, tls):
    f = h2_front()
    if tls:
        r, v = f.curl_tls("/headers", "--http2", "-X", method)
    else:
        r, v = f.curl_plain("/headers", "--http2-prior-knowledge", "-X", method)
    assert v == "2", (r, v)
    assert r.status == 200, r
    assert r.json()["method"] == method
    assert_alive(f)
    assert wait_log(f.portico.access_log, '"%s /headers HTTP/2.0" 200' % re.escape(method))


@pytest.mark.parametrize("method", ["", "GE T", "GET\x01", "G(E)T", "GET/"])
def test_h2_non_token_method_is_stream_error(h2_front, method):
    f = h2_front()
    before = f.backend.stats()["requests"]
    with f.client(tls=False, validate=False) as c:
        sid = c.send_headers([(":method", method), (":scheme", "http"),
                              (":authority", "localhost"), (":path", "/name")])
        st = c.response(sid, 5)
        assert st.status is None and st.reset == 1, st    # PROTOCOL_ERROR
        ok = c.get("/name", timeout=5)                     # the connection goes on
        assert ok.status == 200, ok
    assert f.backend.stats()["requests"] - before == 1
    assert_alive(f)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2_connect_is_405(h2_front, tls):
    f = h2_front()
    with f.client(tls=tls, validate=False) as c:
        sid = c.send_headers([(":method", "CONNECT"), (":authority", "a.example:443")],
                             end_stream=False)
        st = c.response(sid, 5)
        assert st.status == 405, st
        assert st.header("allow").startswith("GET, HEAD, POST"), st.headers
    assert f.backend.stats()["requests"] == 0
    assert_alive(f)


def test_h2_extended_connect_answered_not_reset(h2_front):
    f = h2_front()
    with f.client(tls=False, validate=False) as c:
        c.pump(0.5)
        # RFC 8441 section 3: the server says it accepts :protocol
        assert c.conn.remote_settings.get(8) == 1, dict(c.conn.remote_settings)
        sid = c.send_headers([(":method", "CONNECT"), (":protocol", "connect-udp"),
                              (":scheme", "http"), (":authority", "localhost"),
                              (":path", "/chat"), ("sec-websocket-version", "13")],
                             end_stream=False)
        st = c.response(sid, 5)
        assert st.reset is None, st
        assert st.status == 501, st
    assert f.backend.stats()["requests"] == 0
    assert_alive(f)


# userinfo and a port over 65535 pass nghttp2 and are portico's 400 (RFC 9113 section 8.3.1);
# a space is not a character of an authority at all: nghttp2 resets the stream (PROTOCOL_ERROR)
@pytest.mark.parametrize("authority,status,reset", [
    ("user@localhost", 400, None),
    ("user:pw@localhost", 400, None),
    ("localhost:99999", 400, None),
    ("local host", None, 1),
])
def test_h2_authority_userinfo_rejected(h2_front, authority, status, reset):
    f = h2_front()
    with f.client(tls=False, validate=False) as c:
        sid = c.send_headers([(":method", "GET"), (":scheme", "http"),
                              (":authority", authority), (":path", "/headers")])
        st = c.response(sid, 5)
        assert (st.status, st.reset) == (status, reset), st
    assert f.backend.stats()["requests"] == 0
    assert_alive(f)


def test_h2_host_field_userinfo_rejected(h2_front):
    f = h2_front()
    with f.client(tls=False, validate=False) as c:
        sid = c.send_headers([(":method", "GET"), (":scheme", "http"), (":path", "/headers"),
                              ("host", "user@localhost")])
        st = c.response(sid, 5)
        assert st.status == 400, st
    assert f.backend.stats()["requests"] == 0


@pytest.mark.parametrize("value", ["9223372036854775808", "18446744073709551616",
                                   "000000000000000000000000000000005x", "-1", "+5"])
def test_h2_content_length_boundaries(h2_front, value):
    f = h2_front()
    with f.client(tls=False, validate=False) as c:
        sid = c.send_headers([(":method", "POST"), (":scheme", "http"),
                              (":authority", "localhost"), (":path", "/upload"),
                              ("content-length", value)], end_stream=False)
        c.conn.send_data(sid, b"hello", end_stream=True)
        c.flush()
        st = c.response(sid, 5)
        assert st.status != 200, st
    assert f.backend.stats()["requests"] == 0
    assert_alive(f)


def test_h2_content_length_leading_zeros(h2_front):
    # 30 digits: longer than the 23 bytes the old parser looked at
    f = h2_front()
    with f.client(tls=False, validate=False) as c:
        sid = c.send_headers([(":method", "POST"), (":scheme", "http"),
                              (":authority", "localhost"), (":path", "/upload"),
                              ("content-length", "000000000000000000000000000005")],
                             end_stream=False)
        c.conn.send_data(sid, b"hello", end_stream=True)
        c.flush()
        st = c.response(sid, 5)
        assert st.status == 200, st
        assert st.header("x-body-length") == "5"


def test_h2_method_pri_not_forwarded(h2_front):
    f = h2_front()
    r, v = f.curl_plain("/headers", "--http2-prior-knowledge", "-X", "PRI")
    assert r.status == 501, r
    assert f.backend.stats()["requests"] == 0


@pytest.mark.parametrize("tls", [False], ids=["h2c"])
def test_h2_half_close_after_request_gets_response(h2_front, tls):
    # preface, SETTINGS, a whole request, then the FIN (shutdown(SHUT_WR)): the response to
    # the complete request still comes, then the connection closes. (Over TLS a FIN alone is
    # a truncation, and OpenSSL clients refuse data after their own close_notify: no TLS
    # client half-closes, so only h2c is tested.)
    f = h2_front()
    raw = RawH2("127.0.0.1", f.tls_port if tls else f.plain_port, tls=tls)
    try:
        raw.send(headers(1, request_block("/slow/300", scheme="https" if tls else "http")))
        time.sleep(0.05)
        raw.sock.shutdown(socket.SHUT_WR)
        res = raw.read_until_end(5.0)
        assert res.statuses.get(1) == 200, res
        assert 1 not in res.rst, res
        assert res.closed, "the connection did not close after the last response"
    finally:
        raw.close()
    assert f.backend.stats()["requests"] == 1
    assert_alive(f)


def test_h2_half_close_mid_request_resets(h2_front):
    # a stream whose request body can never arrive is reset, not left waiting
    f = h2_front()
    raw = RawH2("127.0.0.1", f.plain_port)
    try:
        raw.send(headers(1, request_block("/upload", method="POST"), end_stream=False))
        time.sleep(0.05)
        raw.sock.shutdown(socket.SHUT_WR)
        res = raw.read_until_end(5.0)
        assert res.closed and res.statuses.get(1) is None, res
    finally:
        raw.close()
    assert_alive(f)
