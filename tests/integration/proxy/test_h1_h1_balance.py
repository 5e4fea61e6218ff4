"""Load balancing: round robin, weights, backup, down, max_conns, 503."""

import collections
import subprocess
import threading
import time


import portico_testlib as lib


def names_via_curl(url, n, timeout=60):
    """n GETs of url over one curl (keep-alive); return the list of X-Backend names."""
    cmd = ["curl", "-sS", "--max-time", str(timeout),
           "-w", "%{http_code} %header{x-backend}\\n"] + [url, "-o", "/dev/null"] * n
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 10)
    lines = p.stdout.decode().splitlines()
    assert len(lines) == n, (p.returncode, p.stderr, lines[:5])
    out = []
    for line in lines:
        code, _, name = line.partition(" ")
        out.append((int(code), name.strip()))
    return out


def start_lb(tmp_path, start_portico, servers, upstream_extra="", workers=1):
    port = lib.free_port()
    conf = lib.make_conf(tmp_path, lib.proxy_conf(port, servers, upstream_extra=upstream_extra),
                         workers=workers)
    return start_portico(conf, [port])


def test_h1_h1_round_robin_alternates(tmp_path, start_backend, start_portico):
    a, b = start_backend("A"), start_backend("B")
    p = start_lb(tmp_path, start_portico, [a.addr, b.addr])
    res = names_via_curl(p.url("/name"), 20)
    assert all(c == 200 for c, _ in res), res
    names = [n for _, n in res]
    assert set(names) == {"A", "B"}
    for x, y in zip(names, names[1:]):
        assert x != y, "round robin did not alternate: %r" % names


def test_h1_h1_round_robin_across_connections(tmp_path, start_backend, start_portico):
    # the balancer is per worker, not per client connection
    a, b = start_backend("A"), start_backend("B")
    p = start_lb(tmp_path, start_portico, [a.addr, b.addr])
    names = [lib.curl(p.url("/name")).header("X-Backend") for _ in range(10)]
    assert collections.Counter(names) == {"A": 5, "B": 5}, names


def test_h1_h1_weighted_round_robin(tmp_path, start_backend, start_portico):
    a, b = start_backend("A"), start_backend("B")
    p = start_lb(tmp_path, start_portico, [a.addr + " weight=3", b.addr + " weight=1"])
    res = names_via_curl(p.url("/name"), 400)
    assert all(c == 200 for c, _ in res), res
    cnt = collections.Counter(n for _, n in res)
    assert abs(cnt["A"] - 300) <= 20 and abs(cnt["B"] - 100) <= 20, cnt
    # smooth weighted round robin: B never waits more than 3 picks in a row
    names = [n for _, n in res]
    assert "AAAA" not in "".join(names), "not smooth: %s" % "".join(names[:40])


def test_h1_h1_weighted_round_robin_backend_view(tmp_path, start_backend, start_portico):
    a, b, c = start_backend("A"), start_backend("B"), start_backend("C")
    p = start_lb(tmp_path, start_portico,
                 [a.addr + " weight=5", b.addr + " weight=2", c.addr])
    names_via_curl(p.url("/name"), 400)
    got = [x.stats()["requests"] for x in (a, b, c)]
    exp = [400 * 5 / 8, 400 * 2 / 8, 400 / 8]
    for g, e in zip(got, exp):
        assert abs(g - e) <= 20, (got, exp)


def test_h1_h1_backup_unused_while_primary_up(tmp_path, start_backend, start_portico):
    a, bk = start_backend("A"), start_backend("BK")
    p = start_lb(tmp_path, start_portico, [a.addr, bk.addr + " backup"])
    res = names_via_curl(p.url("/name"), 20)
    assert res == [(200, "A")] * 20, res
    assert bk.stats()["connections"] == 0


def test_h1_h1_backup_used_when_primary_down(tmp_path, start_backend, start_portico):
    a, bk = start_backend("A"), start_backend("BK")
    p = start_lb(tmp_path, start_portico, [a.addr + " down", bk.addr + " backup"])
    res = names_via_curl(p.url("/name"), 10)
    assert res == [(200, "BK")] * 10, res
    assert a.stats()["connections"] == 0


def test_h1_h1_backup_used_when_primary_dead(tmp_path, start_backend, start_portico):
    # The primary process is gone (connection refused).  The backup must take
    # over: at most the first few requests may fail with 502, the rest succeed.
    a, bk = start_backend("A"), start_backend("BK")
    p = start_lb(tmp_path, start_portico, [a.addr, bk.addr + " backup"])
    assert names_via_curl(p.url("/name"), 2) == [(200, "A")] * 2
    a.stop()
    res = [(r.status, r.header("X-Backend")) for r in
           (lib.curl(p.url("/name")) for _ in range(10))]
    assert all(r in ((200, "BK"), (502, None)) for r in res), res
    assert res[-5:] == [(200, "BK")] * 5, res


def test_h1_h1_down_gets_no_traffic(tmp_path, start_backend, start_portico):
    a, b = start_backend("A"), start_backend("B")
    p = start_lb(tmp_path, start_portico, [a.addr, b.addr + " down"])
    res = names_via_curl(p.url("/name"), 20)
    assert res == [(200, "A")] * 20, res
    assert b.stats()["connections"] == 0


def test_h1_h1_all_down_503(tmp_path, start_backend, start_portico):
    a, bk = start_backend("A"), start_backend("BK")
    p = start_lb(tmp_path, start_portico, [a.addr + " down", bk.addr + " backup down"])
    r = lib.curl(p.url("/name"))
    assert r.status == 503, r
    assert r.body.startswith(b"503"), r
    assert (r.header("Content-Type") or "").startswith("text/plain")
    assert a.stats()["connections"] == 0 and bk.stats()["connections"] == 0


def test_h1_h1_max_conns_503(tmp_path, start_backend, start_portico):
    a = start_backend("A")
    p = start_lb(tmp_path, start_portico, [a.addr + " max_conns=1"])
    slow = {}

    def run():
        slow["r"] = lib.curl(p.url("/slow/1500"))

    t = threading.Thread(target=run)
    t.start()
    lib.wait_until(lambda: a.stats()["requests"] >= 1, 10, what="the slow request at A")
    r = lib.curl(p.url("/name"))
    t.join(10)
    assert slow["r"].status == 200, slow["r"]
    assert r.status == 503, r
    # once the slow one is done the server is usable again
    assert lib.curl(p.url("/name")).status == 200


def test_h1_h1_max_conns_spills_to_other_server(tmp_path, start_backend, start_portico):
    a, b = start_backend("A"), start_backend("B")
    p = start_lb(tmp_path, start_portico, [a.addr + " max_conns=1", b.addr])
    results = []

    def run():
        results.append(lib.curl(p.url("/slow/1000")))

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
        time.sleep(0.1)
    for t in ts:
        t.join(10)
    assert [r.status for r in results] == [200] * 4, results
    assert a.stats()["requests"] <= 1  # all four overlap in time: A can take one
