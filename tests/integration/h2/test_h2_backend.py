"""HTTP/2 to backends: `protocol h2c` and `protocol h2` + `tls on`.  The h2 backend is a
second portico (h2c prior-knowledge listener, or TLS listener with ALPN h2) in front of
backend.py; the first portico is reached with HTTP/1.1 or HTTP/2 clients."""

import json
import shutil
import subprocess
import threading
import time

import pytest

import portico_testlib as lib
from tls_h2_testlib import plain_server, tcp_peers_of, tls_server, upstream

MiB = 1024 * 1024
BIG = "    client_max_body_size 0;\n"


def chain(certs, start_backend, start_portico_in, proto, fe_workers=1, be_extra=""):
    b = start_backend("b1")
    be_port = lib.free_port()
    if proto == "h2c":
        be_srv = plain_server(be_port, extra=BIG + be_extra)
        up_lines = "    protocol h2c;\n"
    else:
        cert, key = certs.pair("localhost")
        be_srv = tls_server(be_port, cert, key, "localhost", extra=BIG + be_extra)
        up_lines = ("    protocol h2;\n    tls on;\n    tls_trusted_certificate %s;\n"
                    "    tls_sni localhost;\n" % certs.ca)
    be = start_portico_in(upstream("app", [b.addr], read_timeout="20s") + be_srv, [be_port],
                          name="be", workers=1)
    fe_port = lib.free_port()
    fe = start_portico_in(upstream("h2app", ["127.0.0.1:%d" % be_port], extra=up_lines,
                                   read_timeout="20s", send_timeout="20s")
                          + plain_server(fe_port, extra=BIG,
                                         locations="    location / { proxy_pass h2app; }\n"),
                          [fe_port], name="fe", workers=fe_workers)
    return fe, be, b, be_port


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("client", ["h1", "h2"])
@pytest.mark.parametrize("proto", ["h2c", "h2"])
def test_h2_backend_bodies_by_hash(certs, start_backend, start_portico_in, tmp_path, proto,
                                   client):
    fe, be, b, _ = chain(certs, start_backend, start_portico_in, proto)
    cargs = ["--http1.1"] if client == "h1" else ["--http2-prior-knowledge"]
    r = lib.curl(fe.url("/name"), *cargs)
    assert r.status == 200 and r.body == b"b1", r
    n = 5 * MiB
    src = str(tmp_path / "up.bin")
    sha = lib.write_pattern_file(src, n)
    r = lib.curl(fe.url("/upload"), "--data-binary", "@" + src, *cargs, timeout=30)
    assert r.status == 200, r
    assert (r.json()["length"], r.json()["sha256"]) == (n, sha), r.body
    rc, status, got, ln, hdrs, err = lib.curl_sha256(fe.url("/bytes/%d" % n), *cargs,
                                                     timeout=30)
    assert (rc, status, ln, got) == (0, 200, n, lib.pattern_sha256(n)), err
    # chunked both ways: no content-length from the client, chunked from backend.py
    p = subprocess.run(["curl", "-sS", "--max-time", "20"] + cargs +
                       ["-H", "Transfer-Encoding: chunked" if client == "h1" else "X-A: b",
                        "--data-binary", "@" + src, fe.url("/upload")],
                       stdout=subprocess.PIPE, timeout=30)
    j = json.loads(p.stdout)
    assert (j["length"], j["sha256"]) == (n, sha), j
    rc, status, got, ln, hdrs, err = lib.curl_sha256(fe.url("/chunked/%d" % (n + 3)), *cargs,
                                                     timeout=30)
    assert (rc, status, ln, got) == (0, 200, n + 3, lib.pattern_sha256(n + 3)), err


@pytest.mark.parametrize("proto", ["h2c", "h2"])
def test_h2_backend_headers_and_statuses(certs, start_backend, start_portico_in, proto):
    fe, be, b, _ = chain(certs, start_backend, start_portico_in, proto)
    r = lib.curl(fe.url("/headers?x=1"), "-H", "X-Custom: hello", "-H", "Cookie: a=1")
    assert r.status == 200, r
    j = r.json()
    seen = dict((n.lower(), v) for n, v in j["headers"])
    assert j["target"] == "/headers?x=1" and j["method"] == "GET"
    assert seen.get("x-custom") == "hello" and seen.get("cookie") == "a=1", seen
    for code in (201, 204, 404, 503):
        r = lib.curl(fe.url("/status/%d" % code))
        assert r.status == code, r
    r = lib.curl(fe.url("/bytes/10"), "-I")
    assert r.status == 200 and r.header("content-length") == "10", r


@pytest.mark.hard_timeout(60)
@pytest.mark.parametrize("proto", ["h2c", "h2"])
def test_h2_backend_connections_shared(certs, start_backend, start_portico_in, proto):
    """2000 requests from 100 concurrent h1 clients travel over very few h2 connections
    (one per worker, more only past the backend's stream limit of 128)."""
    if not shutil.which("h2load"):
        pytest.skip("h2load (nghttp2-client) not installed")
    fe, be, b, be_port = chain(certs, start_backend, start_portico_in, proto, fe_workers=2)
    seen = set()
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            seen.update(tcp_peers_of(be_port))
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        p = subprocess.run(["h2load", "--h1", "-n", "2000", "-c", "100", "-T", "20",
                            fe.url("/slow/5")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=50)
    finally:
        stop.set()
        t.join(2)
    out = p.stdout.decode()
    assert "2000 succeeded, 0 failed, 0 errored" in out, out
    assert "status codes: 2000 2xx" in out, out
    assert b.stats()["requests"] == 2000
    seen.update(tcp_peers_of(be_port))
    # the second portico's own connections to backend.py are h1 and not counted here
    assert 1 <= len(seen) <= 4, "front portico used %d connections to the h2 backend: %r" % (
        len(seen), sorted(seen))


@pytest.mark.parametrize("proto", ["h2c", "h2"])
def test_h2_backend_concurrent_streams_one_connection(certs, start_backend, start_portico_in,
                                                      proto):
    """10 slow requests at once finish together (multiplexed), over one connection."""
    fe, be, b, be_port = chain(certs, start_backend, start_portico_in, proto)
    results = []

    def one(i):
        results.append(lib.curl(fe.url("/slow/800?i=%d" % i), timeout=10))

    t0 = time.monotonic()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in ts:
        t.start()
    time.sleep(0.4)
    conns = tcp_peers_of(be_port)
    for t in ts:
        t.join(15)
    assert [r.status for r in results] == [200] * 10, results
    assert time.monotonic() - t0 < 3.0
    assert len(conns) == 1, conns
