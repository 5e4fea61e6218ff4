"""Many concurrent clients: h2load --h1 and threads with distinct bodies."""

import re
import shutil
import subprocess
import threading

import pytest

import portico_testlib as lib
from portico_testlib import RawConn


def h2load(url, n, c, extra=()):
    if not shutil.which("h2load"):
        pytest.skip("h2load (nghttp2-client) not installed")
    p = subprocess.run(["h2load", "--h1", "-n", str(n), "-c", str(c), "-T", "20", "-N", "20"]
                       + list(extra) + [url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode()
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert m and s, out
    return tuple(map(int, m.groups())), tuple(map(int, s.groups())), out


@pytest.mark.hard_timeout(90)
@pytest.mark.parametrize("workers", [1, 2])
def test_h1_h1_200_concurrent_h2load(make_proxy, workers):
    p = make_proxy(workers=workers)
    (total, started, done, ok, failed, errored), codes, out = h2load(p.url("/name"), 2000, 200)
    assert (done, ok, failed, errored) == (2000, 2000, 0, 0), out
    assert codes == (2000, 0, 0, 0), out
    assert p.backend.stats()["requests"] == 2000


@pytest.mark.hard_timeout(90)
def test_h1_h1_200_concurrent_threads_bodies(make_proxy):
    """200 threads, each on its own connection, POST distinct bodies to /echo:
    every answer is its own body (no mix-up between exchanges)."""
    p = make_proxy(workers=2, upstream_extra="    read_timeout 20s;\n")
    errors = []
    barrier = threading.Barrier(200, timeout=30)

    def client(i):
        try:
            body = (("client %d " % i) * (50 + i * 37)).encode()
            with RawConn("127.0.0.1", p.port, timeout=30) as c:
                barrier.wait()
                for k in range(3):
                    c.send(b"POST /echo?i=%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                           % (i, len(body)) + body)
                    r = c.read_response()
                    if r.status != 200 or r.body != body:
                        errors.append((i, k, r.status, r.body[:40]))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append((i, repr(e)))

    ts = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:10]


@pytest.mark.hard_timeout(60)
def test_h1_h1_concurrent_slow_backends(make_proxy):
    """100 requests held by a slow backend at once all complete (no head-of-line
    blocking across connections in a worker)."""
    import time
    p = make_proxy(workers=1)
    res = []

    def run():
        res.append(lib.get(p.port, "/slow/1000")[0])

    t0 = time.monotonic()
    ts = [threading.Thread(target=run) for _ in range(100)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    dt = time.monotonic() - t0
    assert res == [200] * 100
    assert dt < 6, "100 parallel 1 s requests took %.1f s" % dt


@pytest.mark.hard_timeout(60)
def test_h1_h1_many_idle_connections(make_proxy):
    # 500 idle client connections do not stop portico serving a new one
    p = make_proxy()
    conns = []
    try:
        for _ in range(500):
            conns.append(RawConn("127.0.0.1", p.port, timeout=5))
        assert lib.curl(p.url("/name")).status == 200
        for c in conns[:50]:
            c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        for c in conns[:50]:
            assert c.read_response().status == 200
    finally:
        for c in conns:
            c.close()


@pytest.mark.hard_timeout(90)
def test_h1_h1_pipelined_h2load(make_proxy):
    # h2load --h1 -m 10 pipelines 10 requests per connection
    p = make_proxy(workers=2)
    (total, started, done, ok, failed, errored), codes, out = h2load(
        p.url("/name"), 2000, 20, ["-m", "10"])
    assert (done, ok, failed, errored) == (2000, 2000, 0, 0), out
    assert codes == (2000, 0, 0, 0), out
