"""`metrics;`: the Prometheus text format after known traffic.  Counters must equal what was
sent (requests by server block, upstream, status class and protocol; bytes; histogram
counts; upstream attempts and connections), summed over every worker; gauges show what is in
flight; `promtool check metrics` (Debian's prometheus package) accepts the output."""

import asyncio
import socket
import time

import pytest

import portico_testlib as lib
import opsutil
from opsutil import METRICS, SERVER_NAME

APP = dict(server_name=SERVER_NAME, upstream="app")
LOCAL = dict(server_name=SERVER_NAME, upstream="")


def check_histogram(m, name, **labels):
    """Buckets cumulative and ending at +Inf == _count; returns _count."""
    buckets = sorted(((float(d["le"]), v) for d, v in m.series(name + "_bucket", **labels)),
                     key=lambda t: t[0])
    assert buckets and buckets[-1][0] == float("inf"), buckets
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets not cumulative: %r" % buckets
    count = m.get(name + "_count", **labels)
    assert counts[-1] == count
    assert m.get(name + "_sum", **labels) >= 0
    return count


def test_metrics_count_known_traffic(ops):
    o = ops(workers=2)
    b1 = o.backends[0]
    h1_bytes_out = 0
    for _ in range(6):                       # a new connection each: spread over workers
        r = lib.curl(o.url("/bytes/1000"))
        assert r.status == 200
        h1_bytes_out += len(r.body)
    for _ in range(2):
        r = lib.curl(o.url("/status/404"))
        assert r.status == 404
        h1_bytes_out += len(r.body)
    sent = 0
    for n in (100, 200, 300):
        r = lib.curl(o.url("/echo"), "--data-binary", "x" * n)
        assert r.status == 200 and len(r.body) == n
        sent += n
        h1_bytes_out += n
    for _ in range(4):
        r = lib.curl(o.url("/bytes/500"), "--http2-prior-knowledge")
        assert r.status == 200 and len(r.body) == 500
    # a request no location saw (invalid path): the listen's default server block, no upstream
    st, _, _ = lib.raw_request("127.0.0.1", o.port, "GET", "/../x")
    assert st == 400

    m = o.metrics()
    req = "portico_http_requests_total"
    assert m.get(req, code_class="2xx", protocol="http1", **APP) == 9
    assert m.get(req, code_class="4xx", protocol="http1", **APP) == 2
    assert m.get(req, code_class="2xx", protocol="h2", **APP) == 4
    assert m.get(req, code_class="5xx", protocol="http1", **APP) == 0
    assert m.get(req, code_class="4xx", protocol="http1", **LOCAL) == 1
    assert m.sum(req, upstream="app") == 15
    assert m.get("portico_http_request_body_bytes_total", protocol="http1", **APP) == sent
    assert m.get("portico_http_response_body_bytes_total", protocol="http1",
                 **APP) == h1_bytes_out
    assert m.get("portico_http_response_body_bytes_total", protocol="h2", **APP) == 2000
    assert check_histogram(m, "portico_http_request_duration_seconds", **APP) == 15

    srv = dict(upstream="app", server=b1.addr)
    assert m.get("portico_upstream_requests_total", **srv) == 15
    assert m.get("portico_upstream_responses_total", code_class="2xx", **srv) == 13
    assert m.get("portico_upstream_responses_total", code_class="4xx", **srv) == 2
    assert m.get("portico_upstream_failures_total", **srv) == 0
    assert check_histogram(m, "portico_upstream_response_time_seconds", **srv) == 15
    opened = m.get("portico_upstream_connections_opened_total", **srv)
    reused = m.get("portico_upstream_connections_reused_total", **srv)
    assert opened >= 1 and opened + reused == 15
    # what the backend saw agrees: one TCP connection per opened one
    assert b1.stats()["connections"] == opened
    assert m.get("portico_upstream_server_state", state="up", **srv) == 1
    assert m.get("portico_upstream_server_weight", **srv) == 1
    assert m.get("portico_upstream_server_active_requests", **srv) == 0
    assert m.get("portico_upstream_retries_total", upstream="app") == 0

    # the scrape itself is the one request in flight
    assert m.get("portico_streams_active", protocol="http1") == 1
    assert m.get("portico_streams_active", protocol="h2") == 0
    assert m.get("portico_connections_active", protocol="http1") >= 1
    assert m.get("portico_connections_accepted_total") >= 16
    assert m.get("portico_workers") == 2
    assert m.sum("portico_worker_connections_active") == \
        m.sum("portico_connections_active")
    assert m.get("portico_config_generation") == 1
    assert m.get("portico_config_generations_live") == 1
    assert m.get("portico_config_reloads_total") == 0
    assert m.get("portico_config_reload_failures_total") == 0
    now = time.time()
    assert now - 60 < m.get("portico_config_loaded_timestamp_seconds") <= now + 1
    # every series name is a family declared with its TYPE
    for (name, _) in m.samples:
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in m.types:
                base = name[:-len(suffix)]
        assert base in m.types, name

    # the scrapes so far are counted too (each when it ended), under no upstream
    m2 = o.metrics()
    assert m2.get(req, code_class="2xx", protocol="http1", **LOCAL) == \
        m.get(req, code_class="2xx", protocol="http1", **LOCAL) + 1


def test_metrics_promtool_accepts(ops):
    """The page of a fresh portico, and after some traffic."""
    if opsutil.promtool() is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    o = ops(upstream_extra="    health_check http interval=1s;",
            locations="    location /ws { websocket_echo; }")
    rc, out = opsutil.promtool_check(o.metrics_text())
    assert rc == 0 and out.strip() == "", out
    for _ in range(4):
        assert lib.curl(o.url("/")).status == 200
    rc, out = opsutil.promtool_check(o.metrics_text())
    assert rc == 0 and out.strip() == "", out


def test_metrics_promtool_with_failures_tls_and_ws(start_backend, start_portico, certs,
                                                    tmp_path):
    """Every family non-empty (TLS, WebSocket, health checks, a failing server, retries, an
    upstream whose name needs escaping): promtool must accept the whole page, lint included."""
    if opsutil.promtool() is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    import websockets

    b = start_backend("b1")
    dead = "127.0.0.1:%d" % lib.free_port()
    port, tport = lib.free_port(), lib.free_port()
    cert, key = certs.pair("localhost")
    body = opsutil.body(port, [b.addr, dead],
                        upstream_extra="    health_check http interval=1s;",
                        locations="    location /ws { websocket_echo; }",
                        extra_blocks="""
upstream "odd\\"name\\\\" {
    server %s down;
}
server {
    listen 127.0.0.1:%d tls;
    server_name localhost;
    tls_certificate %s;
    tls_certificate_key %s;
    location / { proxy_pass app; }
    location /odd { proxy_pass "odd\\"name\\\\"; }
}
""" % (b.addr, tport, cert, key))
    p = start_portico(lib.make_conf(tmp_path, body, workers=2, access_log="off"), [port, tport])
    o = opsutil.Ops(p, [b], port)
    for _ in range(4):
        assert lib.curl(o.url("/")).status == 200
    r = lib.curl("https://localhost:%d/" % tport, "--cacert", certs.ca, "--resolve",
                 "localhost:%d:127.0.0.1" % tport)
    assert r.status == 200
    assert lib.curl("https://localhost:%d/odd" % tport, "--cacert", certs.ca, "--resolve",
                    "localhost:%d:127.0.0.1" % tport).status == 503

    async def ws():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % port) as c:
            await c.send("hi")
            assert await c.recv() == "hi"

    asyncio.run(ws())
    lib.wait_until(lambda: o.metrics().sum("portico_upstream_health_checks_total") >= 2,
                   what="health checks counted")
    text = o.metrics_text()
    rc, out = opsutil.promtool_check(text)
    assert rc == 0 and out.strip() == "", out
    m = opsutil.parse(text)
    # the upstream's name is a configured string: escaped, never mangled
    assert m.get("portico_upstream_no_server_total", upstream='odd"name\\') == 1
    assert m.get("portico_upstream_server_state", upstream='odd"name\\', server=b.addr,
                 state="disabled") == 1
    assert m.get("portico_tls_handshakes_total", side="frontend") == 2
    assert m.get("portico_upstream_failures_total", upstream="app", server=dead) >= 1


def test_metrics_websocket_tunnels(ops):
    import websockets

    o = ops(locations="    location /ws { websocket_echo; }")

    async def run():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % o.port) as c:
            for msg in ("a", "bb", "ccc"):
                await c.send(msg)
                assert await c.recv() == msg
            m = o.metrics()          # while the tunnel is open
            await c.close()
            return m

    during = asyncio.run(run())
    assert during.get("portico_websocket_tunnels_active", **LOCAL) == 1
    assert during.get("portico_connections_active", protocol="ws") == 1
    assert during.get("portico_streams_active", protocol="ws") == 1

    def closed():
        m = o.metrics()
        return m if m.get("portico_websocket_tunnels_closed_total", reason="normal",
                          **LOCAL) == 1 else None

    m = lib.wait_until(closed, what="the tunnel counted as closed")
    assert m.get("portico_websocket_tunnels_active", **LOCAL) == 0
    assert m.sum("portico_websocket_tunnels_closed_total") == 1
    assert m.get("portico_websocket_messages_total", direction="client_to_server",
                 **LOCAL) == 3
    assert m.get("portico_websocket_messages_total", direction="server_to_client",
                 **LOCAL) == 3
    assert m.get("portico_websocket_bytes_total", direction="client_to_server", **LOCAL) > 6
    assert m.get("portico_http_requests_total", code_class="1xx", protocol="ws", **LOCAL) == 1
    assert m.get("portico_connections_active", protocol="ws") == 0
    assert m.get("portico_streams_active", protocol="ws") == 0


def test_metrics_tls_handshakes_and_failures(start_backend, start_portico, certs, tmp_path):
    b = start_backend("b1")
    port = lib.free_port()
    cert, key = certs.pair("localhost")
    body = """upstream app { server %s; }
server {
    listen 127.0.0.1:%d tls;
    server_name localhost;
    tls_certificate %s;
    tls_certificate_key %s;
    tls_handshake_timeout 500ms;
    location / { proxy_pass app; }
    location /metrics { metrics; }
}
""" % (b.addr, port, cert, key)
    start_portico(lib.make_conf(tmp_path, body, access_log="off"), [port])
    args = ("--cacert", certs.ca, "--resolve", "localhost:%d:127.0.0.1" % port)
    url = "https://localhost:%d" % port
    fail = "portico_tls_handshake_failures_total"

    def scrape():
        r = lib.curl(url + "/metrics", *args)
        assert r.status == 200
        return opsutil.parse(r.body.decode())

    # (the start-up check that portico listens connected and closed: a "closed" failure)
    m0 = scrape()
    for _ in range(2):
        assert lib.curl(url + "/", *args).status == 200
    # plain HTTP to the TLS port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            s.recv(100)
        except ConnectionResetError:
            pass
    # a client that connects and says nothing: tls_handshake_timeout
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(3)
        assert s.recv(100) == b""
    # a client that does not trust the certificate gives up during the handshake
    assert lib.curl(url + "/", "--resolve", "localhost:%d:127.0.0.1" % port).rc != 0
    m = scrape()

    def delta(name, **labels):
        return m.get(name, **labels) - m0.get(name, **labels)

    # the two requests and the second scrape's own handshake
    assert delta("portico_tls_handshakes_total", side="frontend") == 3
    assert delta(fail, side="frontend", reason="http_request") == 1
    assert delta(fail, side="frontend", reason="timeout") == 1
    assert delta(fail, side="frontend", reason="closed") + \
        delta(fail, side="frontend", reason="certificate") + \
        delta(fail, side="frontend", reason="other") == 1
    assert m.sum(fail, side="frontend") - m0.sum(fail, side="frontend") == 3
    assert m.sum(fail, side="backend") == 0
    assert m.get("portico_tls_handshakes_total", side="backend") == 0


def test_metrics_retries_counted(start_backend, start_portico, tmp_path):
    b = start_backend("b1")
    dead = "127.0.0.1:%d" % lib.free_port()
    port = lib.free_port()
    body = opsutil.body(port, [dead, b.addr],
                        extra_blocks="upstream none { server %s down; }\n" % b.addr,
                        locations="    location /none { proxy_pass none; }")
    o = opsutil.Ops(start_portico(lib.make_conf(tmp_path, body, access_log="off"), [port]),
                    [b], port)
    for _ in range(6):
        assert lib.curl(o.url("/")).status == 200       # a connect error is retried
    r = lib.curl(o.url("/none"))
    assert r.status == 503
    m = o.metrics()
    failed = m.get("portico_upstream_failures_total", upstream="app", server=dead)
    assert failed >= 1
    # each failed connect was tried again on the other server
    assert m.get("portico_upstream_retries_total", upstream="app") == failed
    assert m.get("portico_upstream_requests_total", upstream="app", server=b.addr) == 6
    assert m.get("portico_upstream_no_server_total", upstream="none") == 1
    assert m.get("portico_http_requests_total", code_class="5xx", protocol="http1",
                 server_name=SERVER_NAME, upstream="none") == 1
    # the dead server is ejected after its connect failure
    assert m.get("portico_upstream_server_ejections_total", upstream="app", server=dead) >= 1


def test_metrics_health_checks_and_state(ops):
    o = ops(upstream_extra="    health_check http interval=1s;")
    addr = o.backends[0].addr
    lib.wait_until(lambda: o.metrics().get("portico_upstream_health_checks_total",
                                           upstream="app", server=addr, result="pass") >= 1,
                   what="a health check counted")
    m = o.metrics()
    assert m.get("portico_upstream_health_checks_total", upstream="app", server=addr,
                 result="fail") == 0
    states = dict((d["state"], v) for d, v in m.series("portico_upstream_server_state",
                                                        server=addr))
    assert states == {"up": 1, "down": 0, "ejected": 0, "draining": 0, "disabled": 0}


def test_metrics_location_methods_and_deny(ops):
    o = ops(metrics_extra="deny 127.0.0.1;")
    r = lib.curl(o.url(METRICS))
    assert r.status == 403
    o2 = ops()
    r = lib.curl(o2.url(METRICS), "-X", "POST")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"
    st, hdrs, body = lib.raw_request("127.0.0.1", o2.port, "HEAD", METRICS)
    assert st == 200 and int(dict(hdrs)["Content-Length"]) > 1000 and body == b""


def test_metrics_over_http2(ops):
    o = ops()
    r = lib.curl(o.url(METRICS), "--http2-prior-knowledge")
    assert r.status == 200
    m = opsutil.parse(r.body.decode())
    assert m.get("portico_streams_active", protocol="h2") == 1
    assert m.get("portico_connections_active", protocol="h2") == 1
