"""An HTTP/2 connection idle for a second gives the pages of nghttp2's frame buffer and of its
(empty) stream map back to the kernel (docs/http2.md, "Idle connections"). What a user sees
must not change: the next requests on the connection, with large frames and HPACK state from
before the idle time, come back byte for byte; a stream that stays open across that second is
not forgotten; PINGs answered while idle do not break it."""

import hashlib
import time

import pytest

import portico_testlib as lib

# longer than the release delay (1 s), with margin for a loaded machine: no timing asserted
IDLE = 1.8


def _check(c, n):
    st = c.get("/bytes/%d" % n, timeout=20)
    assert st.status == 200, st
    assert hashlib.sha256(bytes(st.data)).hexdigest() == lib.pattern_sha256(n), st
    big = c.get("/big-header/9000", timeout=20)
    assert big.status == 200 and len(big.header("x-big") or b"") == 9000, big
    assert c.get("/name").status == 200


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2"])
def test_h2_requests_after_idle_release(h2_front, tls):
    f = h2_front()
    with f.client(tls=tls) as c:
        _check(c, 200000)
        time.sleep(IDLE)
        assert c.ping_ok()          # a frame written while the buffer is released
        time.sleep(IDLE)
        _check(c, 300000)           # HPACK tables and the frame buffer, after release
        time.sleep(IDLE)
        _check(c, 70000)
        assert not c.closed


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2"])
def test_h2_stream_open_across_release_time(h2_front, tls):
    """A stream waiting for its backend while nothing else happens keeps its place in
    nghttp2's stream map: its response still arrives, and so does a second one after it."""
    f = h2_front()
    with f.client(tls=tls) as c:
        assert c.get("/name").status == 200
        time.sleep(IDLE)            # idle with a closed stream behind
        st = c.get("/slow/2500", timeout=20)
        assert st.status == 200 and bytes(st.data) == b"slow", st
        _check(c, 50000)
