"""HTTP/2 abuse (tests/tools/h2_attacks.py): rapid reset (CVE-2023-44487), SETTINGS and PING
floods (ACKs never read), CONTINUATION flood (CVE-2024-27316 family), HPACK bomb.

Each attack ends the attacking connection the one way it should (EXPECT: rapid reset gets
nghttp2's GOAWAY INTERNAL_ERROR; the floods of frames whose ACKs are never read, and the
CONTINUATION flood, get the connection closed; too many SETTINGS entries get GOAWAY
ENHANCE_YOUR_CALM; the HPACK bomb gets 431 on its stream), leaves an error-log line naming the
client, keeps portico's memory bounded, and a normal client on another connection is served
right after."""

import pytest

import h2_attacks
from tls_h2_testlib import log_size, read_log, wait_log


def normal_requests_ok(f):
    r, ver = f.curl_plain("/name", "--http2-prior-knowledge", timeout=10)
    assert r.rc == 0 and r.status == 200 and r.body == b"b1" and ver == "2", r
    r, ver = f.curl_tls("/name", "--http2", timeout=10)
    assert r.rc == 0 and r.status == 200 and r.body == b"b1" and ver == "2", r


def new_log_lines(f, start):
    return read_log(f.portico.error_log)[start:]


ATTACKS = {
    "rapid_reset": lambda port, tls: h2_attacks.rapid_reset("127.0.0.1", port, tls, n=5000),
    "settings_flood": lambda port, tls: h2_attacks.settings_flood("127.0.0.1", port, tls),
    "ping_flood": lambda port, tls: h2_attacks.ping_flood("127.0.0.1", port, tls),
    "continuation_flood": lambda port, tls: h2_attacks.continuation_flood("127.0.0.1", port,
                                                                          tls, n=10000),
}


# how portico ends each attack: ("goaway", error code) or ("closed", None)
EXPECT = {
    # nghttp2's stream reset rate limit terminates the session with INTERNAL_ERROR
    "rapid_reset": ("goaway", "INTERNAL_ERROR"),
    # the attacker never reads: portico stops at max_outbound_ack and closes
    "settings_flood": ("closed", None),
    "ping_flood": ("closed", None),
    # max_continuations: nghttp2 refuses the header block as a fatal error; closed
    "continuation_flood": ("closed", None),
}


def ended_as(res):
    if res.goaway is not None:
        return ("goaway", res.goaway[1])
    return ("closed", None) if res.closed else ("open", None)


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2_flood_connection_ended(h2_front, attack, tls):
    f = h2_front(workers=2)
    normal_requests_ok(f)
    hwm0 = f.portico.vm_hwm_kib()
    start = log_size(f.portico.error_log)
    port = f.tls_port if tls else f.plain_port
    res = ATTACKS[attack](port, tls)
    # the connection was ended by portico, the way EXPECT says
    assert ended_as(res) == EXPECT[attack], res
    # nothing got answered 200 on the attacking connection after the limit
    if attack == "rapid_reset":
        assert res.headers_frames < 5000, res
    line = wait_log(f.portico.error_log, r"h2 client 127\.0\.0\.1", 3, start)
    assert line, "no error-log line about the %s (GOAWAY %r, closed %r):\n%s" % (
        attack, res.goaway, res.closed, new_log_lines(f, start))
    normal_requests_ok(f)
    hwm1 = f.portico.vm_hwm_kib()
    assert hwm1 - hwm0 < 64 * 1024, (hwm0, hwm1)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2_flood_hpack_bomb(h2_front, tls):
    f = h2_front(workers=2)
    normal_requests_ok(f)
    hwm0 = f.portico.vm_hwm_kib()
    start = log_size(f.portico.error_log)
    port = f.tls_port if tls else f.plain_port
    before = f.backend.stats()["requests"]
    res = h2_attacks.hpack_bomb("127.0.0.1", port, tls, refs=12000, timeout=3)
    # ~48 MB of header list from 16 KB: answered 431 on its stream (over
    # client_max_header_size), never proxied
    assert res.statuses == {1: 431} and not res.rejected, res
    assert f.backend.stats()["requests"] == before
    line = wait_log(f.portico.error_log, r"h2 client 127\.0\.0\.1", 3, start)
    assert line, new_log_lines(f, start)
    normal_requests_ok(f)
    hwm1 = f.portico.vm_hwm_kib()
    assert hwm1 - hwm0 < 32 * 1024, (hwm0, hwm1)


def test_h2_flood_settings_too_many_entries(h2_front):
    """One SETTINGS frame with 1000 entries (over nghttp2's max_settings 32): ENHANCE_YOUR_CALM."""
    f = h2_front()
    start = log_size(f.portico.error_log)
    raw = h2_attacks.RawH2("127.0.0.1", f.plain_port, name="settings_entries")
    raw.send(h2_attacks.settings([(4, 65535)] * 1000))
    res = raw.read_until_end(3)
    raw.close()
    assert ended_as(res) == ("goaway", "ENHANCE_YOUR_CALM"), res
    assert wait_log(f.portico.error_log, r"h2 client 127\.0\.0\.1", 3, start), \
        "no error-log line (%r):\n%s" % (res, new_log_lines(f, start))
    normal_requests_ok(f)


def test_h2_flood_other_connection_unaffected_during_attack(h2_front):
    """A client already connected keeps working while another connection floods."""
    f = h2_front(workers=1)
    with f.client(tls=False) as good:
        assert good.get("/name").status == 200
        res = h2_attacks.ping_flood("127.0.0.1", f.plain_port, False)
        assert ended_as(res) == EXPECT["ping_flood"], res
        st = good.get("/name", timeout=5)
        assert st.status == 200 and bytes(st.data) == b"b1", st
        assert good.goaway is None
