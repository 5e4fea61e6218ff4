"""Malformed HTTP/2 requests (RFC 9113 section 8.1.1, 8.2, 8.3): each is a stream error of
type PROTOCOL_ERROR (section 8.1.1: RST_STREAM, not GOAWAY), never answered, never reaches the
backend, and portico goes on serving the same connection and other clients."""

import pytest

A = "localhost"


def base(path="/name", method="GET", scheme="http"):
    return [(":method", method), (":scheme", scheme), (":authority", A), (":path", path)]


# (id, header list, body or None, content-length-mismatch handled by body)
CASES = {
    "uppercase_name": (base() + [("X-Upper", "1")], None),
    "connection_keep_alive": (base() + [("connection", "keep-alive")], None),
    "keep_alive_field": (base() + [("keep-alive", "timeout=5")], None),
    "transfer_encoding": (base("/upload", "POST") + [("transfer-encoding", "chunked")],
                          b"hello"),
    "te_not_trailers": (base() + [("te", "gzip")], None),
    "upgrade_field": (base() + [("upgrade", "websocket")], None),
    "missing_path": ([(":method", "GET"), (":scheme", "http"), (":authority", A)], None),
    "missing_method": ([(":scheme", "http"), (":authority", A), (":path", "/name")], None),
    "empty_path": (base(path=""), None),
    "unknown_pseudo": (base() + [(":foo", "bar")], None),
    "pseudo_after_regular": ([(":method", "GET"), (":scheme", "http"), ("x-a", "1"),
                              (":authority", A), (":path", "/name")], None),
    "duplicate_path": (base() + [(":path", "/other")], None),
    "response_pseudo_in_request": (base() + [(":status", "200")], None),
    "content_length_more_than_data": (base("/upload", "POST") + [("content-length", "10")],
                                      b"12345"),
    "content_length_less_than_data": (base("/upload", "POST") + [("content-length", "3")],
                                      b"12345"),
    "space_in_name": (base() + [("x bad", "1")], None),
    "newline_in_value": (base() + [("x-bad", "a\r\nb")], None),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2_rfc9113_violation_refused(h2_front, case, tls):
    f = h2_front()
    before = f.backend.stats()["requests"]
    hdrs, body = CASES[case]
    if tls:
        hdrs = [(n, "https") if n == ":scheme" else (n, v) for n, v in hdrs]
    extra = 0
    with f.client(tls=tls, validate=False) as c:
        sid = c.send_headers(hdrs, end_stream=body is None)
        if body is not None:
            c.conn.send_data(sid, body, end_stream=True)
            c.flush()
        st = c.response(sid, 5)
        assert st.status is None, (case, st)
        assert (st.reset, c.goaway) == (1, None), \
            "%s: want RST_STREAM PROTOCOL_ERROR (1) and no GOAWAY, got reset %r goaway %r" % (
                case, st.reset, c.goaway)
        # a stream error only: the connection itself still works
        ok = c.get("/name", timeout=5)
        extra = 1
        assert ok.status == 200 and bytes(ok.data) == b"b1", (case, ok)
    if not case.startswith("content_length"):
        # refused before routing (a content-length mismatch shows only at the end of DATA,
        # when the request may already be streaming to the backend)
        assert f.backend.stats()["requests"] - before == extra, case
    # another client is served
    with f.client(tls=tls) as c2:
        st = c2.get("/name", timeout=5)
        assert st.status == 200 and bytes(st.data) == b"b1", st
