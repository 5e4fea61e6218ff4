"""Active health checks count `fall` failures and `rise` passes *in a row*: a server whose
checks pass and fail in turn never changes state, whichever state it is in, and the
transition comes exactly at the fall-th (rise-th) consecutive result.

The server is tests/tools/flaky_backend.py with a health-check sequence
(/control/health-seq/200,503,...): each check takes the next code of the list."""

import pytest

import portico_testlib as lib
from hcutil import log_lines

# fall 3, rise 2, checked every 100 ms (fast_interval is used while a server is changing
# state, which an alternating server always is)
HC = ("health_check http path=/health interval=100ms fast_interval=100ms timeout=250ms "
      "rise=2 fall=3;")


def checks(b):
    return b.stats()["health"]


@pytest.mark.hard_timeout(40)
def test_health_fall_rise_alternating_server_counted_in_a_row(start_flaky, start_lb):
    a, b = start_flaky("A"), start_flaky("B")
    p = start_lb([a.addr, b.addr], HC, workers=1)
    lib.wait_until(lambda: checks(b) >= 2, 5, what="health checks reaching B")

    # UP, then pass/fail/fail in turn: never 3 failures in a row, so B never goes DOWN
    # (a prober that did not restart its failure run on a pass would after the 3rd failure)
    b.set_health_seq([200, 503, 503])
    n0 = checks(b)
    lib.wait_until(lambda: checks(b) >= n0 + 12, 10, what="12 more health checks of B")
    assert log_lines(p, "server %s in app DOWN" % b.addr) == [], p.logs()

    # three failures in a row: DOWN at exactly the third
    b.set_health_seq([503])
    lib.wait_until(lambda: log_lines(p, "server %s in app DOWN" % b.addr), 5,
                   what="B DOWN after 3 failed checks")
    assert log_lines(p, "DOWN: 3/3 checks failed: status 503") != [], p.logs()

    # DOWN, then fail/pass in turn: never 2 passes in a row, so B stays DOWN
    b.set_health_seq([503, 200])
    n1 = checks(b)
    lib.wait_until(lambda: checks(b) >= n1 + 12, 10, what="12 more health checks of B")
    assert log_lines(p, "server %s in app UP" % b.addr) == [], p.logs()
    # and it gets no request meanwhile
    before = b.stats()["requests"]
    for _ in range(6):
        st, _, body = lib.get(p.port, "/")
        assert (st, body) == (200, b"A")
    assert b.stats()["requests"] == before

    # two passes in a row: UP
    b.set_health_seq([200])
    lib.wait_until(lambda: log_lines(p, "server %s in app UP: 2/2 checks passed" % b.addr), 5,
                   what="B UP after 2 passed checks")
    assert len(log_lines(p, "server %s in app DOWN" % b.addr)) == 1
    assert len(log_lines(p, "server %s in app UP" % b.addr)) == 1
