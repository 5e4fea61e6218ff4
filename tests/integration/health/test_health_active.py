"""Active health checks: a server leaves rotation after `fall` failed checks and comes back
after `rise` passed ones, each transition logged once with its reason; http (status
ranges, body=) and tcp checks; slow_start after recovery."""

import time

import pytest

import portico_testlib as lib

from hcutil import (Client, Load, by_backend, by_status, first_from, last_from, log_lines,
                    wait_for, wait_log)

INTERVAL, FALL, RISE = 0.3, 3, 2
HC = ("health_check http path=/health interval=300ms timeout=250ms rise=%d fall=%d;"
      % (RISE, FALL))
SLACK = 2.0   # two busy cores: generous


def both_get_traffic(p, names=("A", "B"), n=10):
    c = Client(p.host, p.port)
    got = set(c.get("/")[1] for _ in range(n))
    c.close()
    return got == set(names)


@pytest.mark.hard_timeout(40)
def test_health_fall_rise_under_load(start_flaky, start_lb):
    a, b = start_flaky("A"), start_flaky("B")
    p = start_lb([a.addr, b.addr], HC)
    assert wait_for(lambda: b.stats()["health"] >= 2, 5), "no health checks reach B"
    assert both_get_traffic(p)
    load = Load(p.host, p.port, "/", threads=3, max_seconds=30)
    try:
        time.sleep(0.5)
        # B's health endpoint starts failing (it still serves requests: a draining server)
        t_flip = time.monotonic()
        b.set_health(503)
        t_down = wait_log(p, "DOWN: 3/3 checks failed: status 503", timeout=10)
        assert t_down, "no DOWN line\n" + p.logs()
        assert t_down - t_flip <= INTERVAL * FALL + SLACK, "DOWN after %.2f s" % (t_down - t_flip)
        time.sleep(1.0)
        res = load.results()
        last_b = last_from(res, "B")
        assert last_b is not None and last_b <= t_down + 0.5, \
            "B still in rotation %.2f s after DOWN" % (last_b - t_down)
        assert last_b - t_flip <= INTERVAL * FALL + SLACK + 0.5
        assert by_backend(load.results(since=t_down + 0.5)).keys() == {"A"}

        # B recovers
        t_rec = time.monotonic()
        b.set_health(200)
        t_up = wait_log(p, "UP: 2/2 checks passed", timeout=10)
        assert t_up, "no UP line\n" + p.logs()
        assert t_up - t_rec <= INTERVAL * RISE + SLACK, "UP after %.2f s" % (t_up - t_rec)
        assert wait_for(lambda: first_from(load.results(), "B", t_rec) is not None, 3), \
            "B did not get traffic back after UP"
        time.sleep(0.3)
    finally:
        res = load.stop()
    # the whole time: every client request answered 200, no transport errors
    assert not load.errors, load.errors[:5]
    assert set(by_status(res)) == {200}, by_status(res)
    assert len(res) >= 100, len(res)
    # each transition logged exactly once, with the server, the upstream and the reason
    down = log_lines(p, " DOWN: ")
    up = log_lines(p, " UP: ")
    assert len(down) == 1 and len(up) == 1, p.logs()
    assert "server %s in app DOWN: 3/3 checks failed: status 503" % b.addr in down[0], down
    assert "server %s in app UP: 2/2 checks passed" % b.addr in up[0], up
    assert "[warn]" in down[0] and "[notice]" in up[0]


@pytest.mark.hard_timeout(30)
def test_health_killed_server_connection_refused(start_flaky, start_lb):
    a, b = start_flaky("A"), start_flaky("B")
    p = start_lb([a.addr, b.addr], HC)
    assert wait_for(lambda: both_get_traffic(p), 5)
    t_kill = time.monotonic()
    b.kill()
    t_down = wait_log(p, "DOWN: 3/3 checks failed: Connection refused", timeout=10)
    assert t_down, p.logs()
    assert t_down - t_kill <= INTERVAL * FALL + SLACK
    assert "server %s in app DOWN" % b.addr in log_lines(p, " DOWN: ")[0]
    c = Client(p.host, p.port)
    res = [c.get("/")[:2] for _ in range(30)]
    c.close()
    assert res == [(200, "A")] * 30, res
    # DOWN is said once: the failing checks that follow (every interval) say nothing more
    assert lib.stays(lambda: len(log_lines(p, " DOWN: ")) == 1, INTERVAL * 3), p.logs()


@pytest.mark.hard_timeout(30)
def test_health_tcp_check_kill_and_restart(start_backend, start_lb):
    # tcp: a connect is the whole check (tests/tools/backend.py has no /health at all)
    a, b = start_backend("A"), start_backend("B")
    p = start_lb([a.addr, b.addr],
                 "health_check tcp interval=300ms timeout=250ms rise=2 fall=2;")
    # three checks of each, none failed: a check is a connection the backend accepts (the
    # backend counts each look at its /stats too, so those are taken off)
    looks = {a: 0, b: 0}

    def checks(be):
        looks[be] += 1
        return be.stats()["accepted"] - looks[be]
    assert wait_for(lambda: min(checks(a), checks(b)) >= 3, 10)
    assert not log_lines(p, " DOWN: "), p.logs()
    c = Client(p.host, p.port)
    assert set(c.get("/name")[1] for _ in range(10)) == {"A", "B"}
    port = b.port
    b.proc.kill()
    b.proc.wait(5)
    assert wait_log(p, "server %s in app DOWN: 2/2 checks failed: Connection refused"
                    % b.addr, timeout=10), p.logs()
    res = [c.get("/name")[:2] for _ in range(20)]
    assert res == [(200, "A")] * 20, res

    b2 = start_backend("B2", port=port)
    assert wait_log(p, "server %s in app UP: 2/2 checks passed" % b.addr, timeout=10), p.logs()
    # the checks connected, but never sent an HTTP request
    assert b2.stats()["requests"] == 0
    res = [c.get("/name")[:2] for _ in range(20)]
    assert sorted(set(res)) == [(200, "A"), (200, "B2")], res
    c.close()


@pytest.mark.hard_timeout(30)
def test_health_body_substring_mismatch(start_flaky, start_lb):
    a, b = start_flaky("A"), start_flaky("B")     # /health body "healthy NAME"
    p = start_lb([a.addr, b.addr],
                 "health_check http path=/health body=healthy interval=300ms timeout=250ms "
                 "rise=1 fall=2;")
    assert wait_for(lambda: b.stats()["health"] >= 3, 5)
    assert not log_lines(p, " DOWN: "), "body matched, yet DOWN\n" + p.logs()
    b.set_health_body("degraded B")               # still 200, wrong body
    assert wait_log(p, "server %s in app DOWN: 2/2 checks failed: body does not contain the "
                    "expected text" % b.addr, timeout=10), p.logs()
    c = Client(p.host, p.port)
    assert [c.get("/")[:2] for _ in range(10)] == [(200, "A")] * 10
    b.set_health_body("healthy again")
    assert wait_log(p, "server %s in app UP: 1/1 checks passed" % b.addr, timeout=10), p.logs()
    assert wait_for(lambda: "B" in set(c.get("/")[1] for _ in range(4)), 3)
    c.close()
    assert len(log_lines(p, " DOWN: ")) == 1


@pytest.mark.hard_timeout(30)
def test_health_status_ranges(start_flaky, start_lb):
    a, b = start_flaky("A"), start_flaky("B")
    p = start_lb([a.addr, b.addr],
                 "health_check http path=/health status=200,204 interval=300ms timeout=250ms "
                 "rise=1 fall=2;")
    b.set_health(204)                             # in the list: healthy
    n0 = b.stats()["health"]
    assert wait_for(lambda: b.stats()["health"] >= n0 + 3, 5)
    assert not log_lines(p, " DOWN: "), "204 is listed in status=, yet DOWN\n" + p.logs()
    assert both_get_traffic(p)
    b.set_health(201)                             # 2xx but not listed (the default would pass)
    assert wait_log(p, "server %s in app DOWN: 2/2 checks failed: status 201" % b.addr,
                    timeout=10), p.logs()
    c = Client(p.host, p.port)
    assert [c.get("/")[:2] for _ in range(10)] == [(200, "A")] * 10
    c.close()


@pytest.mark.hard_timeout(45)
def test_health_slow_start_ramps_share(start_flaky, start_lb):
    # after UP, slow_start 4s gives B a share growing from 10% to 100% of its picks: in the
    # first second it gets clearly less than its full half of the traffic
    a, b = start_flaky("A"), start_flaky("B")
    p = start_lb([a.addr, b.addr],
                 "health_check http path=/health interval=200ms timeout=1s rise=1 fall=1;\n"
                 "    slow_start 4s;")
    assert wait_for(lambda: both_get_traffic(p), 5)
    b.set_health(503)
    assert wait_log(p, "server %s in app DOWN" % b.addr, timeout=10), p.logs()
    load = Load(p.host, p.port, "/", threads=3, max_seconds=30)
    try:
        time.sleep(0.3)
        b.set_health(200)
        t_up = wait_log(p, "server %s in app UP" % b.addr, timeout=10)
        assert t_up, p.logs()
        time.sleep(5.5)
    finally:
        res = load.stop()
    assert not load.errors, load.errors[:5]
    assert set(by_status(res)) == {200}

    def share(t0, t1):
        got = by_backend([r for r in res if t0 <= r[0] < t1])
        n = sum(got.values())
        assert n >= 40, "too few requests in [%.1f, %.1f): %r" % (t0 - t_up, t1 - t_up, got)
        return got["B"] / n, got

    early, e_got = share(t_up, t_up + 1.2)
    late, l_got = share(t_up + 4.4, t_up + 5.5)
    assert e_got["B"] > 0, "B got nothing in the first 1.2 s after UP: %r" % e_got
    assert early < 0.35, "no slow start: B had %.0f%% right after UP %r" % (100 * early, e_got)
    assert late >= 0.4, "B did not reach its full share after slow_start: %.0f%% %r" % (
        100 * late, l_got)


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 2000 OK", b"HTTP/1.1  200 OK",
                                         b"HTTP/1.1 -200 OK", b"HTTP/1.1 +20 OK",
                                         b"HTTP/1.1 20 OK"])
def test_health_status_line_parsed_strictly(start_flaky, start_lb, status_line):
    # the status of a probe answer goes through the one number parser: 3DIGIT after one SP
    # (sscanf("%3u") read "2000" and " 200" as 200: a broken server looked healthy)
    from tls_h2_testlib import RecordingBackend

    a = start_flaky("A")
    r = RecordingBackend(response=status_line + b"\r\nContent-Length: 2\r\n\r\nok")
    try:
        p = start_lb([a.addr, r.addr],
                     "health_check http path=/health interval=100ms timeout=500ms rise=1 "
                     "fall=2;", workers=1)
        assert wait_log(p, "server %s in app DOWN: 2/2 checks failed: invalid response"
                        % r.addr, timeout=5), p.logs()
    finally:
        r.stop()


def test_health_status_line_without_reason_phrase(start_flaky, start_lb):
    from tls_h2_testlib import RecordingBackend

    a = start_flaky("A")
    r = RecordingBackend(response=b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok")
    try:
        p = start_lb([a.addr, r.addr],
                     "health_check http path=/health interval=100ms timeout=500ms rise=1 "
                     "fall=2;", workers=1)
        # three checks answered "HTTP/1.1 200" (two failures in a row would be DOWN)
        assert wait_for(lambda: len(r.requests) >= 3, 10), r.requests
        assert not log_lines(p, "DOWN"), p.logs()
    finally:
        r.stop()
