"""Stream servers in metrics and the status page: an open stream connection counts as
protocol="stream" (not as a WebSocket tunnel), and each connection that ends is counted once by
listening address, upstream and status, with its bytes and duration; the upstream's server
counters (attempts, failures, connections opened) count stream attempts as HTTP's do."""

import json
import os
import sys

import portico_testlib as lib
from streamlib import connect, recv_until, stream, upstream, wait_stream_log

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ops"))
import opsutil  # noqa: E402


def test_stream_connections_and_sessions_in_metrics(start_tcp, start_stream):
    b = start_tcp("m0", mode="echo")
    dead = lib.free_port()                       # nothing listens there
    sport, dport, hport = lib.free_port(), lib.free_port(), lib.free_port()
    body = (upstream("app", [b.addr]) +
            upstream("dead", ["127.0.0.1:%d" % dead], extra="    retries 0;\n") +
            stream("listen 127.0.0.1:%d;\nproxy_pass app;" % sport,
                   "listen 127.0.0.1:%d;\nproxy_pass dead;" % dport) +
            "server {\n    listen 127.0.0.1:%d;\n"
            "    location /m { metrics; }\n    location /s { status; }\n}\n" % hport)
    p = start_stream(body, [sport, dport, hport])

    def metrics():
        r = lib.curl("http://127.0.0.1:%d/m" % hport)
        assert r.status == 200, r
        return opsutil.parse(r.body.decode())

    ok = {"listen": "127.0.0.1:%d" % sport, "upstream": "app"}
    bad = {"listen": "127.0.0.1:%d" % dport, "upstream": "dead"}
    # the start-up probes connected once to each port: counts below are from here on
    wait_stream_log(p, 2)
    m0 = metrics()

    def grew(m, name, **labels):
        return (m.get(name, **labels) or 0) - (m0.get(name, **labels) or 0)

    s = connect(sport)
    s.sendall(b"ping\n")
    assert recv_until(s, b"\n") == b"ping\n"
    m = metrics()
    assert m.get("portico_connections_active", protocol="stream") == 1
    assert m.get("portico_connections_active", protocol="ws") == 0
    r = lib.curl("http://127.0.0.1:%d/s?format=json" % hport)
    assert json.loads(r.body)["workers"][0]["stream"] == 1
    s.sendall(b"pong pong\n")
    assert recv_until(s, b"pong pong\n") == b"pong pong\n"
    s.close()
    wait_stream_log(p, 3)

    d = connect(dport)
    assert recv_until(d, b"x", timeout=5) == b""        # closed: no server took it
    d.close()
    wait_stream_log(p, 4)

    m = metrics()
    assert m.get("portico_connections_active", protocol="stream") == 0
    assert grew(m, "portico_stream_sessions_total", status="200", **ok) == 1
    assert m.sum("portico_stream_sessions_total", **ok) - \
        m0.sum("portico_stream_sessions_total", **ok) == 1
    assert grew(m, "portico_stream_bytes_total", direction="client_to_server", **ok) == 15
    assert grew(m, "portico_stream_bytes_total", direction="server_to_client", **ok) == 15
    assert grew(m, "portico_stream_session_duration_seconds_count", **ok) == 1
    assert grew(m, "portico_stream_sessions_total", status="502", **bad) == 1
    assert m.sum("portico_stream_sessions_total", **bad) - \
        m0.sum("portico_stream_sessions_total", **bad) == 1
    assert grew(m, "portico_upstream_requests_total", upstream="app", server=b.addr) == 1
    assert grew(m, "portico_upstream_connections_opened_total", upstream="app",
                server=b.addr) == 1
    assert grew(m, "portico_upstream_failures_total", upstream="dead",
                server="127.0.0.1:%d" % dead) == 1
    assert m.types["portico_stream_sessions_total"] == "counter"
    if opsutil.promtool() is not None:
        rc, out = opsutil.promtool_check(m.text)
        assert rc == 0, out
