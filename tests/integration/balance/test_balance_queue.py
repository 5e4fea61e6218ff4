"""max_conns with a pending queue (max_pending, queue_timeout): overflow gets 503 with
Retry-After at once, queued requests run when the server frees up or get 503 after
queue_timeout."""

import threading
import time

import pytest

from lbutil import Client, log_lines
from portico_testlib import wait_until


def timed_get(p, path, out, key):
    c = Client(p.host, p.port, timeout=20)
    t0 = time.monotonic()
    st, be, hs = c.get(path)
    out[key] = (st, be, hs, t0, time.monotonic())
    c.close()


@pytest.mark.hard_timeout(40)
def test_balance_max_conns_queue_overflow(start_backend, start_lb):
    s = start_backend("S")
    p = start_lb([s.addr + " max_conns=1"], "max_pending 2;\n    queue_timeout 10s;")
    out = {}
    # r0 takes the only slot for 1 s
    t = [threading.Thread(target=timed_get, args=(p, "/slow/1000", out, 0), daemon=True)]
    t[0].start()
    wait_until(lambda: s.stats()["requests"] >= 1, timeout=10, what="r0 reached the backend")
    # four more at once: two wait in the queue, two are turned away
    for k in range(1, 5):
        t.append(threading.Thread(target=timed_get, args=(p, "/slow/1000", out, k),
                                  daemon=True))
        t[-1].start()
    for x in t:
        x.join(30)
    assert len(out) == 5, out
    assert out[0][0] == 200
    rejected = [k for k in range(1, 5) if out[k][0] == 503]
    queued = [k for k in range(1, 5) if out[k][0] == 200]
    assert len(rejected) == 2 and len(queued) == 2, {k: v[:2] for k, v in out.items()}
    for k in rejected:
        st, be, hs, t0, t1 = out[k]
        assert hs.get("retry-after") == "1", hs
        assert be is None, "503 should come from portico, not the backend: %r" % hs
        assert t1 - t0 < 0.9, "overflow not rejected at once: %.2f s" % (t1 - t0)
    # the queued ones ran one after the other once the slot was free
    ends = sorted(out[k][4] for k in queued)
    assert ends[0] >= out[0][4] - 0.05, "a queued request finished before the first one"
    assert ends[1] - ends[0] >= 0.8, "queued requests ran concurrently despite max_conns=1"
    for k in queued:
        assert out[k][1] == "S"
    assert s.stats()["requests"] == 3
    assert len(log_lines(p, "(all at max_conns)")) == 2, p.logs()


@pytest.mark.hard_timeout(30)
def test_balance_queue_timeout_503(start_backend, start_lb):
    s = start_backend("S")
    p = start_lb([s.addr + " max_conns=1"], "max_pending 5;\n    queue_timeout 500ms;")
    out = {}
    t0 = threading.Thread(target=timed_get, args=(p, "/slow/2500", out, 0), daemon=True)
    t0.start()
    wait_until(lambda: s.stats()["requests"] >= 1, timeout=10,
               what="the first request reached the backend")
    timed_get(p, "/name", out, 1)
    st, be, hs, a, b = out[1]
    assert st == 503, out[1]
    assert hs.get("retry-after") == "1", hs
    assert 0.4 <= b - a <= 1.8, "queued request answered after %.2f s, queue_timeout 500ms" \
        % (b - a)
    t0.join(10)
    assert out[0][0] == 200
    assert len(log_lines(p, "no server freed within queue_timeout for GET /name")) == 1, \
        p.logs()
    assert s.stats()["requests"] == 1
