"""Backend connection pool: reuse, limits, and retry of a failed reused connection."""

import subprocess

import pytest

import portico_testlib as lib
from portico_testlib import RawConn


def sequential_curl(url, n):
    cmd = ["curl", "-sS", "--max-time", "60", "-w", "%{http_code}\\n"] + [url, "-o", "/dev/null"] * n
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=70)
    return [int(x) for x in p.stdout.decode().split()]


@pytest.mark.parametrize("workers", [1, 2])
def test_h1_h1_pool_reuse_keepalive_client(make_proxy, workers):
    p = make_proxy(workers=workers)
    codes = sequential_curl(p.url("/name"), 200)
    assert codes == [200] * 200
    st = p.backend.stats()
    assert st["requests"] == 200
    assert st["connections"] <= 2 * workers, st


def test_h1_h1_pool_reuse_across_client_connections(make_proxy):
    # 200 requests each on a new client connection still share pooled
    # backend connections.
    p = make_proxy(workers=2)
    for i in range(200):
        st, hs, body = lib.get(p.port, "/name")
        assert st == 200 and body == b"b1"
    s = p.backend.stats()
    assert s["requests"] == 200
    assert s["connections"] <= 4, s


def test_h1_h1_pool_reuse_visible_per_response(proxy):
    ids = set()
    with RawConn("127.0.0.1", proxy.port) as c:
        for i in range(10):
            c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            ids.add(r.header("X-Conn-Id"))
            last = int(r.header("X-Conn-Request"))
    assert len(ids) == 1 and last == 10, (ids, last)


def test_h1_h1_pool_disabled_keepalive_0(make_proxy):
    p = make_proxy(upstream_extra="    keepalive 0;\n")
    assert sequential_curl(p.url("/name"), 10) == [200] * 10
    s = p.backend.stats()
    assert s["connections"] == 10, s


def test_h1_h1_pool_keepalive_requests(make_proxy):
    p = make_proxy(upstream_extra="    keepalive_requests 5;\n")
    assert sequential_curl(p.url("/name"), 20) == [200] * 20
    s = p.backend.stats()
    assert s["connections"] == 4, s


def test_h1_h1_pool_keepalive_timeout(make_proxy):
    p = make_proxy(upstream_extra="    keepalive_timeout 300ms;\n")
    assert sequential_curl(p.url("/name"), 3) == [200] * 3
    assert p.backend.stats()["open"] == 1
    # the idle pooled connection is closed by portico (after 300 ms; waited for, not slept)
    lib.wait_until(lambda: p.backend.stats()["open"] == 0, 10)
    s = p.backend.stats()
    assert s["open"] == 0 and s["connections"] == 1, s
    assert sequential_curl(p.url("/name"), 1) == [200]
    assert p.backend.stats()["connections"] == 2


def test_h1_h1_pool_not_reused_after_connection_close(proxy):
    # after a close-delimited body the backend connection cannot be reused
    for _ in range(3):
        r = lib.curl(proxy.url("/close/100"))
        assert r.status == 200 and len(r.body) == 100
    assert lib.curl(proxy.url("/name")).status == 200
    assert proxy.backend.stats()["connections"] == 4


def test_h1_h1_backend_closing_after_each_response_fails_nothing(make_proxy):
    # The backend closes every connection after one response without saying
    # Connection: close.  Whether portico notices the close while idle or
    # only when it reuses the connection (then replays: see the next tests), all requests
    # succeed.
    p = make_proxy(backend_flags=["--close-after-each"])
    codes = sequential_curl(p.url("/name"), 30)
    assert codes == [200] * 30
    import time
    codes = []
    for _ in range(10):
        codes += sequential_curl(p.url("/name"), 1)
        time.sleep(0.05)
    assert codes == [200] * 10


def test_h1_h1_retry_before_headers(make_proxy):
    # The backend reads the 2nd request on a reused connection and closes it
    # without a byte of response: portico retries once on a fresh connection.
    p = make_proxy(backend_flags=["--drop-reused"])
    codes = sequential_curl(p.url("/name"), 20)
    assert codes == [200] * 20
    s = p.backend.stats()
    assert s["connections"] >= 10, s  # the retries happened on new connections


def test_h1_h1_stale_pooled_connection_replayed_with_retries_0(make_proxy):
    # The replay of a request whose pooled connection the server had closed is no retry:
    # with `retries 0` (no retry at all) it still happens, once, on a new connection to the
    # same server, and the client never sees the race.
    p = make_proxy(upstream_extra="retries 0;", backend_flags=["--drop-reused"])
    codes = sequential_curl(p.url("/name"), 10)
    assert codes == [200] * 10
    s = p.backend.stats()
    # every request after the first met a dropped pooled connection, then a fresh one
    assert s["connections"] == 10, s
    assert s["requests"] == 19, s


def test_h1_h1_no_retry_for_post_with_body(make_proxy):
    # A POST whose body was sent on a reused connection that then dies is not
    # replayed (not idempotent): the client gets the 502, and the backend saw it once.
    p = make_proxy(backend_flags=["--drop-reused"])
    assert lib.curl(p.url("/name")).status == 200
    r = lib.curl(p.url("/upload"), "--data-binary", "hello")
    assert r.status == 502, r
    s = p.backend.stats()
    # GET + one POST attempt; a third request would be a replayed POST
    assert s["requests"] == 2, s


def test_h1_h1_pool_idle_cap(make_proxy):
    # keepalive 2: after 10 parallel requests only 2 idle connections stay pooled
    import threading
    import time
    p = make_proxy(upstream_extra="    keepalive 2;\n")
    res = []

    def run():
        res.append(lib.get(p.port, "/slow/500")[0])

    ts = [threading.Thread(target=run) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert res == [200] * 10
    assert p.backend.stats()["connections"] == 10
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and p.backend.stats()["open"] > 2:
        time.sleep(0.1)
    s = p.backend.stats()
    assert s["open"] <= 2, "more than `keepalive 2` idle backend connections kept: %r" % s
