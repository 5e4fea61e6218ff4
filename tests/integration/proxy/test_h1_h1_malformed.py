"""Strict request parsing: ambiguous or malformed requests get 400 and a close,
never reach the backend, and do not disturb the next client."""

import pytest

import portico_testlib as lib
from portico_testlib import RawConn

CASES = {
    "cl_and_te": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "cl_duplicate_different": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                              b"Content-Length: 5\r\n\r\nabcde",
    "cl_duplicate_same": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                         b"Content-Length: 5\r\n\r\nabcde",
    "cl_list": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nabcde",
    "cl_not_a_number": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    "cl_negative": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "cl_plus_sign": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nabcde",
    "cl_trailing_garbage": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\nabcde",
    "cl_overflow": b"POST /echo HTTP/1.1\r\nHost: t\r\n"
                   b"Content-Length: 99999999999999999999999999\r\n\r\n",
    "chunk_size_invalid": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                          b"\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_negative": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                           b"\r\n-3\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                           b"\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "obs_fold": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n",
    "obs_fold_tab": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n\tb\r\n\r\n",
    "bare_lf_everywhere": b"GET /headers HTTP/1.1\nHost: t\nX-A: b\n\n",
    "bare_lf_in_header": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-A: b\nX-C: d\r\n\r\n",
    "bare_cr_in_header": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-A: b\rX-C: d\r\n\r\n",
    "nul_in_header_value": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-A: b\x00c\r\n\r\n",
    "ctl_in_header_value": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-A: b\x01c\r\n\r\n",
    "esc_in_header_value": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-A: b\x1bc\r\n\r\n",
    "del_in_header_value": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-A: b\x7fc\r\n\r\n",
    "nul_in_header_name": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-\x00A: b\r\n\r\n",
    "space_before_colon": b"GET /headers HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n",
    "te_space_before_colon": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n"
                             b"Content-Length: 3\r\n\r\nabc",
}

# Cases where the head itself is valid and portico may already have forwarded
# it to the backend before the body turns out bad: we do not require that the
# backend saw nothing, only the 400 and the close.
BODY_ERRORS = {"chunk_size_invalid", "chunk_size_negative", "chunk_size_overflow"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_h1_h1_malformed_400_and_close(proxy, name):
    with RawConn("127.0.0.1", proxy.port, timeout=5) as c:
        c.send(CASES[name])
        data = c.read_all(5)
    assert data.startswith(b"HTTP/1.1 400 "), "expected 400 + close, got %r" % data[:300]
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    assert b"content-type: text/plain" in head.lower(), head
    assert 0 < len(body) < 200, body
    # exactly one response, nothing after it (the rest of the bytes were not
    # interpreted as a second request)
    assert data.count(b"HTTP/1.1 ") == 1, data
    if name not in BODY_ERRORS:
        assert proxy.backend.stats()["requests"] == 0, "malformed request reached the backend"
    # portico keeps serving everyone else
    st, _, b = lib.get(proxy.port, "/name")
    assert (st, b) == (200, b"b1")


def test_h1_h1_malformed_after_good_request(proxy):
    # A good request then a smuggling attempt on the same connection: the first
    # is answered, the second gets 400 and the connection closes.
    with RawConn("127.0.0.1", proxy.port, timeout=5) as c:
        c.send(b"GET /name HTTP/1.1\r\nHost: t\r\n\r\n" + CASES["cl_and_te"])
        r = c.read_response()
        assert r.status == 200 and r.body == b"b1"
        rest = c.read_all(5)
    assert rest.startswith(b"HTTP/1.1 400 "), rest[:200]
    assert proxy.backend.stats()["requests"] == 1


def test_h1_h1_smuggle_cl_te_does_not_desync(proxy):
    # Classic CL.TE smuggling: if portico obeyed CL and the backend TE (or the
    # reverse) a second hidden request "GET /status/418" would reach the backend.
    smuggle = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\nGET /status/418 HTTP/1.1\r\nHost: t\r\n\r\n")
    with RawConn("127.0.0.1", proxy.port, timeout=5) as c:
        c.send(smuggle)
        data = c.read_all(5)
    assert b" 418 " not in data
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    assert proxy.backend.stats()["requests"] == 0


@pytest.mark.parametrize("version,status", [
    ("HTTP/1.x", 400), ("HTTP/9.9", 400), ("HTTP/1", 400), ("HTTP/1.2", 400),
    ("HTTP/2.0", 505), ("HTTP/0.9", 505)])
def test_h1_h1_bad_version_rejected(proxy, version, status):
    # docs/http1.md: a well-formed version other than 1.x is 505, an invalid version token
    # 400; then the close, nothing forwarded
    with RawConn("127.0.0.1", proxy.port, timeout=5) as c:
        c.send("GET /headers %s\r\nHost: t\r\n\r\n" % version)
        data = c.read_all(5)
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert proxy.backend.stats()["requests"] == 0


def test_h1_h1_garbage_closed(proxy):
    with RawConn("127.0.0.1", proxy.port, timeout=5) as c:
        c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)))
        data = c.read_all(5)
    # docs/http1.md What is rejected: a request line that is not one (here a TLS
    # ClientHello) is 400, then the close; nothing reaches the backend
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert proxy.backend.stats()["requests"] == 0
    st, _, b = lib.get(proxy.port, "/name")
    assert (st, b) == (200, b"b1")
