"""Regressions for what the fuzz targets (tests/fuzz, docs/testing.md) found on the HTTP/1.1
paths. Each case names its target and says what went wrong.

fuzz_h1_differential: llhttp 8.1 takes a CR followed by any byte, or a bare LF, as the end of a
request head or trailer section, and a bare LF after the request line (the CVE-2023-30589
class). Portico then disagreed with a strict parser on where a request ends: the byte after
the CR was swallowed and what followed was parsed as the next request. Every such line ending
is now a 400 and a close, and nothing after it reaches the backend. The same lines in a
backend's response fail the attempt (502). Control bytes in the request target (HTAB, FF)
and an empty Transfer-Encoding are a 400 too."""

import socket
import threading

import pytest

import portico_testlib as lib
from portico_testlib import RawConn

SMUGGLED = b"GET /status/418 HTTP/1.1\r\nHost: t\r\n\r\n"

HEAD_CASES = {
    # the head ends with CR + any byte: the byte vanished and the rest became a request
    "cr_x_ends_head": b"GET /name HTTP/1.1\r\nHost: t\r\n\rX" + SMUGGLED,
    "cr_nul_ends_head": b"GET /name HTTP/1.1\r\nHost: t\r\n\r\x00" + SMUGGLED,
    # a bare LF ends the head, or the request line
    "lf_ends_head": b"GET /name HTTP/1.1\r\nHost: t\r\n\n" + SMUGGLED,
    "lf_after_request_line": b"GET /name HTTP/1.1\nHost: t\r\n\r\n" + SMUGGLED,
    # the same in the trailer section of a chunked body
    "cr_x_ends_trailers": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3\r\nabc\r\n0\r\nA: b\r\n\rX" + SMUGGLED,
    "cr_x_after_last_chunk": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                             b"\r\n0\r\n\rX" + SMUGGLED,
    "lf_ends_trailers": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"0\r\nA: b\r\n\n" + SMUGGLED,
    # fuzz_h1_differential: llhttp 8.1 lets HTAB and FF into the target, where a backend
    # splitting on whitespace sees another target
    "tab_in_target": b"GET /name\t/../x HTTP/1.1\r\nHost: t\r\n\r\n" + SMUGGLED,
    "ff_in_target": b"GET /name\x0c HTTP/1.1\r\nHost: t\r\n\r\n" + SMUGGLED,
    # fuzz_h1_differential: llhttp 8.1 ignores an empty Transfer-Encoding, so the request had
    # no body for portico while a parser that sees the field frames a body
    "empty_te": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n" + SMUGGLED,
    "blank_te": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:  \t \r\n\r\n" + SMUGGLED,
    "obs_fold_in_trailers": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                            b"\r\n0\r\nA: b\r\n c\r\n\r\n" + SMUGGLED,
}


@pytest.mark.parametrize("name", sorted(HEAD_CASES))
def test_h1_h1_fuzz_line_endings_400(proxy, name):
    with RawConn("127.0.0.1", proxy.port, timeout=5) as c:
        c.send(HEAD_CASES[name])
        data = c.read_all(5)
    assert data.startswith(b"HTTP/1.1 400 "), data[:300]
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert b" 418 " not in data
    # the head of a chunked request may have been forwarded before its trailers arrived,
    # never the request hidden behind them
    assert proxy.backend.stats()["requests"] <= (1 if b"chunked" in HEAD_CASES[name] else 0)
    st, _, b = lib.get(proxy.port, "/name")
    assert (st, b) == (200, b"b1")


def test_h1_h1_fuzz_crlf_between_requests_still_fine(proxy):
    # RFC 9112 section 2.2: an empty line (CRLF) before a request line is ignored
    with RawConn("127.0.0.1", proxy.port, timeout=5) as c:
        c.send(b"GET /name HTTP/1.1\r\nHost: t\r\n\r\n\r\nGET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
        assert c.read_response().status == 200


class RawBackend:
    """Answers every connection with fixed bytes once it has read a request head."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                s, _ = self.sock.accept()
            except OSError:
                continue
            with s:
                s.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf:
                        d = s.recv(4096)
                        if not d:
                            break
                        buf += d
                    s.sendall(self.answer)
                    s.recv(4096)  # until portico closes
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


RESPONSE_CASES = {
    "cr_x_ends_head": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\rXok",
    "lf_ends_head": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok",
    "lf_after_status_line": b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "cr_x_ends_trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"2\r\nok\r\n0\r\nA: b\r\n\rX",
    # fuzz_h1_response: llhttp 8.1 lets a space into a field name, which reached clients
    "space_in_field_name": b"HTTP/1.1 200 OK\r\nContent h: 0\r\nContent-Length: 2\r\n\r\nok",
    "space_in_trailer_name": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"2\r\nok\r\n0\r\nX y: 1\r\n\r\n",
    # fuzz_h1_response: an interim head was sent to the client from inside llhttp's callback,
    # before its line endings were checked: the client got the 103 of a response portico then
    # refused
    "cr_x_ends_interim_head": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\rX"
                              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


@pytest.mark.parametrize("name", sorted(RESPONSE_CASES))
def test_h1_h1_fuzz_response_line_endings_502(tmp_path, start_portico, name):
    be = RawBackend(RESPONSE_CASES[name])
    try:
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(
            port, ["127.0.0.1:%d" % be.port], upstream_extra="    retries 0;\n"))
        p = start_portico(conf, [port])
        with RawConn("127.0.0.1", port, timeout=5) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = c.read_all(5)
        if data.startswith(b"HTTP/1.1 200 "):
            # only when the head had left before the bad trailers came: then the client
            # connection is closed instead of the chunked body being ended
            assert "trailer" in name, data[:300]
            assert not data.endswith(b"0\r\n\r\n"), data
        else:
            assert data.startswith(b"HTTP/1.1 502 "), data[:300]
            assert data.count(b"HTTP/1.1 ") == 1, data
        assert "invalid response" in p.logs()
    finally:
        be.close()


def test_h1_h1_fuzz_interim_content_length_dropped(tmp_path, start_portico):
    """fuzz_h1_response: a backend's 103 with Content-Length went to the client as it was. RFC
    9110 section 8.6 forbids it in a 1xx, and a client that honours it (llhttp does) reads the
    final response's first bytes as the 103's body: the client's view of the stream is off."""
    be = RawBackend(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n"
                    b"Content-Length: 11\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    try:
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(
            port, ["127.0.0.1:%d" % be.port], upstream_extra="    retries 0;\n"))
        start_portico(conf, [port])
        with RawConn("127.0.0.1", port, timeout=5) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = c.read_all(5)
        interim, _, rest = data.partition(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 103 "), data[:300]
        assert b"link: </s.css>; rel=preload" in interim.lower()
        assert b"content-length" not in interim.lower()
        assert rest.startswith(b"HTTP/1.1 200 "), data
        assert rest.endswith(b"\r\n\r\nok"), data
    finally:
        be.close()


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_h1_h1_fuzz_no_content_status_ignores_content_length(tmp_path, start_portico, status):
    """Found with the 1xx case above: llhttp 8.1 reads a body after a 1xx, 204 or 304 with a
    Content-Length, where RFC 9112 section 6.3 ends the response with its head. Portico waited
    for body bytes that never come (or took the next response's bytes for them); now the
    response ends with its head, as the client expects."""
    be = RawBackend(b"HTTP/1.1 " + status + b"\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n")
    try:
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(
            port, ["127.0.0.1:%d" % be.port], upstream_extra="    retries 0;\n"))
        start_portico(conf, [port])
        with RawConn("127.0.0.1", port, timeout=5) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            assert r.status == int(status[:3])
            assert r.header("x-a") == "1"
            # the connection goes on: the response ended with its head
            c.send(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert c.read_response().status == int(status[:3])
    finally:
        be.close()
