"""Which servers may be picked: sticky cookies, `backup`, `down`."""

import re

import pytest

from lbutil import Client, counts, dead_port, names, statuses, wait_log

COOKIE_RE = re.compile(r"^srv=([0-9a-f]{8}); Path=/; Max-Age=3600; HttpOnly$")


def test_balance_sticky_cookie_pins_and_fails_over(start_backend, start_lb):
    a, b = start_backend("A"), start_backend("B")
    by_name = {"A": a, "B": b}
    p = start_lb([a.addr, b.addr], "sticky cookie srv ttl=1h;")
    c = Client(p.host, p.port)

    # first visit: pinned with a cookie naming the server that answered
    st, first, hs = c.get("/name")
    assert st == 200
    m = COOKIE_RE.match(hs.get("set-cookie", ""))
    assert m, "no sticky Set-Cookie: %r" % hs
    cookie = "srv=" + m.group(1)

    # with the cookie: always that server, and no new cookie
    for i in range(20):
        st, be, hs = c.get("/name", {"Cookie": "lang=en; " + cookie})
        assert (st, be) == (200, first), (i, st, be)
        assert "set-cookie" not in hs, hs
    # without it, round robin goes on alternating
    assert len(counts(names(c, "/name", 6))) == 2

    # the pinned server dies: the request falls back to the other one, re-pinned there
    other = "B" if first == "A" else "A"
    by_name[first].proc.kill()
    by_name[first].proc.wait(5)
    st, be, hs = c.get("/name", {"Cookie": cookie})
    assert (st, be) == (200, other), (st, be, hs)
    m2 = COOKIE_RE.match(hs.get("set-cookie", ""))
    assert m2 and m2.group(1) != m.group(1), "no new cookie after failover: %r" % hs
    for i in range(10):
        st, be, hs = c.get("/name", {"Cookie": "srv=" + m2.group(1)})
        assert (st, be) == (200, other), (i, st, be)
        assert "set-cookie" not in hs
    c.close()


@pytest.mark.hard_timeout(40)
def test_balance_backup_takes_over_when_primaries_down(start_backend, start_lb):
    a, b, bk = start_backend("A"), start_backend("B"), start_backend("BK")
    p = start_lb([a.addr, b.addr, bk.addr + " backup"],
                 "health_check tcp interval=200ms timeout=200ms rise=1 fall=1;")
    c = Client(p.host, p.port)
    res = names(c, "/name", 30)
    assert statuses(res) == {200: 30}
    assert counts(res) == {"A": 15, "B": 15}, counts(res)
    assert bk.stats()["requests"] == 0

    # both primaries die: once the checks see it, the backup takes everything
    a_port = a.port
    for x in (a, b):
        x.proc.kill()
        x.proc.wait(5)
    assert wait_log(p, "DOWN: 1/1 checks failed", count=2, timeout=10), p.logs()
    res = names(c, "/name", 20)
    assert res == [(200, "BK")] * 20, res

    # a primary comes back: the backup gets nothing again
    a2 = start_backend("A2", port=a_port)
    assert wait_log(p, "UP: 1/1 checks passed", timeout=10), p.logs()
    before = bk.stats()["requests"]
    res = names(c, "/name", 20)
    assert res == [(200, "A2")] * 20, res
    assert bk.stats()["requests"] == before
    assert a2.stats()["requests"] == 20
    c.close()


def test_balance_backup_after_retries_without_health_checks(start_backend, start_lb):
    # no health check: both primaries refuse connections; with `retries 2` each request
    # tries both and ends on the backup
    bk = start_backend("BK")
    p = start_lb(["127.0.0.1:%d" % dead_port(), "127.0.0.1:%d" % dead_port(),
                  bk.addr + " backup"], "retries 2;")
    c = Client(p.host, p.port)
    res = names(c, "/name", 4)
    assert res == [(200, "BK")] * 4, res
    c.close()


def test_balance_down_server_gets_nothing(start_backend, start_lb):
    a, b, d = start_backend("A"), start_backend("B"), start_backend("D")
    p = start_lb([a.addr, d.addr + " down", b.addr])
    c = Client(p.host, p.port)
    res = names(c, "/name", 40)
    assert statuses(res) == {200: 40}
    assert counts(res) == {"A": 20, "B": 20}, counts(res)
    assert d.stats()["connections"] == 0
    c.close()
