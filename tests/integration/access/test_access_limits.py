"""limit_req and limit_conn with real clients: a token bucket per key (burst, nodelay, delay=,
the default delay), 429 with Retry-After and Proxy-Status, keys from variables (a header key
counts each value apart, an empty key is not limited), the accepted rate of a bounded h2load
run within 10 % of the configured rate, concurrent requests per key over HTTP/1.1 and HTTP/2
(each stream counts), slots given back when requests end, counted in metrics."""

import re
import subprocess
import threading

import pytest

import portico_testlib as lib
from accessutil import CLIENTS, error_log, get, metric, start


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_limit_req_burst_nodelay(tmp_path, start_backend, start_portico, client):
    # one request a minute: nothing refills during the test
    p, b = start(tmp_path, start_backend, start_portico,
                 main="limit_req_zone $binary_remote_addr zone=one:64k rate=1r/m;\n"
                      "limit_req_zone $http_x_api_key zone=bykey:64k rate=1r/m;",
                 locations="""
    location / { proxy_pass app; limit_req zone=one burst=3 nodelay; }
    location /name { proxy_pass app; limit_req zone=bykey nodelay; limit_req_status 503; }
""")
    got = [get(p, "/", client).status for _ in range(5)]
    assert got == [200, 200, 200, 200, 429], got
    r = get(p, "/", client)
    assert r.status == 429, r
    assert 50 <= int(r.header("retry-after")) <= 60, r.headers
    assert 'error=http_request_denied; details="limit_req zone=one"' in r.header("proxy-status")
    assert r.body.startswith(b"429 Too Many Requests: portico"), r.body
    # a header key: each value its own bucket; no header, no key: not limited
    assert get(p, "/name", client, "-H", "X-Api-Key: a").status == 200
    r = get(p, "/name", client, "-H", "X-Api-Key: a")
    assert r.status == 503 and b"limit_req" in r.body, r
    assert get(p, "/name", client, "-H", "X-Api-Key: b").status == 200
    assert [get(p, "/name", client).status for _ in range(3)] == [200] * 3
    log = error_log(p)
    conf = p.read(p.conf_path).splitlines()
    line = 1 + next(i for i, l in enumerate(conf) if "zone=one burst=3" in l)
    assert re.search(r"client 127\.0\.0\.1: over limit_req zone=one \(rate 1r/m, burst 3\) at "
                     r"\S+\.conf:%d, answering 429" % line, log), log
    assert metric(p, "portico_http_requests_denied_total", reason="limit_req") == 3


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_limit_req_delay(tmp_path, start_backend, start_portico, client):
    """Without nodelay, excess requests wait (nginx's default); delay=N lets N through at
    once. At 1r/m a delayed request would wait a minute: it must not be answered within
    2 s, while a request over the burst is refused at once."""
    p, b = start(tmp_path, start_backend, start_portico,
                 main="limit_req_zone $binary_remote_addr zone=one:64k rate=1r/m;\n"
                      "limit_req_zone $binary_remote_addr zone=fast:64k rate=5r/s;",
                 locations="""
    location / { proxy_pass app; limit_req zone=one burst=2 delay=1; }
    location /name { proxy_pass app; limit_req zone=fast burst=3; }
""")
    # four at once at 5r/s, burst 3: one goes, three wait their turn and are then proxied
    results = [None] * 4
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(
        i, lib.curl(p.url("/name"), *CLIENTS[client]))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status for r in results] == [200] * 4, results
    assert all(r.body == b"b1" for r in results), results
    assert get(p, "/", client).status == 200
    assert get(p, "/", client).status == 200  # within delay=1: at once
    r = lib.curl(p.url("/"), "-m", "2", *CLIENTS[client])  # the second excess: delayed
    assert r.rc == 28, r  # curl: timed out
    r = get(p, "/", client)
    assert r.status == 429, r
    # the client that gave up left nothing behind: portico still answers
    assert get(p, "/metrics", client).status == 200


def h2load(url, *args, timeout=60):
    out = subprocess.run(["h2load"] + list(args) + [url], capture_output=True, text=True,
                         timeout=timeout).stdout
    took = float(re.search(r"finished in ([\d.]+)(m?s)", out).group(1))
    if re.search(r"finished in [\d.]+ms", out):
        took /= 1000.0
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    return took, int(codes.group(1)), int(codes.group(3)), out


@pytest.mark.parametrize("workers", [1, 2])
def test_limit_req_rate_accuracy(tmp_path, start_backend, start_portico, workers):
    """A bounded h2load run (4 s, 4 connections) against rate=20r/s, burst 1: the requests
    accepted per second of the run within 10 % of 20, every other one 429. The location
    answers itself (metrics), so that no connection waits on a backend while a token comes
    due (a bucket without burst does not save what nobody asked for). At 2 workers the zone is
    shared, so the connections each worker takes do not add up to more."""
    rate = 20
    p, b = start(tmp_path, start_backend, start_portico, workers=workers,
                 main="limit_req_zone $binary_remote_addr zone=one:64k rate=%dr/s;" % rate,
                 locations="    location / { metrics; limit_req zone=one burst=1 nodelay; }\n")
    took, ok, refused, out = h2load(p.url("/"), "-D", "4", "-c", "4", "-m", "1")
    assert ok > 0 and refused > 0, out
    measured = ok / took
    print("limit_req rate=%dr/s workers=%d: %d accepted, %d refused in %.2f s: %.1f r/s"
          % (rate, workers, ok, refused, took, measured))
    assert abs(measured - rate) <= rate * 0.10, (measured, out)


def hang(p, results, i, *extra):
    r = lib.curl(p.url("/hang"), "-m", "30", *extra)
    results[i] = r


@pytest.mark.parametrize("client", ["h1", "h2"])
def test_limit_conn(tmp_path, start_backend, start_portico, client):
    p, b = start(tmp_path, start_backend, start_portico,
                 main="limit_conn_zone $binary_remote_addr zone=addr:64k;",
                 locations="""
    location / { proxy_pass app; limit_conn addr 2; }
""")
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-m", "30"] +
                                      CLIENTS[client] + [p.url("/hang")]))
    assert lib.wait_until(lambda: b.stats()["active"] >= 2, 10), b.stats()
    r = get(p, "/", client)
    assert r.status == 429, r
    assert b"limit_conn" in r.body and "limit_conn zone=addr" in r.header("proxy-status"), r
    # the clients leave: their slots come back
    for pr in procs:
        pr.kill()
        pr.wait()
    assert lib.wait_until(lambda: get(p, "/", client).status == 200, 10)
    assert metric(p, "portico_http_requests_denied_total", reason="limit_conn") >= 1


def test_limit_conn_h2_counts_streams(tmp_path, start_backend, start_portico):
    """HTTP/2 streams of one connection each count (nginx counts requests too)."""
    p, b = start(tmp_path, start_backend, start_portico,
                 main="limit_conn_zone $binary_remote_addr zone=addr:64k;",
                 locations="    location / { proxy_pass app; limit_conn addr 2; }\n")
    # h2load: one connection, 3 streams at once to a backend that never answers (the third
    # is refused); a second connection asking for /name meanwhile is refused too: the two
    # streams in flight count, not the one connection
    proc = subprocess.Popen(["h2load", "-c", "1", "-m", "3", "-n", "3", "-T", "10",
                             p.url("/hang")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert lib.wait_until(lambda: b.stats()["active"] >= 2, 10), b.stats()
        r = get(p, "/name", "h2")
        assert r.status == 429, r
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("bad", [
    "limit_req_zone $binary_remote_addr zone=one:1k rate=1r/s;",
    "limit_req_zone $binary_remote_addr zone=one:64k rate=1r/h;",
    "limit_req_zone $binary_remote_addr zone=one:64k;",
    "limit_req_zone $nosuchvar zone=one:64k rate=1r/s;",
    "limit_conn_zone $binary_remote_addr zone=one;",
])
def test_limit_config_errors(tmp_path, bad):
    body = "%s\nupstream app { server 127.0.0.1:9; }\nserver { listen 127.0.0.1:%d; " \
           "location / { proxy_pass app; } }\n" % (bad, lib.free_port())
    conf = tmp_path / "t.conf"
    conf.write_text(lib.make_conf(tmp_path, body))
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    line = lib.make_conf(tmp_path, body).splitlines().index(bad) + 1
    assert rc != 0 and re.search(r"t\.conf:%d" % line, out), out


def test_limit_use_errors(tmp_path):
    body = """limit_conn_zone $binary_remote_addr zone=c:64k;
upstream app { server 127.0.0.1:9; }
server { listen 127.0.0.1:%d;
location / { proxy_pass app; limit_req zone=c; }
location /x { proxy_pass app; limit_conn nosuch 1; }
}
""" % lib.free_port()
    conf = tmp_path / "t.conf"
    conf.write_text(lib.make_conf(tmp_path, body))
    rc, out = lib.run_portico(["-t", "-c", str(conf)])
    assert rc != 0, out
    assert '"limit_req" names a limit_conn_zone "c"' in out, out
    assert '"limit_conn" names no zone "nosuch"' in out, out


def test_limit_zone_kept_across_reload(tmp_path, start_backend, start_portico):
    """A reload keeps the keys of an unchanged zone (the client stays over its limit); a zone
    whose rate changed starts empty."""
    import os
    import signal

    main = "limit_req_zone $binary_remote_addr zone=one:64k rate=1r/m;\n" \
           "limit_req_zone $binary_remote_addr zone=two:64k rate=1r/m;"
    locs = """
    location / { proxy_pass app; limit_req zone=one nodelay; }
    location /name { proxy_pass app; limit_req zone=two nodelay; }
"""
    p, b = start(tmp_path, start_backend, start_portico, main=main, locations=locs)
    assert [get(p, "/").status for _ in range(2)] == [200, 429]
    assert [get(p, "/name").status for _ in range(2)] == [200, 429]
    conf = p.read(p.conf_path).replace("zone=two:64k rate=1r/m", "zone=two:64k rate=2r/m")
    with open(p.conf_path + ".tmp", "w") as f:
        f.write(conf)
    os.rename(p.conf_path + ".tmp", p.conf_path)
    p.signal(signal.SIGHUP)
    assert lib.wait_until(lambda: "reloaded: configuration generation 2" in p.read(p.error_log),
                          10), p.read(p.error_log)
    assert get(p, "/").status == 429  # kept
    assert get(p, "/name").status == 200  # changed: a new, empty table


WS_HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


def test_limit_conn_counts_websocket_tunnels(tmp_path, start_backend, start_portico):
    """A WebSocket tunnel holds its limit_conn slot until it closes."""
    p, b = start(tmp_path, start_backend, start_portico,
                 main="limit_conn_zone $binary_remote_addr zone=addr:64k;",
                 locations="    location /ws { websocket_echo; limit_conn addr 1; }\n")
    first = lib.RawConn("127.0.0.1", p.port)
    try:
        first.send(WS_HANDSHAKE)
        assert first.read_response(allow_interim=True).status == 101
        with lib.RawConn("127.0.0.1", p.port) as c:
            c.send(WS_HANDSHAKE)
            r = c.read_response()
        assert r.status == 429, r
    finally:
        first.close()

    def again():
        with lib.RawConn("127.0.0.1", p.port) as c:
            c.send(WS_HANDSHAKE)
            return c.read_response(allow_interim=True).status == 101
    assert lib.wait_until(again, 10)
