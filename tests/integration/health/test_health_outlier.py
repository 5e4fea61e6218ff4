"""Passive outlier detection (no active checks): consecutive failures eject a server for
base_ejection, then it is back in rotation; max_ejected keeps some servers in."""

import time

import pytest

from hcutil import Load, by_backend, by_status, log_lines, wait_log


@pytest.mark.hard_timeout(40)
def test_health_outlier_ejection_and_return(start_flaky, start_lb):
    a = start_flaky("A")
    b = start_flaky("B", status=500)
    p = start_lb([a.addr, b.addr], "outlier_detection consecutive=3 base_ejection=2s;")
    # one client, one request at a time: B's failures are counted exactly
    load = Load(p.host, p.port, "/", threads=1, max_seconds=30, pause_s=0.005)
    try:
        t_ej = wait_log(p, "server %s in app ejected for 2000ms: 3 consecutive failures (5xx)"
                        % b.addr, timeout=10)
        assert t_ej, p.logs()
        b.set_status(200)          # B has recovered, but stays out until the ejection ends
        t_back = wait_log(p, "server %s in app back in rotation after ejection" % b.addr,
                          timeout=10)
        assert t_back, p.logs()
        time.sleep(0.5)
    finally:
        res = load.stop()
    assert not load.errors, load.errors[:5]
    assert 1.7 <= t_back - t_ej <= 2.0 + 2.0, "ejected for %.2f s, base_ejection=2s" % (
        t_back - t_ej)
    # the client saw B's 500 exactly `consecutive` times, then only A until B came back
    assert by_status(res)[500] == 3, by_status(res)
    during = by_backend([r for r in res if t_ej + 0.1 <= r[0] <= t_back - 0.1])
    # (round robin would alternate: a handful of requests, all on A, shows the ejection)
    assert set(during) == {"A"} and during["A"] >= 5, during
    after = [r for r in res if r[0] > t_back]
    assert ("B" in by_backend(after)) and set(by_status(after)) == {200}, by_backend(after)
    assert len(log_lines(p, " ejected for ")) == 1


@pytest.mark.hard_timeout(30)
def test_health_outlier_max_ejected(start_flaky, start_lb):
    # both servers fail; max_ejected=50% of 2 lets one be ejected, never both: the client
    # gets the remaining server's 500 rather than "no server available"
    a = start_flaky("A", status=500)
    b = start_flaky("B", status=500)
    p = start_lb([a.addr, b.addr],
                 "outlier_detection consecutive=3 base_ejection=10s max_ejected=50%;")
    load = Load(p.host, p.port, "/", threads=1, max_seconds=20, pause_s=0.005)
    try:
        assert wait_log(p, "max_ejected reached", count=2, timeout=10), p.logs()
    finally:
        res = load.stop()
    assert not load.errors, load.errors[:5]
    ejected = log_lines(p, " ejected for ")
    refused = log_lines(p, "not ejected after 3 consecutive failures (5xx): max_ejected reached")
    assert len(ejected) == 1, p.logs()
    assert len(refused) >= 2
    gone = a if a.addr in ejected[0] else b
    kept = b if gone is a else a
    assert all(kept.addr in line for line in refused), refused
    assert set(by_status(res)) == {500}, by_status(res)
    assert not log_lines(p, "no server available"), p.logs()
    # after the ejection, every request went to the server that was kept
    assert by_backend(res)[gone.name] == 3, by_backend(res)
