"""Server-Timing (`server_timing on`, per location) and the debug header (`debug_header on`,
only to debug_header_from clients).

Server-Timing: `connect;dur=MS, [tls;dur=MS, ]ttfb;dur=MS, total;dur=MS,
upstream;desc="UPSTREAM ADDRESS"` for a relayed response (ttfb counts from the start of the
attempt that answered, so it includes connect and tls; total counts from the request's first
byte, so it includes failed attempts), `total;dur=MS` for portico's own answers."""

import re

import pytest

import portico_testlib as lib


def timings(r):
    """Server-Timing -> ({metric: dur in ms}, {metric: desc})."""
    durs, descs = {}, {}
    for m in (r.header("server-timing") or "").split(", "):
        name, *params = m.split(";")
        for p in params:
            k, _, v = p.partition("=")
            if k == "dur":
                durs[name] = float(v)
            elif k == "desc":
                descs[name] = v.strip('"')
    return durs, descs


@pytest.fixture
def timed(tmp_path, start_backend, start_portico):
    def _make(location_extra="        server_timing on;", servers=None, server_extra=""):
        b = start_backend("b1")
        port = lib.free_port()
        conf = lib.make_conf(tmp_path, lib.proxy_conf(
            port, servers(b) if servers else [b.addr], location_extra=location_extra,
            server_extra=server_extra))
        return start_portico(conf, [port]), b
    return _make


def test_h1_h1_server_timing_off_by_default(timed):
    p, _ = timed(location_extra="")
    r = lib.curl(p.url("/name"))
    assert r.header("server-timing") is None and r.header("portico-debug") is None, r.headers


def test_h1_h1_server_timing_present_and_ordered(timed):
    p, b = timed()
    r = lib.curl(p.url("/slow/200"))
    assert r.status == 200
    durs, descs = timings(r)
    assert list(durs) == ["connect", "ttfb", "total"], r.header("server-timing")
    assert descs == {"upstream": "app %s" % b.addr}, r.header("server-timing")
    assert 0 <= durs["connect"] <= durs["ttfb"] <= durs["total"], durs
    assert durs["ttfb"] >= 190, durs  # the backend took 200 ms
    # a reused connection: no connect time
    r = lib.curl(p.url("/name"), "--next", p.url("/name"))
    durs, _ = timings(r)
    assert durs["connect"] == 0 and durs["ttfb"] <= durs["total"], durs


def test_h1_h1_server_timing_total_counts_failed_attempts(timed, blackhole):
    # the first server hangs in connect (300 ms), the second answers: total includes the wait,
    # ttfb is the answering attempt's alone
    p, b = timed(servers=lambda b: ["127.0.0.1:%d" % blackhole, b.addr],
                 location_extra="        server_timing on;")
    with open(p.conf_path) as f:
        assert "connect_timeout 1s" in f.read()
    seen = []
    for _ in range(2):
        r = lib.curl(p.url("/name"))
        assert r.status == 200
        seen.append(timings(r)[0])
    slow = [d for d in seen if d["total"] >= 900]
    assert slow, seen
    assert all(d["ttfb"] < 500 for d in slow), seen


def test_h1_h1_server_timing_on_local_answers(timed):
    p, _ = timed(servers=lambda b: ["127.0.0.1:%d" % lib.free_port()])
    r = lib.curl(p.url("/name"))
    assert r.status == 502
    durs, descs = timings(r)
    assert list(durs) == ["total"] and durs["total"] >= 0 and not descs, r.headers


def test_h1_h1_debug_header(timed):
    dead = lib.free_port()
    p, b = timed(servers=lambda b: ["127.0.0.1:%d" % dead, b.addr],
                 location_extra="        debug_header on;")
    got = []
    for _ in range(3):
        r = lib.curl(p.url("/name"))
        assert r.status == 200
        got.append(r.header("portico-debug"))
    first = [d for d in got if "connection_refused" in d]
    assert first, got
    d = first[0]
    assert d.startswith('location="/", upstream="app", server="%s", ' % b.addr), d
    assert re.search(r'attempts="127\.0\.0\.1:%d connection_refused [0-9.]+ms; %s 200 '
                     r'[0-9.]+ms"' % (dead, re.escape(b.addr)), d), d
    assert d.endswith('answered="backend 200"'), d


def test_h1_h1_debug_header_only_from_allowed_addresses(timed):
    p, _ = timed(location_extra="        debug_header on;\n        debug_header_from 10.0.0.0/8;")
    r = lib.curl(p.url("/name"))
    assert r.status == 200 and r.header("portico-debug") is None, r.headers


def test_h1_h1_debug_header_on_portico_answer(timed):
    p, _ = timed(servers=lambda b: ["127.0.0.1:%d" % lib.free_port()],
                 location_extra="        debug_header on;")
    r = lib.curl(p.url("/name"))
    assert r.status == 502
    assert r.header("portico-debug").endswith('answered="portico 502 connection_refused"'), \
        r.headers
