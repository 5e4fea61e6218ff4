"""An HTTP/2 connection idle for a second gives the pages of nghttp2's frame buffer and of its
(empty) stream map back to the kernel (docs/http2.md, "Idle connections"). What a user sees
must not change: the next requests on the connection, with large frames and HPACK state from
before the idle time, come back byte for byte; a stream that stays open across that second is
not forgotten; PINGs answered while idle do not break it."""

import hashlib
import re
import time

import pytest

import h2_attacks
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


def _response_table_size(port, n):
    """n responses with distinct X-Big values (~130 table bytes each), headers decoded in
    order: the size of the client's copy of portico's HPACK table afterwards."""
    raw = h2_attacks.RawH2("127.0.0.1", port, name="hpack")
    raw.poll(1.0)
    raw.send(h2_attacks.settings(ack=True))
    raw.send(b"".join(h2_attacks.headers(1 + 2 * i, h2_attacks.request_block(
        "/big-header/%d" % (100 + i), "localhost", "http")) for i in range(n)))
    res = raw.read_until_end(15, until=lambda r: len(r.statuses) == n)
    raw.close()
    assert sorted(res.statuses.values()) == [200] * n, res
    return raw.decoder.header_table._current_size


@pytest.mark.parametrize("size,most", [(None, 512), ("0", 0), ("4k", 4096)])
def test_h2_encoder_table_size_bounds_response_hpack_table(h2_front, size, most):
    """http2_encoder_table_size (default 512) is the most the responses' HPACK table holds."""
    f = h2_front(extra="    http2_encoder_table_size %s;\n" % size if size else "")
    got = _response_table_size(f.plain_port, 12)
    assert got <= most, (got, most)
    if most >= 4096:
        assert got > 512, got     # the headers do fill a larger table: the bound is real


@pytest.mark.parametrize("size,want", [(None, 4096), ("1k", 1024)])
def test_h2_header_table_size_announced(h2_front, size, want):
    """http2_header_table_size is sent as SETTINGS_HEADER_TABLE_SIZE."""
    f = h2_front(extra="    http2_header_table_size %s;\n" % size if size else "")
    with f.client(tls=False) as c:
        assert c.get("/name").status == 200
        assert c.conn.remote_settings.header_table_size == want, dict(c.conn.remote_settings)
        assert c.get("/name").status == 200


@pytest.mark.parametrize("directive", ["http2_encoder_table_size", "http2_header_table_size"])
def test_h2_table_size_over_64k_is_a_config_error(tmp_path, directive):
    p = tmp_path / "t.conf"
    p.write_text("workers 1;\nserver {\n    listen 127.0.0.1:%d;\n    %s 65537;\n"
                 "    return 200;\n}\n" % (lib.free_port(), directive))
    rc, out = lib.run_portico(["-t", "-c", str(p)])
    assert rc == 1, out
    assert re.search(r"t\.conf:2:\d+: .*%s.*64k" % directive, out), out
    p.write_text(p.read_text().replace("65537", "64k"))
    rc, out = lib.run_portico(["-t", "-c", str(p)])
    assert rc == 0, out
