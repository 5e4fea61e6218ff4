"""Process lifecycle: graceful stop, shutdown deadline, IPv6, workers."""

import signal
import os
import threading
import time

import pytest

import portico_testlib as lib
from portico_testlib import RawConn


def test_h1_h1_graceful_stop_finishes_inflight(make_proxy):
    p = make_proxy(upstream_extra="    read_timeout 10s;\n")
    res = {}

    def run():
        res["r"] = lib.curl(p.url("/slow/1500"))

    t = threading.Thread(target=run)
    t.start()
    lib.wait_until(lambda: p.backend.stats()["requests"] >= 1, timeout=10,
                   what="the request reached the backend")
    t0 = time.monotonic()
    p.portico.signal(signal.SIGTERM)
    time.sleep(0.3)
    # stopped accepting: a new connection is refused (or closed unanswered)
    refused = False
    try:
        c = RawConn("127.0.0.1", p.port, timeout=2)
        c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
        data = c.read_all(2)
        refused = not data.startswith(b"HTTP/1.1 200")
        c.close()
    except OSError:
        refused = True
    t.join(10)
    rc = p.portico.wait_exit(5)
    assert res["r"].status == 200 and res["r"].body == b"slow", res["r"]
    assert rc == 0, "exit code %r after SIGTERM" % rc
    assert time.monotonic() - t0 < 4.5
    assert refused, "portico still accepted and served a new request after SIGTERM"


def test_h1_h1_graceful_stop_idle_keepalive_closed(make_proxy):
    # idle keep-alive client connections do not hold the process: exit fast
    p = make_proxy()
    c = RawConn("127.0.0.1", p.port, timeout=5)
    c.send("GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
    assert c.read_response().status == 200
    t0 = time.monotonic()
    p.portico.signal(signal.SIGTERM)
    rc = p.portico.wait_exit(5)
    dt = time.monotonic() - t0
    c.close()
    assert rc == 0
    assert dt < 1.5, "idle keep-alive connection delayed shutdown by %.1f s" % dt


def test_h1_h1_graceful_stop_keepalive_gets_close(make_proxy):
    # a keep-alive client with a request in flight gets Connection: close on it
    p = make_proxy(upstream_extra="    read_timeout 10s;\n")
    with RawConn("127.0.0.1", p.port, timeout=5) as c:
        c.send("GET /slow/800 HTTP/1.1\r\nHost: t\r\n\r\n")
        lib.wait_until(lambda: p.backend.stats()["requests"] >= 1, timeout=10,
                       what="the request reached the backend")
        p.portico.signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close", r
        assert c.is_closed(3)
    assert p.portico.wait_exit(5) == 0


def test_h1_h1_shutdown_timeout_deadline(make_proxy):
    # a request that never finishes cannot hold the process past shutdown_timeout
    p = make_proxy(upstream_extra="    read_timeout 60s;\n",
                   main_extra="")
    c = RawConn("127.0.0.1", p.port, timeout=10)
    try:
        c.send("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        lib.wait_until(lambda: p.backend.stats()["requests"] >= 1, timeout=10,
                       what="the request reached the backend")
        t0 = time.monotonic()
        p.portico.signal(signal.SIGTERM)
        rc = p.portico.wait_exit(8)
        dt = time.monotonic() - t0
    finally:
        c.close()
    assert rc == 0, rc
    assert 1.5 <= dt < 4.0, "exit after %.1f s with shutdown_timeout 2s" % dt


def test_h1_h1_sigint_graceful(make_proxy):
    p = make_proxy()
    assert lib.curl(p.url("/name")).status == 200
    p.portico.signal(signal.SIGINT)
    assert p.portico.wait_exit(5) == 0


@pytest.mark.ipv6
def test_h1_h1_ipv6_listener(tmp_path, start_backend, start_portico):
    b = start_backend("v6", host="::1")
    port = lib.free_port("::1")
    conf = lib.make_conf(tmp_path, lib.proxy_conf(port, [b.addr], host="::1"))
    start_portico(conf, [port], host="::1")
    r = lib.curl("http://[::1]:%d/headers" % port, "-g")
    assert r.status == 200, r
    hs = r.json()["headers"]
    assert [v for n, v in hs if n.lower() == "x-forwarded-for"] == ["::1"], hs
    fw = [v for n, v in hs if n.lower() == "forwarded"]
    assert fw and '"[::1]"' in fw[0], fw  # RFC 7239: IPv6 quoted and bracketed
    assert r.header("X-Backend") == "v6"


@pytest.mark.ipv6
def test_h1_h1_ipv4_and_ipv6_same_server(tmp_path, start_backend, start_portico):
    b = start_backend()
    port = lib.free_port()
    port6 = lib.free_port("::1")
    conf = lib.make_conf(tmp_path, """
upstream app { server %s; }
server {
    listen 127.0.0.1:%d;
    listen [::1]:%d;
    location / { proxy_pass app; }
}
""" % (b.addr, port, port6))
    start_portico(conf, [port])
    assert lib.wait_port("::1", port6, 3)
    assert lib.curl("http://127.0.0.1:%d/name" % port).body == b"b1"
    assert lib.curl("http://[::1]:%d/name" % port6, "-g").body == b"b1"


def thread_syscalls(pid):
    """{tid: read syscalls so far} of every thread but the main one (/proc/PID/task/TID/io)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        if int(tid) == pid:
            continue
        with open("/proc/%d/task/%s/io" % (pid, tid)) as f:
            for line in f:
                if line.startswith("syscr:"):
                    out[tid] = int(line.split()[1])
    return out


def test_h1_h1_workers_2_both_serve(make_proxy):
    """workers 2: two worker threads, and both take connections (the kernel spreads 40 new
    connections over their two SO_REUSEPORT sockets; all on one would be 1 in 2^39)."""
    p = make_proxy(workers=2)
    assert p.portico.threads(at_least=3) == 3  # main + 2 workers
    before = thread_syscalls(p.portico.pid)
    res = []

    def run():
        res.append(lib.get(p.port, "/slow/300")[0])

    ts = [threading.Thread(target=run) for _ in range(40)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert res == [200] * 40
    after = thread_syscalls(p.portico.pid)
    busy = [tid for tid in after if after[tid] - before.get(tid, 0) >= 20]
    assert len(busy) == 2, (before, after)


def test_h1_h1_workers_auto(make_proxy):
    import os
    p = make_proxy(workers="auto")
    n = p.portico.threads(at_least=1 + os.cpu_count())
    assert n >= 1 + os.cpu_count(), n
    assert lib.curl(p.url("/name")).status == 200
