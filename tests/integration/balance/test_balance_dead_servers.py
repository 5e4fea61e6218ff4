"""Dead servers cost clients nothing while one server works: a request that fails before any
byte of it was sent (connection refused) goes to every other server in turn, backups included,
without spending `retries` or the retry budget; and a server that refuses connections is ejected
even beyond max_ejected, as long as another server stays in rotation.

The two upstreams are the ones of the issue: with portico's defaults (no health_check, no
outlier_detection, retries 1, retry_budget 20%) `app` answered 75 of 300 requests with 502 and
`bk` 224 of 300, where nginx answers all 300."""

import collections
import time

import pytest

import portico_testlib as lib
from lbutil import dead_port, log_lines


def sequential(port, n, path="/name"):
    """n requests, each on a new connection (as n curl runs would: they land on both
    workers): a Counter of (status, backend body)."""
    out = collections.Counter()
    for _ in range(n):
        st, _, body = lib.raw_request("127.0.0.1", port, "GET", path)
        out[(st, body.decode("latin-1"))] += 1
    return out


def two_upstreams(tmp_path, start_portico, a, dead1, dead2, extra=""):
    """Portico with the issue's two upstreams, each behind a listener of its own, with the
    default settings (plus `extra` in both upstreams)."""
    p_app, p_bk = lib.free_port(), lib.free_port()
    conf = lib.make_conf(tmp_path, """
upstream app {
    server %(a)s;
    server %(d1)s;
    server %(d2)s;
%(extra)s}
upstream bk {
    server %(d1)s;
    server %(d2)s;
    server %(a)s backup;
%(extra)s}
server { listen 127.0.0.1:%(p_app)d; location / { proxy_pass app; } }
server { listen 127.0.0.1:%(p_bk)d; location / { proxy_pass bk; } }
""" % dict(a=a, d1=dead1, d2=dead2, p_app=p_app, p_bk=p_bk, extra=extra), workers=2,
        access_log="off")
    return start_portico(conf, [p_app, p_bk]), p_app, p_bk


@pytest.mark.hard_timeout(60)
def test_balance_dead_servers_no_client_error(tmp_path, start_backend, start_portico):
    a = start_backend("A")
    d1, d2 = "127.0.0.1:%d" % dead_port(), "127.0.0.1:%d" % dead_port()
    p, p_app, p_bk = two_upstreams(tmp_path, start_portico, a.addr, d1, d2)

    assert sequential(p_app, 300) == {(200, "A"): 300}, p.logs()
    assert sequential(p_bk, 300) == {(200, "A"): 300}, p.logs()
    assert a.stats()["requests"] == 600

    # the dead servers were tried, and ejected although that is 2 of 3 servers, beyond the
    # 50% cap: they refuse connections, and A stayed in rotation
    for d in (d1, d2):
        assert log_lines(p, "server %s in app ejected for " % d), p.logs()
        assert log_lines(p, "server %s in bk ejected for " % d), p.logs()
    # ejected, they are not tried by every request: a few attempts per ejection period
    failed = len(log_lines(p, "connect() failed"))
    assert 4 <= failed <= 60, "%d failed connects for 600 requests" % failed
    assert not log_lines(p, "retry budget exhausted"), p.logs()
    assert not log_lines(p, "no server available"), p.logs()


@pytest.mark.hard_timeout(60)
def test_balance_dead_servers_without_ejection(tmp_path, start_backend, start_portico):
    # without any ejection every request that draws a dead server pays for it, and still
    # gets a 200: the retry itself, with no budget and no retries left, is what saves it
    a = start_backend("A")
    d1, d2 = "127.0.0.1:%d" % dead_port(), "127.0.0.1:%d" % dead_port()
    p, p_app, p_bk = two_upstreams(tmp_path, start_portico, a.addr, d1, d2,
                                   "    outlier_detection off;\n    retries 0;\n"
                                   "    retry_budget 0%;\n")
    assert sequential(p_app, 150) == {(200, "A"): 150}, p.logs()
    assert sequential(p_bk, 150) == {(200, "A"): 150}, p.logs()
    # app: round robin draws a dead server first for about 2 of 3 requests; bk: both
    # primaries are tried before the backup, every time
    failed = len(log_lines(p, "connect() failed"))
    assert failed >= 150 * 2 + 50, "%d failed connects" % failed
    assert not log_lines(p, " ejected for "), p.logs()


@pytest.mark.hard_timeout(30)
def test_balance_all_servers_dead_502(start_lb):
    # nothing works: each request ends in 502 (the last attempt's status), not 503 "no server
    # available": ejection keeps the last server in rotation
    d1, d2, d3 = ("127.0.0.1:%d" % dead_port() for _ in range(3))
    p = start_lb([d1, d2, d3])
    for _ in range(30):
        st, _, _ = lib.raw_request(p.host, p.port, "GET", "/name")
        assert st == 502, p.logs()
    assert not log_lines(p, "no server available"), p.logs()
    assert len(log_lines(p, " ejected for ")) <= 2 * 3, p.logs()


@pytest.mark.hard_timeout(40)
def test_balance_dead_server_returns_after_ejection(start_backend, start_lb):
    # a server ejected beyond the cap is back once its ejection (2 s) ends
    a = start_backend("A")
    port = dead_port()
    p = start_lb([a.addr, "127.0.0.1:%d" % port], workers=1)
    c = sequential(p.port, 10)
    assert c == {(200, "A"): 10}, c
    assert log_lines(p, "server 127.0.0.1:%d in app ejected for 2000ms" % port), p.logs()
    b = start_backend("B", port=port)
    deadline = time.monotonic() + 8
    seen = collections.Counter()
    while time.monotonic() < deadline and seen[(200, "B")] < 5:
        seen += sequential(p.port, 5)
        time.sleep(0.1)
    assert seen[(200, "B")] >= 5, (seen, p.logs())
    assert set(st for st, _ in seen) == {200}, seen
    assert b.stats()["requests"] >= 5
