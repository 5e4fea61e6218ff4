"""HTTP/2 connection lifecycle: graceful stop with a stream in flight, idle timeout, and
the server SETTINGS from http2_max_concurrent_streams / http2_initial_window_size."""

import signal
import time

import pytest

import h2_attacks


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2_graceful_stop_inflight_stream_completes(h2_front, tls):
    f = h2_front(shutdown_timeout=5.0)
    with f.client(tls=tls) as c:
        assert c.get("/name").status == 200
        sid = c.request("GET", "/slow/1500")
        big = c.request("GET", "/slow-body/1200")
        c.wait(lambda: False, 0.4)          # both requests are at the backend now
        t0 = time.monotonic()
        f.portico.signal(signal.SIGTERM)
        assert c.wait(lambda: c.goaway is not None, 3), "no GOAWAY after SIGTERM"
        assert c.goaway.error_code == 0, c.goaway          # NO_ERROR: a graceful drain
        assert c.goaway.last_stream_id >= max(sid, big), c.goaway
        st = c.response(sid, 6)
        st2 = c.response(big, 6)
    assert st.status == 200 and bytes(st.data) == b"slow", st
    assert st2.status == 200 and bytes(st2.data) == b"slow", st2
    assert c.goaway_seq < st.done_seq, "GOAWAY came only after the stream ended"
    rc = f.portico.wait_exit(f.portico.shutdown_timeout + 3)
    assert rc == 0, (rc, f.portico.logs())
    assert time.monotonic() - t0 < 5.0


def test_h2_graceful_stop_refuses_new_streams(h2_front):
    """After GOAWAY a new stream on the old connection is not processed: above the GOAWAY's
    last stream id nghttp2 ignores it (no response, no reset; RFC 9113 section 6.8), and it
    never reaches the backend, while the in-flight one completes."""
    f = h2_front(shutdown_timeout=5.0)
    with f.client(tls=False) as c:
        sid = c.request("GET", "/slow/1200")
        c.wait(lambda: False, 0.3)
        before = f.backend.stats()["requests"]
        f.portico.signal(signal.SIGTERM)
        assert c.wait(lambda: c.goaway is not None, 3)
        # python-h2 will not open a stream after GOAWAY: send the HEADERS frame raw
        # (static table and never-indexed literals leave the HPACK state alone)
        late = sid + 2
        c.streams[late] = h2_attacks.Stream(late)
        c.sock.sendall(h2_attacks.headers(late, h2_attacks.request_block(
            "/name", c.authority, "http")))
        st = c.response(sid, 6)
        assert st.status == 200 and bytes(st.data) == b"slow", st
        lt = c.streams[late]
        c.wait(lambda: lt.finished or c.closed, 2)
        assert lt.status is None and lt.reset is None, lt
    assert f.portico.wait_exit(8) == 0
    assert f.backend.stats()["requests"] == before


def test_h2_idle_connection_goaway(h2_front):
    f = h2_front(extra="    keepalive_timeout 1s;\n")
    with f.client(tls=False) as c:
        assert c.get("/name").status == 200
        t0 = time.monotonic()
        c.wait(lambda: c.closed, 5)
        assert c.closed, "idle h2 connection still open after keepalive_timeout"
        assert c.goaway is not None and c.goaway.error_code == 0, c.goaway
        assert 0.5 < time.monotonic() - t0 < 4.0


def test_h2_settings_from_config(h2_front):
    f = h2_front(extra="    http2_max_concurrent_streams 7;\n"
                       "    http2_initial_window_size 1m;\n")
    with f.client(tls=True) as c:
        assert c.get("/name").status == 200
        rs = c.conn.remote_settings
        assert rs.max_concurrent_streams == 7, dict(rs)
        assert rs.initial_window_size == 1048576, dict(rs)


def test_h2_max_concurrent_streams_enforced(h2_front):
    """8 streams at once against http2_max_concurrent_streams 7, after the client acknowledged
    the SETTINGS: nghttp2 treats the 8th HEADERS as a connection error (RFC 9113 section
    5.1.2 allows PROTOCOL_ERROR), so the connection gets GOAWAY PROTOCOL_ERROR naming stream 13,
    the last one it had accepted, and is closed; another client is served."""
    f = h2_front(extra="    http2_max_concurrent_streams 7;\n")
    raw = h2_attacks.RawH2("127.0.0.1", f.plain_port, name="streams")
    # let the server's SETTINGS arrive and acknowledge them, as a real client does
    raw.poll(1.0)
    raw.send(h2_attacks.settings(ack=True))
    block = h2_attacks.request_block("/slow/800", "localhost", "http")
    raw.send(b"".join(h2_attacks.headers(1 + 2 * i, block) for i in range(8)))
    res = raw.read_until_end(5, until=lambda r: r.closed)
    raw.close()
    assert res.goaway == (13, "PROTOCOL_ERROR") and res.closed, res
    assert res.statuses == {} and res.rst == {}, res
    with f.client(tls=False) as c:
        st = c.get("/name", timeout=5)
        assert st.status == 200 and bytes(st.data) == b"b1", st