"""Balancing policies seen from a client: who answers (X-Backend) and how often.

round_robin weights across workers, least_conn and ewma steering away from a slow server,
random_two by weight, hash uri / header (consistent, with a server removed) / cookie.
"""

import pytest

from lbutil import Client, Load, counts, names, spread, statuses
from portico_testlib import wait_until


def test_balance_rr_weights_exact_across_workers(start_backend, start_lb):
    # weight=3 vs 1, two workers, 4 clients on changing connections: the shared smooth
    # sequence gives exactly 750/250 over 1000 picks, whichever worker took each request
    a, b = start_backend("A"), start_backend("B")
    p = start_lb([a.addr + " weight=3", b.addr + " weight=1"], workers=2)
    res = spread(p.host, p.port, "/name", threads=4, per_thread=250, reconnect_every=10)
    assert statuses(res) == {200: 1000}, statuses(res)
    got = counts(res)
    assert abs(got["A"] - 750) <= 50 and abs(got["B"] - 250) <= 50, got   # the ±5% bound
    assert got == {"A": 750, "B": 250}, "round robin not exact across workers: %r" % got
    # the backends agree with what the client saw
    assert (a.stats()["requests"], b.stats()["requests"]) == (750, 250)


@pytest.mark.hard_timeout(40)
def test_balance_least_conn_avoids_slow_server(start_backend, start_flaky, start_lb):
    # SLOW takes 300 ms per request, FAST a few ms; with 6 concurrent clients least_conn
    # sends almost everything to FAST (round robin would split the count 50/50)
    fast = start_backend("FAST")
    slow = start_flaky("SLOW", delay_ms=300)
    p = start_lb([fast.addr, slow.addr], "balance least_conn;")
    load = Load(p.host, p.port, "/name", threads=6, max_seconds=20)
    # run until 200 answers, the slow server among them (not a fixed 3 s: fewer on a busy machine)
    wait_until(lambda: load.count() >= 200 and
               any(be == "SLOW" for _, _, be in load.results()), timeout=18)
    res = load.stop()
    assert not load.errors, load.errors[:5]
    st = statuses([(s, b) for _, s, b in res])
    assert set(st) == {200}, st
    got = counts([(s, b) for _, s, b in res])
    n = sum(got.values())
    assert n >= 100, "too few requests completed: %r" % got
    assert got["FAST"] >= 0.8 * n, "least_conn did not steer away from the slow server: %r" % got
    assert got["SLOW"] >= 1, "the slow server was never tried: %r" % got


def test_balance_random_two_by_weight(start_backend, start_lb):
    # sequential requests (nothing in flight): the first draw wins, by weight 3:1
    a, b = start_backend("A"), start_backend("B")
    p = start_lb([a.addr + " weight=3", b.addr + " weight=1"], "balance random_two;")
    c = Client(p.host, p.port)
    res = names(c, "/name", 1000)
    c.close()
    assert statuses(res) == {200: 1000}
    got = counts(res)
    assert 650 <= got["A"] <= 850, got
    assert 150 <= got["B"] <= 350, got


@pytest.mark.hard_timeout(40)
def test_balance_ewma_prefers_fast_server(start_backend, start_flaky, start_lb):
    # SLOW answers in 150 ms, FAST in a few; peak-EWMA learns it from the first slow answer
    # and keeps sending to FAST even one request at a time (where least_conn would tie)
    fast = start_backend("FAST")
    slow = start_flaky("SLOW", delay_ms=150)
    p = start_lb([fast.addr, slow.addr], "balance ewma;", workers=1)
    load = Load(p.host, p.port, "/name", threads=2, max_seconds=20)
    wait_until(lambda: load.count() >= 200, timeout=18)
    res = load.stop()
    assert not load.errors, load.errors[:5]
    got = counts([(s, b) for _, s, b in res])
    n = sum(got.values())
    assert n >= 100, got
    assert got["SLOW"] <= 0.1 * n, "ewma did not prefer the fast server: %r" % got


def test_balance_hash_uri_stable(start_backend, start_lb):
    bs = [start_backend(n) for n in ("A", "B", "C")]
    p = start_lb([b.addr for b in bs], "balance hash uri;")
    c = Client(p.host, p.port)
    # the same URI always goes to the same server
    res = names(c, "/name?item=42", 50)
    assert statuses(res) == {200: 50}
    assert len(counts(res)) == 1, "hash uri not stable: %r" % counts(res)
    # and the same again on new connections (another worker, perhaps)
    first = res[0][1]
    for _ in range(10):
        c2 = Client(p.host, p.port)
        assert c2.get("/name?item=42")[1] == first
        c2.close()
    # different URIs spread over the servers, each of them stable
    mapping = {}
    for i in range(60):
        mapping[i] = c.get("/name?item=%d" % i)[1]
    assert len(set(mapping.values())) == 3, "60 URIs all on %r" % set(mapping.values())
    for i in range(60):
        assert c.get("/name?item=%d" % i)[1] == mapping[i], i
    c.close()


@pytest.mark.hard_timeout(45)
def test_balance_hash_header_consistent_remove_server(tmp_path, start_backend, start_lb):
    # 200 keys over 4 servers on a consistent ring; portico restarted with one server
    # removed: only that server's keys move (about 1/4), every other key stays put
    bs = [start_backend(n) for n in ("A", "B", "C", "D")]
    extra = "balance hash header:X-User consistent;"
    p1 = start_lb([b.addr for b in bs], extra)
    keys = ["user-%d" % i for i in range(200)]

    def mapping(p):
        c = Client(p.host, p.port)
        m = {}
        for k in keys:
            st, be, _ = c.get("/name", {"X-User": k})
            assert st == 200, (k, st)
            m[k] = be
        # stable: asking again gives the same answer
        for k in keys[:40]:
            assert c.get("/name", {"X-User": k})[1] == m[k], k
        c.close()
        return m

    before = mapping(p1)
    per_server = counts([(200, v) for v in before.values()])
    assert len(per_server) == 4 and min(per_server.values()) >= 15, per_server
    assert p1.stop() == 0
    gone = "C"
    p2 = start_lb([b.addr for b in bs if b.name != gone], extra, name="portico2")
    after = mapping(p2)
    moved = [k for k in keys if before[k] != after[k]]
    stayed_wrongly = [k for k in moved if before[k] != gone]
    assert not stayed_wrongly, "keys of surviving servers moved: %r" % [
        (k, before[k], after[k]) for k in stayed_wrongly[:10]]
    assert all(after[k] != gone for k in keys)
    assert len(moved) == per_server[gone]
    assert len(moved) <= 0.35 * len(keys), "%d of %d keys moved" % (len(moved), len(keys))


def test_balance_hash_cookie(start_backend, start_lb):
    bs = [start_backend(n) for n in ("A", "B", "C")]
    p = start_lb([b.addr for b in bs], "balance hash cookie:sid;")
    c = Client(p.host, p.port)
    m = {}
    for i in range(40):
        st, be, _ = c.get("/name", {"Cookie": "sid=s%d" % i})
        assert st == 200
        m[i] = be
    assert len(set(m.values())) == 3, "40 sessions all on %r" % set(m.values())
    for i in range(40):
        # the same session, whatever other cookies come with it and in what order
        assert c.get("/name", {"Cookie": "theme=dark; sid=s%d; lang=fr" % i})[1] == m[i], i
        assert c.get("/name", {"Cookie": "sid=s%d; other=%d" % (i, 1000 + i)})[1] == m[i], i
    # the key is sid's value only: other cookies alone do not pin anything
    seen = set(c.get("/name", {"Cookie": "theme=dark"})[1] for _ in range(12))
    assert len(seen) > 1, "requests without sid should be spread, all went to %r" % seen
    c.close()
